"""The quarterly review as a PDF (matplotlib PdfPages): figures, then every table.

Tables are set in monospaced text, paginated, with wide tables split by columns (the
identifying columns repeated) and the same cell formatting as the HTML. The PDF's
creation date is left out so the same data gives the same file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from surveillance.report.column_labels import human_label
from surveillance.report.quarterly_tables import Table, cell
from surveillance.report.quarterly_verdict import verdict_lines

ROWS_PER_PAGE = 60
#: Characters per line of a landscape A4 page at the table font size.
LINE_CHARS = 250
#: Longest cell shown; the HTML, CSV and JSON carry full text.
MAX_CELL = 60


def _text_page(lines: list[str]) -> Figure:
    fig = plt.figure(figsize=(8.3, 11.7))
    fig.text(0.06, 0.95, "\n".join(lines), va="top", fontsize=9, wrap=True)
    return fig


def _column_slices(widths: list[int], keys: int) -> list[list[int]]:
    """Split columns into page-wide groups, repeating the first `keys` (row identity)."""
    key_width = sum(widths[:keys]) + 2 * keys
    slices: list[list[int]] = []
    current: list[int] = []
    used = key_width
    for i in range(keys, len(widths)):
        if current and used + widths[i] + 2 > LINE_CHARS:
            slices.append(list(range(keys)) + current)
            current, used = [], key_width
        current.append(i)
        used += widths[i] + 2
    if current or not slices:
        slices.append(list(range(keys)) + current)
    return slices


def _table_pages(table: Table) -> Iterator[Figure]:
    """Monospaced text pages: one text artist per page draws fast and prints crisply."""
    rows = [
        [cell(v, c)[:MAX_CELL] for v, c in zip(row, table.columns, strict=True)]
        for row in table.rows
    ] or [["–"] * len(table.columns)]
    labels = [human_label(c) for c in table.columns]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(labels)]
    slices = _column_slices(widths, keys=min(2, len(widths) - 1))
    for first in range(0, len(rows), ROWS_PER_PAGE):
        chunk = rows[first : first + ROWS_PER_PAGE]
        for part, columns in enumerate(slices, 1):
            header = "  ".join(labels[i].ljust(widths[i]) for i in columns)
            lines = [header, "-" * len(header)]
            lines += ["  ".join(r[i].ljust(widths[i]) for i in columns) for r in chunk]
            fig = plt.figure(figsize=(11.7, 8.3))
            suffix = f" (columns {part}/{len(slices)})" if len(slices) > 1 else ""
            fig.text(0.03, 0.96, f"{table.title}{suffix}", fontsize=10, va="top")
            fig.text(0.03, 0.92, "\n".join(lines), family="monospace", fontsize=6, va="top")
            yield fig


def render_pdf(
    path: Path, review: dict[str, Any], tables: list[Table], figures: dict[str, Figure]
) -> int:
    """Write the PDF; return its number of pages."""
    tool = review["tool"]
    cover = [
        f"{tool['display_name']}",
        f"Quarterly performance review {review['quarter']}",
        "",
        *(verdict_lines(review["verdict"]) if "verdict" in review else []),
        f"Tool {tool['tool_id']}: {tool['manufacturer']} {tool['product']}",
        f"Clearance {tool['clearance']}; finding {tool['finding_code']}; "
        f"threshold {tool['operating_threshold']}",
        f"Cases by study date {review['period']['start']} to {review['period']['end']}",
        f"Regulatory status as of {review['status_as_of']}",
        "",
        "Against the clearance baseline:",
    ]
    for b in review["baseline_comparison"]:
        observed = b["observed"]
        value = "–" if observed["value"] is None else f"{100 * observed['value']:.1f}%"
        interval = (
            ""
            if observed["lower"] is None
            else f" (95% CI {100 * observed['lower']:.1f}–{100 * observed['upper']:.1f}%)"
        )
        cover.append(
            f"  {b['metric']}: {value}{interval}, n={observed['denominator']}; baseline "
            f"{100 * b['baseline']:.1f}%, tolerance {100 * b['tolerance']:.1f} pts: {b['verdict']}"
        )
    count = 0
    with PdfPages(path, metadata={"CreationDate": None, "Creator": None}) as pdf:
        cover_page = _text_page(cover)
        for page in (cover_page, *figures.values()):
            pdf.savefig(page)
            count += 1
        plt.close(cover_page)
        for table in tables:
            for page in _table_pages(table):
                pdf.savefig(page)
                plt.close(page)
                count += 1
    return count
