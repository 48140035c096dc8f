"""`surveillance intake`: provision the topic, then serve the app with uvicorn."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from surveillance.clinical.baselines import load_registry
from surveillance.intake.app import create_app
from surveillance.intake.config import IntakeSettings
from surveillance.intake.publisher import KafkaPublisher
from surveillance.kafka_clients import client_options
from surveillance.settings import Settings
from surveillance.stream.topics import ADVERSE_EVENTS, Retention, all_topics, create_topics

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI


def server_config(
    app: FastAPI,
    host: str,
    port: int,
    log_level: str = "info",
    tls: tuple[Path, Path] | None = None,
) -> uvicorn.Config:
    """How the intake is served: HTTPS itself when given `tls` (certificate chain and key
    files), else plain HTTP for a TLS-terminating proxy. uvicorn's own proxy-header
    handling is off: the app's `TrustedProxy` middleware alone decides whom to believe."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        server_header=False,
        proxy_headers=False,
        ssl_certfile=str(tls[0]) if tls else None,
        ssl_keyfile=str(tls[1]) if tls else None,
    )


def serve(
    host: str,
    port: int,
    bootstrap: str,
    settings: Settings,
    intake: IntakeSettings | None = None,
    tls: tuple[Path, Path] | None = None,
) -> None:
    """Run the intake until interrupted. Raises `TopicError` when no broker answers."""
    import uvicorn

    cfg = intake or IntakeSettings()
    security = client_options(settings.kafka)
    specs = all_topics(settings.stream.app_id, settings.kafka.partitions,
                       Retention.of(settings.kafka))
    create_topics(
        bootstrap,
        [s for s in specs if s.name == ADVERSE_EVENTS],
        settings.kafka.replication_factor,
        security,
    )
    publisher = KafkaPublisher(
        bootstrap,
        ADVERSE_EVENTS,
        attempts=cfg.publish_attempts,
        timeout_seconds=cfg.publish_timeout_seconds,
        client_options=security,
    )
    app = create_app(
        publisher=publisher,
        pseudonym_key=settings.pseudonym_key.get_secret_value().encode(),
        state_dir=settings.state_dir,
        intake=cfg,
        registry=load_registry(settings.baselines_file),
    )
    uvicorn.Server(server_config(app, host, port, tls=tls)).run()
