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

from surveillance.errors import SurveillanceError

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
topics_app = typer.Typer(no_args_is_help=True, help="Kafka topics of the service.")
schemas_app = typer.Typer(no_args_is_help=True, help="JSON Schemas of the topics.")
app.add_typer(topics_app, name="topics")
app.add_typer(schemas_app, name="schemas")

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
) -> None:
    """Create every topic the service uses (idempotent; also for a real Kafka cluster)."""
    from surveillance.stream.topics import all_topics, create_topics

    settings = _settings()
    bootstrap = bootstrap or settings.kafka.bootstrap
    specs = all_topics(settings.stream.app_id, partitions or settings.kafka.partitions)
    created = create_topics(bootstrap, specs, settings.kafka.replication_factor)
    typer.echo(f"{len(created)} topics created, {len(specs) - len(created)} already present")


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
    _check_broker(settings.kafka.bootstrap, settings.stream.app_id, settings.kafka.partitions)
    from surveillance.stream.app import app as faust_app

    sys.argv = [
        "surveillance",
        "worker",
        "--loglevel",
        "warn",
        "--web-port",
        str(settings.stream.web_port),
        "--web-host",
        "127.0.0.1",
    ]
    faust_app.main()


def _check_broker(bootstrap: str, app_id: str, partitions: int) -> None:
    """Fail fast, in one line, when the broker is down or the topics were never made."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    from surveillance.stream.topics import all_topics

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            present = set(admin.list_topics())
        finally:
            admin.close()
    except KafkaError:
        fail(f"no Kafka broker answers at {bootstrap}: start it or set "
             "SURVEILLANCE_KAFKA__BOOTSTRAP")
        return
    missing = [s.name for s in all_topics(app_id, partitions) if s.name not in present]
    if missing:
        fail(f"topics missing on {bootstrap}: {', '.join(missing)}; run "
             "`surveillance topics create`")


@app.command("store-writer")
def store_writer() -> None:
    """Consume the surveillance topics into PostgreSQL/TimescaleDB (its own consumer group)."""
    import asyncio
    import signal

    from surveillance.store import run_writer

    settings = _settings()
    url = settings.database.url.get_secret_value()
    if not url:
        fail("no database configured: set SURVEILLANCE_DATABASE__URL")
    _check_broker(settings.kafka.bootstrap, settings.stream.app_id, settings.kafka.partitions)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        health = await run_writer(settings.kafka.bootstrap, url, stop)
        typer.echo(f"store writer stopped: {health.rows_written} rows written", err=True)

    asyncio.run(run())


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
    applied = migrate(url)
    typer.echo(f"{len(applied)} migrations applied: {', '.join(applied) or 'none needed'}")


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
def demo(
    days: int = 90,
    seed: int = 7,
    scenario: str = "all",
    timeout: Annotated[float, typer.Option(help="seconds to wait for the worker")] = 240.0,
) -> None:
    """Embedded broker + worker + simulator replaying `days` days, then a summary per tool."""
    from surveillance.demo import run_demo

    settings = _settings()
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



