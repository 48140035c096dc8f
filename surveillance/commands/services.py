"""The long-running processes: `worker`, `store-writer`, `shadow`, `intake`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from surveillance.commands.common import (
    check_broker,
    fail,
    load_intake_settings,
    load_settings,
    require_key,
    require_port_free,
)


def worker() -> None:
    """Run a stream worker (joins the consumer group; scale out by running more)."""
    settings = load_settings()
    require_key(settings)
    check_broker(settings)
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


def store_writer() -> None:
    """Consume the surveillance topics into PostgreSQL/TimescaleDB (its own consumer group)."""
    import asyncio
    import signal

    from surveillance.kafka_clients import client_options
    from surveillance.store import run_writer

    settings = load_settings()
    url = settings.database.url.get_secret_value()
    if not url:
        fail("no database configured: set SURVEILLANCE_DATABASE__URL")
    # No key check: the writer only stores what is already pseudonymized and never
    # holds the key (least privilege; deploy/k8s/store-writer.yaml gives it none).
    check_broker(settings)
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


def shadow() -> None:
    """ONNX shadow re-scoring of sampled studies (its own consumer group, never blocks).

    Needs SURVEILLANCE_SHADOW__MODEL_PATH and SURVEILLANCE_SHADOW__IMAGE_FOLDER.
    """
    from surveillance.shadow.process import main_shadow

    settings = load_settings()
    require_key(settings)
    main_shadow(settings)


def intake(
    host: str = "127.0.0.1",
    port: int = 8080,
    tls_cert: Annotated[Path | None, typer.Option(help="serve HTTPS: certificate chain")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="serve HTTPS: its private key")] = None,
) -> None:
    """Serve the adverse-event form and JSON API (its own process)."""
    from surveillance.intake import serve

    settings = load_settings()
    require_key(settings)
    intake_settings = load_intake_settings()
    if (tls_cert is None) != (tls_key is None):
        fail("give both --tls-cert and --tls-key to serve HTTPS, or neither")
    require_port_free(host, port, "the intake (--port)")
    tls = (tls_cert, tls_key) if tls_cert is not None and tls_key is not None else None
    serve(host, port, settings.kafka.bootstrap, settings, intake_settings, tls)
