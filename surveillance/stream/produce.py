"""Send events to the broker (simulator replay, tests, benchmarks)."""

from __future__ import annotations

from collections.abc import Iterable

from surveillance.errors import SurveillanceError


class ProduceError(SurveillanceError):
    """Events could not be delivered to the broker."""


def produce(bootstrap: str, messages: Iterable[tuple[str, bytes | None, bytes]]) -> int:
    """Send (topic, key, value) triples in order; wait until every one is acknowledged."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    try:
        producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            linger_ms=5,
            batch_size=256 * 1024,
            acks=1,
            max_request_size=2 * 1024 * 1024,
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
