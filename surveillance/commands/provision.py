"""`surveillance topics create`, `schemas export`, `db migrate`: what a deployment sets up."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from surveillance.commands.common import fail, load_settings

topics_app = typer.Typer(no_args_is_help=True, help="Kafka topics of the service.")
schemas_app = typer.Typer(no_args_is_help=True, help="JSON Schemas of the topics.")
db_app = typer.Typer(no_args_is_help=True, help="The PostgreSQL/TimescaleDB store.")
SCHEMA_DIR = Path("schemas")


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

    settings = load_settings()
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


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply the numbered migrations (TimescaleDB features when the extension exists)."""
    from surveillance.store import migrate

    settings = load_settings()
    url = settings.database.url.get_secret_value()
    if not url:
        fail("no database configured: set SURVEILLANCE_DATABASE__URL")
    applied = migrate(url, retention_days=settings.database.retention_days)
    typer.echo(f"{len(applied)} migrations applied: {', '.join(applied) or 'none needed'}")
