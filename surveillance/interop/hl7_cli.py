"""`surveillance hl7 ...` and `surveillance fhir ...`: the interop commands (typer sub-apps).

`parse` is the interface analyst's tool: the `ReportFinal` events a file gives, one JSON
per line, with patient and accession identifiers already pseudonymized as ingest does;
every rejected message gets one line on stderr saying why, and the exit code is then 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from surveillance.errors import SurveillanceError
from surveillance.interop.errors import InteropError

if TYPE_CHECKING:  # every `surveillance` command imports this module: keep it light
    from surveillance.contracts import ReportFinal

hl7_app = typer.Typer(no_args_is_help=True,
                      help="HL7 v2 ORU^R01 and MDM^T02 reports in (MLLP, files).")
fhir_app = typer.Typer(no_args_is_help=True, help="FHIR R4 DiagnosticReport in.")

MappingOption = Annotated[
    Path | None, typer.Option(help="per-facility mapping YAML (see the README)")
]


def _fail(message: str) -> None:
    from surveillance.commands.common import fail

    fail(message)


def _settings() -> Any:
    from surveillance.commands.common import load_settings as settings

    return settings()


def _mapping(path: Path | None) -> Any:
    from surveillance.interop.hl7_mapping import load_mapping

    try:
        return load_mapping(path)
    except SurveillanceError as exc:
        _fail(str(exc))


def pseudonymized(report: ReportFinal, key: bytes) -> dict[str, Any]:
    """The report as `parse` prints it: identifiers replaced as ingest replaces them."""
    from surveillance.privacy import pseudonymize

    data: dict[str, Any] = json.loads(report.model_dump_json(exclude_none=True))
    data["accession_number"] = pseudonymize(key, "accession", report.accession_number)
    if report.patient_id is not None:
        data["patient_id"] = pseudonymize(key, "patient", report.patient_id)
    return data


def _key() -> bytes:
    """The pseudonym key, as the worker would use it: production refuses the public demo
    key (pseudonyms made with it are reversible by anyone), demo and test warn."""
    from surveillance.commands.common import require_key

    settings = _settings()
    require_key(settings)
    return str(settings.pseudonym_key.get_secret_value()).encode()


@hl7_app.command("parse")
def hl7_parse(file: Path, mapping: MappingOption = None) -> None:
    """Print the ReportFinal events of an HL7 file (one message or a batch)."""
    from surveillance.interop.hl7_batch import split_batch
    from surveillance.interop.hl7_header import Rejection
    from surveillance.interop.hl7_parse import parse_message

    rules = _mapping(mapping)
    try:
        data = file.read_bytes()
    except OSError as exc:
        _fail(f"cannot read {file}: {exc.strerror}")
    key = _key()
    earliest, now = _settings().stream.earliest_event_date, datetime.now(UTC)
    rejected = 0
    for n, message in enumerate(split_batch(data), start=1):
        result = parse_message(message, rules, now, earliest)
        if isinstance(result, Rejection):
            rejected += 1
            typer.echo(f"{file.name}#{n}: rejected ({result.code} {result.error}): "
                       f"{result.reason}", err=True)
            continue
        for skipped in result.skipped:
            what = f"OBR group {skipped.group}" if skipped.group else "message"
            typer.echo(f"{file.name}#{n}: {what} skipped: {skipped.reason}", err=True)
        for report in result.reports:
            typer.echo(json.dumps(pseudonymized(report, key)))
    if rejected:
        raise typer.Exit(2)


@hl7_app.command("listen")
def hl7_listen(
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 2575,
    mapping: MappingOption = None,
    bootstrap: Annotated[str | None, typer.Option(help="host:port of a broker")] = None,
    max_in_flight: Annotated[int, typer.Option(min=1, max=100_000)] = 256,
    max_message_bytes: Annotated[int, typer.Option(
        min=1024, max=256 * 1024 * 1024, help="largest message taken (a report with an "
        "embedded PDF, OBX type ED, can be several MB); at most --max-in-flight of them "
        "are held at once")] = 1024 * 1024,
    processes: Annotated[int, typer.Option(
        min=1, max=64, help="listener processes on the port (SO_REUSEPORT), one per core "
        "at most; duplicates are still found across them")] = 1,
) -> None:
    """Receive ORU^R01 and MDM^T02 over MLLP; ACK AA once the reports are on reports.final."""
    from surveillance.interop.mllp_server import MllpListener

    rules = _mapping(mapping)
    settings = _settings()
    broker, earliest = bootstrap or settings.kafka.bootstrap, settings.stream.earliest_event_date
    if processes > 1:
        _run(lambda: _listen_in_processes(host, port, processes, broker, rules, max_in_flight,
                                          earliest, max_message_bytes))
        return

    async def run() -> None:
        from surveillance.interop.hl7_sink import ReportSink

        sink = await ReportSink(broker).start()
        try:
            listener = MllpListener(sink, rules, max_in_flight=max_in_flight,
                                    earliest=earliest, max_message_bytes=max_message_bytes)
            try:
                server = await listener.serve(host, port)
            except OSError as exc:
                why = os.strerror(exc.errno) if exc.errno else str(exc)
                raise InteropError(f"cannot listen for MLLP on {host}:{port} ({why}): stop "
                                   "what holds the port or choose another --port") from exc
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            typer.echo(f"listening for MLLP on {host}:{port}, writing to {broker}")
            await stop.wait()
            server.close()
            await server.wait_closed()
            typer.echo(f"stopped: {dict(listener.stats)}")
        finally:
            await sink.stop()

    _run(run)


async def _listen_in_processes(host: str, port: int, processes: int, broker: str, rules: Any,
                               max_in_flight: int, earliest: date,
                               max_message_bytes: int) -> None:
    from surveillance.interop.mllp_processes import ListenerGroup

    group = await ListenerGroup(host, port, processes, broker, rules, max_in_flight,
                                earliest=earliest,
                                max_message_bytes=max_message_bytes).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    typer.echo(f"listening for MLLP on {host}:{port} in {processes} processes, "
               f"writing to {broker}")
    while not stop.is_set() and group.alive():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
    died = not group.alive()
    counts = await group.stop()
    typer.echo(f"stopped: {[dict(c) for c in counts]}")
    if died and not stop.is_set():
        _fail("an MLLP listener process ended unexpectedly; all were stopped (see the log), "
              "start `hl7 listen` again")


@hl7_app.command("import")
def hl7_import(
    paths: Annotated[list[Path], typer.Argument(help="HL7 files or directories")],
    mapping: MappingOption = None,
    checkpoint: Annotated[Path, typer.Option(help="resume file")] = Path(
        ".hl7-import-checkpoint.json"),
    bootstrap: Annotated[str | None, typer.Option(help="host:port of a broker")] = None,
    workers: Annotated[int | None, typer.Option(min=1, max=256,
                                                help="parsing processes (default: cores)")] = None,
) -> None:
    """Backfill HL7 batch files onto reports.final (resumable; re-running changes nothing)."""
    from tqdm import tqdm

    from surveillance.interop.hl7_import import Checkpoint, hl7_files, import_files
    from surveillance.interop.hl7_sink import ReportSink

    rules = _mapping(mapping)
    settings = _settings()
    broker, earliest = bootstrap or settings.kafka.bootstrap, settings.stream.earliest_event_date
    try:
        files = hl7_files(paths)
        marks = Checkpoint(checkpoint)
    except SurveillanceError as exc:
        _fail(str(exc))

    async def run() -> None:
        sink = await ReportSink(broker, linger_ms=20).start()
        try:
            total = sum(f.stat().st_size for f in files)
            with tqdm(total=total, unit="B", unit_scale=True, file=sys.stderr,
                      disable=None) as bar:
                summary = await import_files(files, sink, rules, marks, bar.update, workers,
                                             earliest)
        finally:
            await sink.stop()
        for line in summary.lines():
            typer.echo(line)

    _run(run)


def _run(main: Any) -> None:
    try:
        asyncio.run(main())
    except SurveillanceError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"{exc.strerror or exc}")


@fhir_app.command("parse")
def fhir_parse_command(file: Path) -> None:
    """Print the ReportFinal events of a FHIR DiagnosticReport or Bundle (JSON)."""
    from surveillance.interop.fhir_parse import FhirRejection, FhirSkipped, parse_resource

    try:
        raw = file.read_bytes()
    except OSError as exc:
        _fail(f"cannot read {file}: {exc.strerror}")
    key = _key()
    results = parse_resource(raw, "fhir", datetime.now(UTC),
                             _settings().stream.earliest_event_date)
    rejected = 0
    for n, result in enumerate(results, start=1):
        if isinstance(result, FhirRejection):
            rejected += 1
            typer.echo(f"{file.name}#{n}: rejected: {result.reason}", err=True)
        elif isinstance(result, FhirSkipped):
            typer.echo(f"{file.name}#{n}: skipped: {result.reason}", err=True)
        else:
            typer.echo(json.dumps(pseudonymized(result, key)))
    if rejected:
        raise typer.Exit(2)


@fhir_app.command("serve")
def fhir_serve(
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8090,
    bootstrap: Annotated[str | None, typer.Option(help="host:port of a broker")] = None,
) -> None:
    """The FHIR R4 endpoint (POST /fhir/DiagnosticReport, POST /fhir, GET /fhir/metadata).
    Same bearer tokens as the intake API (SURVEILLANCE_INTAKE_API_TOKENS)."""
    import uvicorn

    from surveillance.commands.common import load_intake_settings, require_port_free
    from surveillance.interop.fhir_app import create_fhir_app

    settings = _settings()
    broker = bootstrap or settings.kafka.bootstrap
    intake = load_intake_settings()
    require_port_free(host, port, "FHIR (--port)")
    if not intake.api_tokens:
        typer.secho("warning: SURVEILLANCE_INTAKE_API_TOKENS is empty: every POST will be "
                    "refused (401) until a token is set", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"FHIR R4 endpoint on http://{host}:{port}/fhir, writing to {broker}",
               err=True)
    app = create_fhir_app(intake, broker, earliest=settings.stream.earliest_event_date)
    uvicorn.run(app, host=host, port=port, log_level="warning")
