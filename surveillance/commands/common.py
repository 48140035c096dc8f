"""What every command shares: errors a user can cause end in one line and exit code 2."""

from __future__ import annotations

from typing import Any

import typer
from pydantic import ValidationError


def fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def load_settings() -> Any:
    from surveillance.settings import get_settings

    try:
        return get_settings()
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = "__".join(str(p) for p in first["loc"]).upper()
        fail(f"bad setting SURVEILLANCE_{where}: {first['msg']}")


def load_intake_settings() -> Any:
    """The intake's settings (also the FHIR endpoint's tokens), or one line and exit 2: a
    value that is not JSON (a token list written `ris:abc`) raised pydantic-settings'
    SettingsError, shown as a traceback."""
    from pydantic_settings import SettingsError

    from surveillance.intake import IntakeSettings

    try:
        return IntakeSettings()
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = "_".join(str(p) for p in first["loc"]).upper()
        msg = str(first["msg"]).removeprefix("Value error, ")
        fail(f"bad setting SURVEILLANCE_INTAKE_{where}: {msg}" if where else msg)
    except SettingsError as exc:
        # "error parsing value for field "api_tokens" from source ...": name the variable.
        field = str(exc).split('"')[1] if str(exc).count('"') >= 2 else ""
        name = f"SURVEILLANCE_INTAKE_{field.upper()}" if field else "a SURVEILLANCE_INTAKE_ setting"
        fail(f"{name} is not valid JSON: write it as JSON, e.g. "
             "SURVEILLANCE_INTAKE_API_TOKENS='{\"ris\": \"<token>\"}'")


def require_port_free(host: str, port: int, what: str) -> None:
    """One line and exit 2 when `host:port` cannot be bound, before a server starts (uvicorn
    logs its own multi-line error and exits 3)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            fail(f"cannot serve {what} on {host}:{port} ({exc.strerror}): stop what holds "
                 "the port or choose another")


def require_key(settings: Any) -> None:
    """Production refuses a missing, public or weak pseudonym key (one line, exit 2)."""
    from surveillance.privacy_key import KeyRefused, check_key

    try:
        warning = check_key(settings.pseudonym_key.get_secret_value(), settings.mode)
    except KeyRefused as exc:
        fail(str(exc))
        return
    if warning:
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)


def check_broker(settings: Any) -> None:
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


def db_url() -> str:
    url: str = load_settings().database.url.get_secret_value()
    if not url:
        fail("no database configured: set SURVEILLANCE_DATABASE__URL")
    return url
