"""Send events to the broker (simulator replay, tests, benchmarks)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from surveillance.errors import SurveillanceError


class ProduceError(SurveillanceError):
    """Events could not be delivered to the broker."""


def produce(
    bootstrap: str,
    messages: Iterable[tuple[str, bytes | None, bytes]],
    client_options: Mapping[str, Any] | None = None,
) -> int:
    """Send (topic, key, value) triples in order; wait until every one is acknowledged.

    `client_options`: TLS/SASL, by default from `SURVEILLANCE_KAFKA__*`."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    from surveillance import kafka_clients
    from surveillance.settings import get_settings

    security = (client_options if client_options is not None
                else kafka_clients.client_options(get_settings().kafka))
    try:
        producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            linger_ms=5,
            batch_size=256 * 1024,
            acks=1,
            max_request_size=2 * 1024 * 1024,
            **security,
        )
    except KafkaError as exc:
        raise ProduceError(f"no Kafka broker answers at {bootstrap}: {exc}") from exc
    n = 0
    try:
        for topic, key, value in messages:
            producer.send(topic, key=key, value=value)
            n += 1
        producer.flush(timeout=120)
    except KafkaError as exc:
        raise ProduceError(f"sending to {bootstrap} failed after {n} events: {exc}") from exc
    finally:
        producer.close(timeout=10)
    return n
