"""Puts parsed reports on `reports.final` and rejected input on `reports.final.dlq`.

An asyncio producer (aiokafka) shared by the MLLP listener, `hl7 import` and the FHIR
service. `deliver` returns only when the broker acknowledged every record (acks=all):
that is the moment an HL7 AA or a FHIR 201 may be sent. The producer retries over a
dropped broker connection; a write whose acknowledgement was lost may then be on the topic
twice, which has no second effect (the join applies an event id once; the embedded broker
does not offer idempotent producers, so de-duplication is by event id, as for intake).
Reports are keyed by accession number, as the worker's co-partitioned join expects.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from surveillance.contracts import MAX_EVENT_BYTES, DeadLetter, ReportFinal
from surveillance.interop.errors import DeliveryError
from surveillance.stream.topics import REPORTS_FINAL, dlq


def dead_letter(raw: bytes, reason: str, source: str) -> DeadLetter:
    """A rejected input as the other DLQs hold it: the original bytes (truncated to the
    event limit), their size and the reason. `source` says which adapter refused it."""
    return DeadLetter(
        source_topic=REPORTS_FINAL,
        source_partition=-1,
        source_offset=-1,
        reason=f"{source}: {reason}"[:2000],
        received_at=datetime.now(UTC),
        original_b64=base64.b64encode(raw[:MAX_EVENT_BYTES]).decode(),
        original_size=len(raw),
    )


class ReportSink:
    """Start with `await sink.start()`; `await sink.stop()` flushes and closes."""

    def __init__(self, bootstrap: str, timeout_seconds: float = 30.0,
                 linger_ms: int = 2) -> None:
        self.bootstrap = bootstrap
        self.timeout_seconds = timeout_seconds
        self._linger_ms = linger_ms
        self._producer: Any = None

    async def start(self) -> ReportSink:
        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import KafkaError

        ms = int(self.timeout_seconds * 1000)
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            enable_idempotence=False,
            linger_ms=self._linger_ms,
            max_batch_size=256 * 1024,
            request_timeout_ms=ms,
            retry_backoff_ms=200,
        )
        client_log = logging.getLogger("aiokafka")
        level = client_log.level
        client_log.setLevel(logging.CRITICAL)  # our one line says it, not its traceback
        try:
            await producer.start()
        except (KafkaError, OSError) as exc:
            await producer.stop()
            raise DeliveryError(f"no Kafka broker answers at {self.bootstrap}: start it or "
                                "set SURVEILLANCE_KAFKA__BOOTSTRAP") from exc
        finally:
            client_log.setLevel(level)
        self._producer = producer
        return self

    async def stop(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    async def deliver(self, reports: Sequence[ReportFinal]) -> None:
        """Every report durably on the topic, or `DeliveryError` (some may be written:
        a resend is safe, the join applies an event id once)."""
        await self._send([
            (REPORTS_FINAL, r.accession_number.encode("utf-8"),
             r.model_dump_json(exclude_none=True).encode("utf-8"))
            for r in reports
        ])

    async def deliver_records(self, records: Sequence[tuple[bytes, bytes]]) -> None:
        """Reports already serialized, as (accession key, JSON value) pairs."""
        await self._send([(REPORTS_FINAL, key, value) for key, value in records])

    async def dead_letter(self, letter: DeadLetter, key: bytes | None = None) -> None:
        await self._send([(dlq(REPORTS_FINAL), key, letter.model_dump_json().encode("utf-8"))])

    async def _send(self, records: list[tuple[str, bytes | None, bytes]]) -> None:
        from aiokafka.errors import KafkaError

        if self._producer is None:
            raise DeliveryError("the report sink is not started")
        try:
            futures = [await self._producer.send(topic, value, key=key)
                       for topic, key, value in records]
            await asyncio.wait_for(asyncio.gather(*futures), self.timeout_seconds)
        except (KafkaError, TimeoutError, OSError) as exc:
            raise DeliveryError(
                f"the broker at {self.bootstrap} did not confirm the write within "
                f"{self.timeout_seconds:.0f}s ({type(exc).__name__})") from exc
