"""`surveillance ...`: the command line. Errors a user can cause end in one clear line."""

from __future__ import annotations

import sys
import time

import typer

from surveillance.bulk.command import backfill
from surveillance.commands import demo, reports, services
from surveillance.commands.adverse import adverse_app
from surveillance.commands.labels import labels_app
from surveillance.commands.lifecycle import tool_app
from surveillance.commands.provision import db_app, schemas_app, topics_app
from surveillance.commands.reports import export_app
from surveillance.errors import SurveillanceError
from surveillance.interop.dicom_cli import dicom_app
from surveillance.interop.hl7_cli import fhir_app, hl7_app

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)

# Every command, in the order `surveillance --help` lists them (commands, then groups).
# A new command is one line here; its code goes in the `surveillance/commands/` module of
# its area (or a new one), with its heavy imports inside the function.
app.command()(services.worker)
app.command("store-writer")(services.store_writer)
app.command("drift-report")(reports.drift_report)
app.command()(reports.validate)
app.command()(services.shadow)
app.command()(services.intake)
app.command()(demo.simulate)
app.command()(reports.committee)
app.command()(demo.demo)
app.command()(backfill)
app.add_typer(topics_app, name="topics")
app.add_typer(schemas_app, name="schemas")
app.add_typer(hl7_app, name="hl7")
app.add_typer(fhir_app, name="fhir")
app.add_typer(dicom_app, name="dicom")
app.add_typer(db_app, name="db")
app.add_typer(export_app, name="export")
app.add_typer(tool_app, name="tool")
app.add_typer(adverse_app, name="adverse")
app.add_typer(labels_app, name="labels")


def main() -> None:
    started = time.monotonic()
    try:
        app()
    except SurveillanceError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo(f"interrupted after {time.monotonic() - started:.0f}s", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
