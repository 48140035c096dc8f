"""`surveillance ...`: the command line. Errors a user can cause end in one clear line."""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError

from surveillance.bulk.command import backfill
from surveillance.errors import SurveillanceError
from surveillance.interop.dicom_cli import dicom_app
from surveillance.interop.hl7_cli import fhir_app, hl7_app

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
topics_app = typer.Typer(no_args_is_help=True, help="Kafka topics of the service.")
schemas_app = typer.Typer(no_args_is_help=True, help="JSON Schemas of the topics.")
app.add_typer(topics_app, name="topics")
app.add_typer(schemas_app, name="schemas")
app.add_typer(hl7_app, name="hl7")
app.add_typer(fhir_app, name="fhir")
app.add_typer(dicom_app, name="dicom")
app.command("backfill")(backfill)

F = TypeVar("F", bound=Callable[..., Any])
SCHEMA_DIR = Path("schemas")


def fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _settings() -> Any:
    from surveillance.settings import get_settings

    try:
        return get_settings()
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = "__".join(str(p) for p in first["loc"]).upper()
        fail(f"bad setting SURVEILLANCE_{where}: {first['msg']}")


@topics_app.command("create")
def topics_create(
    bootstrap: Annotated[str | None, typer.Option(help="host:port of a broker")] = None,
    partitions: Annotated[int | None, typer.Option(min=1)] = None,
    fix: Annotated[bool, typer.Option(
        help="alter existing topics whose configuration differs (compaction, retention)")
    ] = False,
) -> None:
    """Create every topic the service uses (idempotent; also for a real Kafka cluster),
    and check the configuration of the topics that already exist."""
    from surveillance.kafka_clients import client_options
    from surveillance.stream.topics import provision

    settings = _settings()
    bootstrap = bootstrap or settings.kafka.bootstrap
    specs = _topic_specs(settings, partitions or settings.kafka.partitions)
    done = provision(bootstrap, specs, settings.kafka.replication_factor,
                     client_options(settings.kafka), fix=fix)
    for spec in done.created:
        config = ", ".join(f"{k}={v}" for k, v in sorted(spec.config.items()))
        typer.echo(f"created {spec.name} ({spec.partitions} partitions"
                   f"{'; ' + config if config else ''})")
    for m in done.fixed:
        typer.echo(f"fixed {m.topic}: {m.key} {m.found or 'unset'} -> {m.expected}")
    for m in done.mismatches:
        typer.echo(f"MISMATCH {m.topic}: {m.key} is {m.found or 'unset'}, "
                   f"expected {m.expected}")
    typer.echo(f"{len(done.created)} topics created, {len(done.present)} already present")
    if done.mismatches:
        fail(f"{len(done.mismatches)} topic settings differ from what the service needs: "
             "run `surveillance topics create --fix` (or alter them with kafka-configs)")


def _topic_specs(settings: Any, partitions: int) -> list[Any]:
    from surveillance.stream.topics import Retention, all_topics

    return all_topics(settings.stream.app_id, partitions, Retention.of(settings.kafka))


@schemas_app.command("export")
def schemas_export(out: Path = SCHEMA_DIR) -> None:
    """Write one JSON Schema per topic (the files `schemas/` holds)."""
    from surveillance.schemas import write_schemas

    for path in write_schemas(out):
        typer.echo(str(path))


@app.command()
def worker() -> None:
    """Run a stream worker (joins the consumer group; scale out by running more)."""
    settings = _settings()
    _require_key(settings)
    _check_broker(settings)
    from surveillance.stream import broker_watch
    from surveillance.stream.app import app as faust_app
    from surveillance.stream.topics import all_topics

    # A broker that restarts empty leaves Faust waiting forever: a thread notices, exits 3.
    broker_watch.start(settings.kafka, [s.name for s in all_topics(
        settings.stream.app_id, settings.kafka.partitions)])
    sys.argv = [
        "surveillance",
        "worker",
        "--loglevel",
        "warn",
        "--web-port",
        str(settings.stream.web_port),
        "--web-host",
        settings.stream.web_host,
    ]
    faust_app.main()


def _require_key(settings: Any) -> None:
    """Production refuses a missing, public or weak pseudonym key (one line, exit 2)."""
    from surveillance.privacy_key import KeyRefused, check_key

    try:
        warning = check_key(settings.pseudonym_key.get_secret_value(), settings.mode)
    except KeyRefused as exc:
        fail(str(exc))
        return
    if warning:
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)


