"""`surveillance export quarterly`: the governance committee's quarterly review per tool.

For each tool with cases in the quarter (or the one asked for), writes under `out_dir`:

    <tool>-<quarter>.html     self-contained report (figures embedded, text escaped)
    <tool>-<quarter>.pdf      the same figures and tables, for the minutes
    <tool>-<quarter>.json     every figure, exactly as computed
    <tool>-<quarter>/<table>.csv  one CSV per table (performance, baseline_comparison,
                              weekly, subgroups, model_versions, alerts, adverse_events, drift)

The numbers come from `quarterly_review.build_review` only; the outputs are views of it.
Same stored data and export date: same numbers and the same JSON and CSV bytes. Progress
goes to stderr. CSV cells that a spreadsheet would run as a formula are escaped
(`csv_cells.py`).
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import psycopg
from tqdm import tqdm

from surveillance.clinical.baselines import ToolBaseline, load_registry
from surveillance.clinical.lifecycle import LifecycleStore
from surveillance.report import quarterly_plots
from surveillance.report.csv_cells import spreadsheet_safe
from surveillance.report.quarterly_html import render_html
from surveillance.report.quarterly_pdf import render_pdf
from surveillance.report.quarterly_review import build_review
from surveillance.report.quarterly_tables import tables
from surveillance.report.quarterly_verdict import tool_verdict
from surveillance.store import queries
from surveillance.store.errors import QueryError

STEPS = ("query", "figures", "html", "pdf", "json+csv")


@dataclass(frozen=True)
class ExportedTool:
    tool_id: str
    html: Path
    pdf: Path
    json: Path
    csv_dir: Path
    pdf_pages: int


def _write_json(path: Path, review: dict[str, Any]) -> None:
    # sort_keys + fixed separators: byte-identical output for identical data.
    text = json.dumps(review, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")


def _csv_value(value: Any) -> Any:
    # Floats in full precision (repr); text that a spreadsheet would run, escaped.
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return spreadsheet_safe(value)


def _write_csvs(directory: Path, review: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for table in tables(review):
        with open(directory / f"{table.name}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(table.columns)
            writer.writerows([_csv_value(v) for v in row] for row in table.rows)


def _export_tool(
    conn: psycopg.Connection[Any],
    tool: ToolBaseline,
    quarter: queries.Quarter,
    out_dir: Path,
    lifecycle: dict[tuple[str, str], str] | None,
    as_of: datetime,
    progress: tqdm[Any],
) -> ExportedTool:
    stem = f"{tool.tool_id}-{quarter.label}"
    progress.set_postfix_str(f"{tool.tool_id}: query")
    review = build_review(conn, tool, quarter, as_of, lifecycle)
    review["verdict"] = tool_verdict(review).as_dict()
    progress.update()
    progress.set_postfix_str(f"{tool.tool_id}: figures")
    figures = quarterly_plots.figures(review)
    images = {name: quarterly_plots.png(fig) for name, fig in figures.items()}
    progress.update()
    progress.set_postfix_str(f"{tool.tool_id}: html")
    table_list = tables(review)
    html_path = out_dir / f"{stem}.html"
    html_path.write_text(render_html(review, table_list, images), encoding="utf-8")
    progress.update()
    progress.set_postfix_str(f"{tool.tool_id}: pdf")
    pdf_path = out_dir / f"{stem}.pdf"
    pages = render_pdf(pdf_path, review, table_list, figures)
    for fig in figures.values():
        plt.close(fig)
    progress.update()
    progress.set_postfix_str(f"{tool.tool_id}: json+csv")
    json_path = out_dir / f"{stem}.json"
    _write_json(json_path, review)
    _write_csvs(out_dir / stem, review)
    progress.update()
    return ExportedTool(tool.tool_id, html_path, pdf_path, json_path, out_dir / stem, pages)


def export_quarterly(
    db_url: str,
    quarter: str = "2026Q3",
    tool: str | None = None,
    out_dir: Path = Path("exports"),
    registry_path: Path | None = None,
    state_dir: Path | None = None,
    as_of: datetime | None = None,
) -> list[ExportedTool]:
    """Export the quarterly review of `tool` (default: every tool with cases in it).

    `state_dir` holds the version lifecycle audit trail (`clinical/lifecycle.py`); without
    it the versions' lifecycle state is reported as not available. Regulatory status is
    decided as of `as_of` (aware; default: now, in this machine's time zone).
    """
    if as_of is None:
        as_of = datetime.now().astimezone()
    elif as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    period = queries.parse_quarter(quarter)
    registry = load_registry(registry_path)
    lifecycle = None
    if state_dir is not None:
        lifecycle = {k: v.value for k, v in LifecycleStore(state_dir).states().items()}
    try:
        conn = psycopg.connect(db_url, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise QueryError(
            "cannot connect to the database for the export: start it or set "
            "SURVEILLANCE_DATABASE__URL"
        ) from exc
    with conn:
        # One snapshot for the whole export: every table sees the same data.
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        tool_ids = [tool] if tool is not None else queries.tools_in_quarter(conn, period)
        for t in tool_ids:
            if t not in registry:
                raise QueryError(
                    f"tool {t!r} is not in the baseline registry: add it there or choose one "
                    f"of {', '.join(sorted(registry))}"
                )
        out_dir.mkdir(parents=True, exist_ok=True)
        done = []
        with tqdm(
            total=len(tool_ids) * len(STEPS),
            desc=f"quarterly export {period.label}",
            unit="step",
            file=sys.stderr,
            disable=None,  # no bar when stderr is not a terminal: a log would get every redraw
        ) as progress:
            for t in tool_ids:
                done.append(
                    _export_tool(conn, registry[t], period, out_dir, lifecycle, as_of, progress)
                )
    return done
