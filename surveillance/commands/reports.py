"""The committee's reports: `export quarterly`, `drift-report`, `validate`, `committee`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from surveillance.commands.common import db_url, fail, load_settings

export_app = typer.Typer(no_args_is_help=True, help="Exports for the AI committee.")


@export_app.command("quarterly")
def export_quarterly_cmd(
    quarter: Annotated[str, typer.Option(help="e.g. 2026Q3")],
    out: Annotated[Path, typer.Option(help="folder for HTML, PDF, CSV and JSON")],
    tool: Annotated[str | None, typer.Option(help="one tool id (default: every tool)")] = None,
) -> None:
    """The quarterly performance review per tool: HTML, PDF, CSV and JSON of every figure."""
    from surveillance.report.quarterly import export_quarterly

    settings = load_settings()
    for done in export_quarterly(db_url(), quarter=quarter, tool=tool, out_dir=out,
                                 registry_path=settings.baselines_file,
                                 state_dir=settings.state_dir):
        typer.echo(f"{done.tool_id}: {done.html}, {done.pdf} ({done.pdf_pages} pages), "
                   f"{done.json}, {done.csv_dir}/")


def drift_report(
    tool: Annotated[str, typer.Option()],
    from_: Annotated[str, typer.Option("--from", help="first day of the period, YYYY-MM-DD")],
    to: Annotated[str, typer.Option(help="day after the period, YYYY-MM-DD")],
    reference: Annotated[
        str | None, typer.Option(help="reference period START:END (default: the 30 days before)")
    ] = None,
    out: Path = Path("drift-report"),
) -> None:
    """Evidently drift report (HTML and JSON) of a tool's inputs and outputs, two periods."""
    from datetime import date, timedelta

    import psycopg

    from surveillance.report.drift_report import write_drift_report
    from surveillance.store.queries import drift_feature_rows

    try:
        start, end = date.fromisoformat(from_), date.fromisoformat(to)
        if reference:
            r0, r1 = (date.fromisoformat(x) for x in reference.split(":", 1))
        else:
            r0, r1 = start - timedelta(days=30), start
    except ValueError:
        fail("dates must be YYYY-MM-DD and --reference START:END")
        return
    with psycopg.connect(db_url()) as conn:
        ref_rows = drift_feature_rows(conn, tool, r0, r1)
        cur_rows = drift_feature_rows(conn, tool, start, end)
    if not ref_rows or not cur_rows:
        fail(f"no stored AI results for {tool} in {'the reference' if not ref_rows else 'the'} "
             f"period ({len(ref_rows)} reference, {len(cur_rows)} current rows)")
    html, js = write_drift_report(ref_rows, cur_rows, out,
                                  f"{tool}: {start}..{end} against {r0}..{r1}")
    typer.echo(f"{html}\n{js}")


def validate(
    tool: Annotated[str, typer.Option()],
    version: Annotated[str, typer.Option()],
    out: Path = Path("validation"),
) -> None:
    """Local validation of a tool version against the registry's acceptance criteria."""
    from datetime import UTC, datetime

    import psycopg

    from surveillance.clinical.baselines import load_registry
    from surveillance.report.validation_report import run_validation
    from surveillance.store.queries import cases_of_version

    settings = load_settings()
    with psycopg.connect(db_url()) as conn:
        cases = cases_of_version(conn, tool, version)
    result, html, js = run_validation(load_registry(settings.baselines_file), tool, version,
                                      cases, out, datetime.now(UTC))
    typer.echo(f"{tool} {version}: {'PASS' if result.passed else 'FAIL'} ({len(cases)} cases)")
    typer.echo(f"{html}\n{js}")
    if not result.passed:
        raise typer.Exit(1)


def committee(
    events: Annotated[Path, typer.Option(help="input events as JSON lines (`simulate --out`)")],
    store: Annotated[bool, typer.Option(
        help="also upsert the figures into the configured store, for the dashboards")] = False,
) -> None:
    """Coverage, triage turnaround, alert burden, cost and quantification figures as JSON."""
    import json

    from surveillance.clinical.baselines import load_registry
    from surveillance.report.committee_figures import committee_figures
    from surveillance.simulate.output import read_jsonl

    url = db_url() if store else None
    figures = committee_figures(read_jsonl(events), load_registry())
    typer.echo(json.dumps(figures, indent=2, sort_keys=True))
    if url is not None:
        from datetime import UTC, datetime

        import psycopg

        from surveillance.store.committee_series import series_rows, store_series

        try:
            written = store_series(url, series_rows(figures), datetime.now(UTC))
        except psycopg.Error as exc:
            fail(f"cannot store the figures ({str(exc).splitlines()[0]}): check the "
                 "database is reachable and run `surveillance db migrate`")
        typer.echo(f"stored {written} committee figures", err=True)