def _check_broker(settings: Any) -> None:
    """Fail fast, in one line, when the broker is down or the topics were never made."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    from surveillance.kafka_clients import client_options
    from surveillance.stream.topics import all_topics, partition_counts

    bootstrap, partitions = settings.kafka.bootstrap, settings.kafka.partitions
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000,
                                 **client_options(settings.kafka))
        try:
            counts = partition_counts(admin)
        finally:
            admin.close()
    except KafkaError:
        fail(f"no Kafka broker answers at {bootstrap}: start it or set "
             "SURVEILLANCE_KAFKA__BOOTSTRAP (and its SECURITY_PROTOCOL, SSL_*, SASL_*)")
        return
    specs = all_topics(settings.stream.app_id, partitions)
    missing = [s.name for s in specs if s.name not in counts]
    if missing:
        fail(f"topics missing on {bootstrap}: {', '.join(missing)}; run "
             "`surveillance topics create`")
    # The join is co-partitioned: input topics, cases.join and the tables must agree.
    wrong = [f"{s.name} has {counts[s.name]}" for s in specs if counts[s.name] != partitions]
    if wrong:
        fail(f"partition counts differ from SURVEILLANCE_KAFKA__PARTITIONS={partitions}: "
             f"{', '.join(wrong)}; set it to the topics' count (the join needs one count "
             "for every topic)")


@app.command("store-writer")
def store_writer() -> None:
    """Consume the surveillance topics into PostgreSQL/TimescaleDB (its own consumer group)."""
    import asyncio
    import signal

    from surveillance.kafka_clients import client_options
    from surveillance.store import run_writer

    settings = _settings()
    url = settings.database.url.get_secret_value()
    if not url:
        fail("no database configured: set SURVEILLANCE_DATABASE__URL")
    # No key check: the writer only stores what is already pseudonymized and never
    # holds the key (least privilege; deploy/k8s/store-writer.yaml gives it none).
    _check_broker(settings)
    if settings.database.metrics_port:
        _serve_metrics(settings.database.metrics_host, settings.database.metrics_port)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        health = await run_writer(settings.kafka.bootstrap, url, stop,
                                  client_options=client_options(settings.kafka))
        typer.echo(f"store writer stopped: {health.rows_written} rows written", err=True)

    asyncio.run(run())


def _serve_metrics(host: str, port: int) -> None:
    """/metrics of this process (a background thread), for Prometheus to scrape."""
    from prometheus_client import start_http_server

    from surveillance.observe.metrics import REGISTRY

    try:
        start_http_server(port, addr=host, registry=REGISTRY)
    except OSError as exc:
        fail(f"cannot serve /metrics on {host}:{port} ({exc.strerror}): set "
             "SURVEILLANCE_DATABASE__METRICS_PORT to a free port, or 0 to turn it off")
    typer.echo(f"metrics on http://{host}:{port}/metrics", err=True)


db_app = typer.Typer(no_args_is_help=True, help="The PostgreSQL/TimescaleDB store.")
app.add_typer(db_app, name="db")


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply the numbered migrations (TimescaleDB features when the extension exists)."""
    from surveillance.store import migrate

    settings = _settings()
    url = settings.database.url.get_secret_value()
    if not url:
        fail("no database configured: set SURVEILLANCE_DATABASE__URL")
    applied = migrate(url, retention_days=settings.database.retention_days)
    typer.echo(f"{len(applied)} migrations applied: {', '.join(applied) or 'none needed'}")


export_app = typer.Typer(no_args_is_help=True, help="Exports for the AI committee.")
app.add_typer(export_app, name="export")


def _db_url() -> str:
    url: str = _settings().database.url.get_secret_value()
    if not url:
        fail("no database configured: set SURVEILLANCE_DATABASE__URL")
    return url


@export_app.command("quarterly")
def export_quarterly_cmd(
    quarter: Annotated[str, typer.Option(help="e.g. 2026Q3")],
    out: Annotated[Path, typer.Option(help="folder for HTML, PDF, CSV and JSON")],
    tool: Annotated[str | None, typer.Option(help="one tool id (default: every tool)")] = None,
) -> None:
    """The quarterly performance review per tool: HTML, PDF, CSV and JSON of every figure."""
    from surveillance.report.quarterly import export_quarterly

    settings = _settings()
    for done in export_quarterly(_db_url(), quarter=quarter, tool=tool, out_dir=out,
                                 registry_path=settings.baselines_file,
                                 state_dir=settings.state_dir):
        typer.echo(f"{done.tool_id}: {done.html}, {done.pdf} ({done.pdf_pages} pages), "
                   f"{done.json}, {done.csv_dir}/")


@app.command("drift-report")
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
    with psycopg.connect(_db_url()) as conn:
        ref_rows = drift_feature_rows(conn, tool, r0, r1)
        cur_rows = drift_feature_rows(conn, tool, start, end)
    if not ref_rows or not cur_rows:
        fail(f"no stored AI results for {tool} in {'the reference' if not ref_rows else 'the'} "
             f"period ({len(ref_rows)} reference, {len(cur_rows)} current rows)")
    html, js = write_drift_report(ref_rows, cur_rows, out,
                                  f"{tool}: {start}..{end} against {r0}..{r1}")
    typer.echo(f"{html}\n{js}")


