"""`surveillance adverse list`: open adverse-event reports and their regulatory clocks."""

from __future__ import annotations

import typer

from surveillance.commands.common import load_settings

adverse_app = typer.Typer(no_args_is_help=True, help="Adverse-event reports.")


@adverse_app.command("list")
def adverse_list() -> None:
    """Open adverse-event reports and their regulatory clocks."""
    from datetime import datetime

    from surveillance.intake import list_open_reports

    rows = list_open_reports(load_settings().state_dir, datetime.now().astimezone())
    if not rows:
        typer.echo("no open adverse-event reports")
    for row in rows:
        clocks = "; ".join(
            f"{o.regime} {o.recipient} due {o.due} ({o.status.value})" for o in row.obligations
        )
        typer.echo(f"{row.reference}  {row.tool_id} {row.software_version}  "
                   f"{row.outcome}  aware {row.aware_date}  {clocks}")
