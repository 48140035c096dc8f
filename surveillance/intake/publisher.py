"""Puts accepted reports on `adverse.events`, retrying a briefly unavailable broker.

Synchronous (kafka-python) so that it works from any thread and any event loop; the web
handlers call it in a worker thread. A publish either returns after the broker
acknowledged the write (acks=all) or raises `PublishError` after a bounded number of
attempts. A timed-out attempt may still have been written: the retry then duplicates it
on the topic, which is safe because consumers de-duplicate by `event_id`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol

from surveillance.intake.errors import PublishError

log = logging.getLogger(__name__)


class Publisher(Protocol):
    def publish(self, key: bytes, value: bytes) -> None: ...

    def close(self) -> None: ...


class KafkaPublisher:
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        attempts: int = 3,
        timeout_seconds: float = 5.0,
        backoff_seconds: float = 0.5,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        """`client_options`: TLS/SASL (`kafka_clients.client_options`)."""
        if attempts < 1:
            raise ValueError("attempts must be >= 1")
        self.bootstrap = bootstrap
        self.topic = topic
        self.attempts = attempts
        self.timeout_seconds = timeout_seconds
        self.backoff_seconds = backoff_seconds
        self._client_options = dict(client_options or {})
        self._producer: Any = None
        self._lock = threading.Lock()

    def _get_producer(self) -> Any:
        from kafka import KafkaProducer

        with self._lock:
            if self._producer is None:
                ms = int(self.timeout_seconds * 1000)
                self._producer = KafkaProducer(
                    bootstrap_servers=self.bootstrap,
                    acks="all",
                    retries=0,  # retries are ours, bounded and visible
                    max_block_ms=ms,
                    request_timeout_ms=ms,
                    delivery_timeout_ms=ms,
                    bootstrap_timeout_ms=ms,
                    enable_idempotence=False,  # de-duplication is by event_id downstream
                    reconnect_backoff_max_ms=1000,
                    **self._client_options,
                )
            return self._producer

    def _drop_producer(self) -> None:
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=0)
            except Exception as exc:  # closing a broken client must not mask the real error
                log.debug("closing a failed producer: %s", exc)

    def publish(self, key: bytes, value: bytes) -> None:
        from kafka.errors import KafkaError

        last: Exception | None = None
        for attempt in range(self.attempts):
            try:
                future = self._get_producer().send(self.topic, key=key, value=value)
                future.get(timeout=self.timeout_seconds)
                return
            except (KafkaError, OSError) as exc:
                last = exc
                log.warning(
                    "publish to %s failed (attempt %d of %d): %s",
                    self.topic,
                    attempt + 1,
                    self.attempts,
                    type(exc).__name__,
                )
                self._drop_producer()
                if attempt + 1 < self.attempts:
                    time.sleep(self.backoff_seconds * 2**attempt)
        raise PublishError(
            f"the broker at {self.bootstrap} did not confirm the write after "
            f"{self.attempts} attempts ({type(last).__name__})"
        )

    def close(self) -> None:
        self._drop_producer()