@app.command()
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

    settings = _settings()
    with psycopg.connect(_db_url()) as conn:
        cases = cases_of_version(conn, tool, version)
    result, html, js = run_validation(load_registry(settings.baselines_file), tool, version,
                                      cases, out, datetime.now(UTC))
    typer.echo(f"{tool} {version}: {'PASS' if result.passed else 'FAIL'} ({len(cases)} cases)")
    typer.echo(f"{html}\n{js}")
    if not result.passed:
        raise typer.Exit(1)


tool_app = typer.Typer(no_args_is_help=True, help="Tool-version lifecycle (audit trail).")
app.add_typer(tool_app, name="tool")
Who = Annotated[str, typer.Option("--who", help="the person making the change")]
Why = Annotated[str, typer.Option("--why", help="the reason, for the audit trail")]


@tool_app.command("register")
def tool_register(tool: str, version: str, who: Who, why: Why) -> None:
    """A new version enters the lifecycle in shadow."""
    from surveillance.clinical.lifecycle import register

    t = register(_settings().state_dir, tool, version, who, why)
    typer.echo(f"{tool} {version}: {t}")


@tool_app.command("promote")
def tool_promote(
    tool: str, version: str, who: Who, why: Why,
    to: Annotated[str, typer.Option(help="validating or live")] = "validating",
) -> None:
    """shadow -> validating -> live. Going live runs the validation on stored cases first."""
    from datetime import UTC, datetime

    from surveillance.clinical.baselines import load_registry
    from surveillance.clinical.lifecycle import ToolState, promote
    from surveillance.clinical.validation import validate as judge

    settings = _settings()
    try:
        target = ToolState(to)
    except ValueError:
        fail(f"--to must be one of {', '.join(s.value for s in ToolState)}")
        return
    validation = None
    if target is ToolState.LIVE:
        import psycopg

        from surveillance.store.queries import cases_of_version

        registry = load_registry(settings.baselines_file)
        if tool not in registry:
            fail(f"tool {tool!r} is not in the baseline registry")
        with psycopg.connect(_db_url()) as conn:
            cases = cases_of_version(conn, tool, version)
        validation = judge(registry[tool], cases, version=version)
    t = promote(settings.state_dir, tool, version, target, who, why, validation,
                datetime.now(UTC))
    typer.echo(f"{tool} {version}: {t}")


@tool_app.command("suspend")
def tool_suspend(tool: str, version: str, who: Who, why: Why) -> None:
    from surveillance.clinical.lifecycle import suspend

    typer.echo(str(suspend(_settings().state_dir, tool, version, who, why)))


@tool_app.command("retire")
def tool_retire(tool: str, version: str, who: Who, why: Why) -> None:
    from surveillance.clinical.lifecycle import retire

    typer.echo(str(retire(_settings().state_dir, tool, version, who, why)))


@tool_app.command("history")
def tool_history(tool: str | None = None, version: str | None = None) -> None:
    """The audit trail: every transition with who, when and why."""
    from surveillance.clinical.lifecycle import history

    for t in history(_settings().state_dir, tool, version):
        typer.echo(str(t))


@app.command()
def shadow() -> None:
    """ONNX shadow re-scoring of sampled studies (its own consumer group, never blocks).

    Needs SURVEILLANCE_SHADOW__MODEL_PATH and SURVEILLANCE_SHADOW__IMAGE_FOLDER.
    """
    from surveillance.shadow.process import main_shadow

    settings = _settings()
    _require_key(settings)
    main_shadow(settings)


@app.command()
def intake(
    host: str = "127.0.0.1",
    port: int = 8080,
    tls_cert: Annotated[Path | None, typer.Option(help="serve HTTPS: certificate chain")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="serve HTTPS: its private key")] = None,
) -> None:
    """Serve the adverse-event form and JSON API (its own process)."""
    from surveillance.intake import IntakeSettings, serve

    settings = _settings()
    _require_key(settings)
    try:
        intake_settings = IntakeSettings()
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = "_".join(str(p) for p in first["loc"]).upper()
        msg = str(first["msg"]).removeprefix("Value error, ")
        fail(f"bad setting SURVEILLANCE_INTAKE_{where}: {msg}" if where else msg)
    if (tls_cert is None) != (tls_key is None):
        fail("give both --tls-cert and --tls-key to serve HTTPS, or neither")
    tls = (tls_cert, tls_key) if tls_cert is not None and tls_key is not None else None
    serve(host, port, settings.kafka.bootstrap, settings, intake_settings, tls)


adverse_app = typer.Typer(no_args_is_help=True, help="Adverse-event reports.")
app.add_typer(adverse_app, name="adverse")


