"""Puts parsed reports on `reports.final` and rejected input on `reports.final.dlq`.

An asyncio producer (aiokafka) shared by the MLLP listener, `hl7 import` and the FHIR
service. `deliver` returns only when the broker acknowledged every record (acks=all):
that is the moment an HL7 AA or a FHIR 201 may be sent. The producer retries over a
dropped broker connection; a write whose acknowledgement was lost may then be on the topic
twice, which has no second effect (the join applies an event id once; the embedded broker
does not offer idempotent producers, so de-duplication is by event id, as for intake).
Reports are keyed by accession number, as the worker's co-partitioned join expects.

Writes are coalesced: what concurrent callers hand over while a write is awaiting the
broker goes out together in the next one, as one record batch per partition (the
producer's default partitioner places each record, as `send` would). Per record that is
~3 us of CPU instead of ~18 us through `send`, and one acknowledgement wait per batch
instead of one per message; at most two writes are in flight, so the batch grows with
the broker's latency and a lone message still goes out at once. Records keep their order.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections import defaultdict
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
        self._pending: list[tuple[str, bytes | None, bytes]] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._writes = asyncio.Semaphore(2)
        self._flush_task: asyncio.Task[None] | None = None
        self._confirming: set[asyncio.Task[None]] = set()

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

    def submit(self, records: Sequence[tuple[bytes, bytes]]) -> asyncio.Future[None]:
        """As `deliver_records`, for callers that would rather not run a task per message:
        the future is done when the broker acknowledged every record (or failed with
        `DeliveryError`)."""
        return self._submit([(REPORTS_FINAL, key, value) for key, value in records])

    def submit_dead_letter(self, letter: DeadLetter, key: bytes | None = None
                           ) -> asyncio.Future[None]:
        return self._submit([(dlq(REPORTS_FINAL), key,
                              letter.model_dump_json().encode("utf-8"))])

    async def _send(self, records: list[tuple[str, bytes | None, bytes]]) -> None:
        await self._submit(records)

    def _submit(self, records: list[tuple[str, bytes | None, bytes]]) -> asyncio.Future[None]:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._producer is None:
            waiter.set_exception(DeliveryError("the report sink is not started"))
            return waiter
        self._pending.extend(records)
        self._waiters.append(waiter)
        if self._flush_task is None:
            self._flush_task = asyncio.create_task(self._flush())
        return waiter

    async def _flush(self) -> None:
        """Writes what is pending, again and again while callers keep adding to it."""
        try:
            while self._waiters:
                await self._writes.acquire()
                records, self._pending = self._pending, []
                waiters, self._waiters = self._waiters, []
                try:
                    futures = await self._enqueue(records)
                except BaseException as exc:
                    self._writes.release()
                    _settle(waiters, self._failure(exc))
                    if not isinstance(exc, Exception):
                        raise
                    continue
                task = asyncio.create_task(self._confirm(futures, waiters))
                self._confirming.add(task)
                task.add_done_callback(self._confirming.discard)
        finally:
            self._flush_task = None

    async def _enqueue(self, records: list[tuple[str, bytes | None, bytes]]
                       ) -> list[asyncio.Future[Any]]:
        from aiokafka.partitioner import DefaultPartitioner

        producer = self._producer
        if producer is None:
            raise DeliveryError("the report sink is not started")
        partitioner = DefaultPartitioner()
        batches: dict[tuple[str, int], list[Any]] = defaultdict(list)
        places: dict[str, tuple[list[int], list[int]]] = {}
        for topic, key, value in records:
            if topic not in places:
                known = sorted(await producer.partitions_for(topic))
                places[topic] = (known, list(
                    producer.client.cluster.available_partitions_for_topic(topic)) or known)
            every, available = places[topic]
            open_ = batches[(topic, partitioner(key, every, available))]
            if not open_ or open_[-1].append(timestamp=None, key=key, value=value) is None:
                open_.append(producer.create_batch())
                if open_[-1].append(timestamp=None, key=key, value=value) is None:
                    raise DeliveryError(f"a record of {len(value)} bytes does not fit a batch")
        return [await producer.send_batch(batch, topic, partition=partition)
                for (topic, partition), builders in batches.items() for batch in builders]

    async def _confirm(self, futures: list[asyncio.Future[Any]],
                       waiters: list[asyncio.Future[None]]) -> None:
        try:
            await asyncio.wait_for(asyncio.gather(*futures), self.timeout_seconds)
        except BaseException as exc:
            _settle(waiters, self._failure(exc))
            if not isinstance(exc, Exception):
                raise
        else:
            _settle(waiters, None)
        finally:
            self._writes.release()

    def _failure(self, exc: BaseException) -> BaseException:
        from aiokafka.errors import KafkaError

        if isinstance(exc, DeliveryError):
            return exc
        if isinstance(exc, (KafkaError, TimeoutError, OSError)):
            failure = DeliveryError(
                f"the broker at {self.bootstrap} did not confirm the write within "
                f"{self.timeout_seconds:.0f}s ({type(exc).__name__})")
            failure.__cause__ = exc
            return failure
        return exc


def _settle(waiters: list[asyncio.Future[None]], exc: BaseException | None) -> None:
    for waiter in waiters:
        if waiter.done():
            continue  # its caller was cancelled
        if exc is None:
            waiter.set_result(None)
        elif isinstance(exc, Exception):
            waiter.set_exception(exc)
        else:
            waiter.cancel()