@adverse_app.command("list")
def adverse_list() -> None:
    """Open adverse-event reports and their regulatory clocks."""
    from datetime import datetime

    from surveillance.intake import list_open_reports

    rows = list_open_reports(_settings().state_dir, datetime.now().astimezone())
    if not rows:
        typer.echo("no open adverse-event reports")
    for row in rows:
        clocks = "; ".join(
            f"{o.regime} {o.recipient} due {o.due} ({o.status.value})" for o in row.obligations
        )
        typer.echo(f"{row.reference}  {row.tool_id} {row.software_version}  "
                   f"{row.outcome}  aware {row.aware_date}  {clocks}")


labels_app = typer.Typer(no_args_is_help=True, help="Report-label extraction (quality staff).")
app.add_typer(labels_app, name="labels")
Vocab = Annotated[
    Path | None, typer.Option("--vocabulary", help="a finding vocabulary (default: shipped)")
]


@labels_app.command("evaluate")
def labels_evaluate(
    gold: Annotated[Path, typer.Option(help="TSV: finding code, expected label, text")],
    vocabulary: Vocab = None,
    show_misses: Annotated[bool, typer.Option(help="print each wrong line")] = False,
) -> None:
    """Accuracy of extraction on a gold file; each figure with its Wilson 95% interval."""
    from surveillance.clinical.label_evaluation import evaluate, format_evaluation, read_gold
    from surveillance.clinical.label_vocabulary import load_vocabulary

    vocab = load_vocabulary(vocabulary) if vocabulary else None
    result = evaluate(read_gold(gold), vocab)
    if show_misses:
        for row, got in result.misses:
            typer.echo(f"line {row.line}: {row.finding_code} expected {row.expected.value}, "
                       f"got {got.value}: {row.text!r}")
        typer.echo("")
    for line in format_evaluation(result):
        typer.echo(line)


@labels_app.command("explain")
def labels_explain(
    text: Annotated[str, typer.Argument(help="report or impression text")],
    finding: Annotated[str, typer.Option(help="a finding code, e.g. pulmonary_embolism")],
    vocabulary: Vocab = None,
) -> None:
    """Which mention and which trigger decided the label of one finding in a text."""
    from surveillance.clinical.label_vocabulary import load_vocabulary
    from surveillance.clinical.labels import explain_label

    vocab = load_vocabulary(vocabulary) if vocabulary else None
    result = explain_label(text, finding, vocab)
    where = result.decided_by.value if result.decided_by else "no mention"
    typer.echo(f"{finding}: {result.label.value} (decided by: {where})")
    deciding = set(result.deciding)
    for m in result.mentions:
        mark = "*" if m in deciding else " "
        trigger = f'trigger "{m.trigger}"' if m.trigger else "no trigger"
        typer.echo(f'{mark} [{m.section.value} {m.section_index}] "{m.term}" {m.state.value}, '
                   f'{trigger}; clause: "{m.clause}"')


@app.command()
def simulate(
    out: Annotated[Path, typer.Option(help="write events as JSON lines here")],
    days: int = 90,
    seed: int = 7,
    scenario: str = "all",
) -> None:
    """Write a seeded, reproducible event stream (AI results and reports) to a file."""
    from surveillance.simulate import run_simulate

    run_simulate(out, days, seed, scenario)
    typer.echo(f"wrote {out}")


@app.command()
def committee(
    events: Annotated[Path, typer.Option(help="input events as JSON lines (`simulate --out`)")],
) -> None:
    """Coverage, triage turnaround, alert burden, cost and quantification figures as JSON."""
    import json

    from surveillance.clinical.baselines import load_registry
    from surveillance.report.committee_figures import committee_figures
    from surveillance.simulate.output import read_jsonl

    figures = committee_figures(read_jsonl(events), load_registry())
    typer.echo(json.dumps(figures, indent=2, sort_keys=True))


@app.command()
def demo(
    days: int = 90,
    seed: int = 7,
    scenario: str = "all",
    timeout: Annotated[float, typer.Option(help="seconds to wait for the worker")] = 240.0,
) -> None:
    """Embedded broker + worker + simulator replaying `days` days, then a summary per tool."""
    from surveillance.demo import run_demo
    from surveillance.privacy_key import check_key

    settings = _settings()
    # The demo's processes run in demo mode (stream.runner): say what that means here too.
    warning = check_key(settings.pseudonym_key.get_secret_value(), "demo")
    if warning:
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)
    state = Path(tempfile.mkdtemp(prefix="surveillance-demo-"))
    ok = run_demo(days=days, seed=seed, scenario=scenario, timeout=timeout, state_dir=state,
                  partitions=settings.kafka.partitions)
    if not ok:
        raise typer.Exit(1)


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



