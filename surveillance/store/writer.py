"""The store writer: Kafka topics in, PostgreSQL rows out, offsets committed only after.

It reads `cases.adjudicated`, `surveillance.alerts`, `surveillance.snapshots` and
`adverse.events` with its own consumer group and auto-commit off. A batch is committed in
PostgreSQL first and its offsets in Kafka second, so a crash in between re-delivers rows
that the idempotent upserts (store/batch.py) absorb: nothing is lost, nothing counted twice.

When the database is unreachable the writer retries with exponential backoff and keeps
fetching into memory up to `max_buffer_rows`, then pauses its partitions (back-pressure:
Kafka keeps the rest) until the buffer drains. If partitions are taken away in a
rebalance, the buffer is written if possible and otherwise dropped: it was never
committed, so the next owner reads it again.

On TimescaleDB the writer also refreshes `tool_daily` over the old days a batch wrote, and
exports the background jobs' health every `job_poll_seconds` (store/timescale.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import BaseModel, Field

from surveillance import kafka_clients
from surveillance.observe.metrics import set_timescaledb_jobs
from surveillance.settings import Settings, get_settings
from surveillance.store.batch import write_batch
from surveillance.store.health import StoreHealth
from surveillance.store.rows import AI_RESULT_COLUMNS, Decoder, Rows
from surveillance.store.timescale import (
    has_continuous_aggregate,
    read_job_health,
    refresh_tool_daily,
    refresh_window,
)
from surveillance.stream import topics

log = logging.getLogger(__name__)

_INFERENCE_DATE = AI_RESULT_COLUMNS.index("inference_date")


class WriterSettings(BaseModel):
    """Tuning of the writer; batch and buffer sizes default to `settings.database`."""

    group_id: str = "surveillance-store-writer"
    batch_size: int = Field(default=2000, ge=1)
    max_buffer_rows: int = Field(default=200_000, ge=1)
    #: A partial batch is written once its oldest row has waited this long.
    linger_seconds: float = Field(default=0.2, gt=0)
    backoff_initial_seconds: float = Field(default=0.5, gt=0)
    backoff_max_seconds: float = Field(default=10.0, gt=0)
    connect_timeout_seconds: int = Field(default=5, ge=1)
    #: How often TimescaleDB job health is read into /metrics (wall clock).
    job_poll_seconds: float = Field(default=60.0, gt=0)

    @classmethod
    def from_settings(cls, settings: Settings) -> WriterSettings:
        return cls(
            batch_size=settings.database.batch_size,
            max_buffer_rows=settings.database.max_buffer_rows,
        )


@dataclass(frozen=True)
class WriterTopics:
    cases: str = topics.CASES_ADJUDICATED
    alerts: str = topics.ALERTS
    snapshots: str = topics.SNAPSHOTS
    adverse_events: str = topics.ADVERSE_EVENTS


@dataclass
class _Chunk:
    """Rows decoded from one fetch, and the offsets to commit once they are stored."""

    rows: Rows
    offsets: dict[TopicPartition, int]
    fetched_at: float = field(default_factory=time.monotonic)


class _Buffer:
    def __init__(self) -> None:
        self._chunks: deque[_Chunk] = deque()
        self.rows = 0

    def append(self, chunk: _Chunk) -> None:
        self._chunks.append(chunk)
        self.rows += len(chunk.rows)

    def oldest_age(self) -> float:
        return time.monotonic() - self._chunks[0].fetched_at if self._chunks else 0.0

    def head(self, max_rows: int) -> tuple[int, Rows, dict[TopicPartition, int]]:
        """Merge the oldest chunks up to about `max_rows` rows (at least one chunk).

        Chunks are in fetch order, so the largest offset per partition of a prefix is
        exactly what may be committed once that prefix is stored.
        """
        merged, taken, rows = Rows.empty(), 0, 0
        offsets: dict[TopicPartition, int] = {}
        for chunk in self._chunks:
            if taken and rows + len(chunk.rows) > max_rows:
                break
            merged.extend(chunk.rows)
            for tp, offset in chunk.offsets.items():
                offsets[tp] = max(offsets.get(tp, 0), offset)
            taken += 1
            rows += len(chunk.rows)
        return taken, merged, offsets

    def drop(self, chunks: int) -> None:
        for _ in range(chunks):
            self.rows -= len(self._chunks.popleft().rows)

    def clear(self) -> None:
        self._chunks.clear()
        self.rows = 0


class StoreWriter:
    def __init__(
        self,
        bootstrap: str,
        db_url: str,
        settings: WriterSettings | None = None,
        topic_names: WriterTopics | None = None,
        health: StoreHealth | None = None,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        """`client_options`: TLS/SASL, by default from `SURVEILLANCE_KAFKA__*`."""
        self._bootstrap = bootstrap
        self._client_options = dict(
            client_options if client_options is not None
            else kafka_clients.client_options(get_settings().kafka))
        self._db_url = db_url
        self.settings = settings or WriterSettings.from_settings(get_settings())
        names = topic_names or WriterTopics()
        self._decoder = Decoder(names.cases, names.alerts, names.snapshots, names.adverse_events)
        self.health = health or StoreHealth()
        self._buffer = _Buffer()
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._backoff = self.settings.backoff_initial_seconds
        self._next_attempt = 0.0
        # The rebalance listener runs in aiokafka's coordinator task: never two writes at once.
        self._flush_lock = asyncio.Lock()
        self._timescale: bool | None = None  # known once connected
        self._next_job_poll = 0.0

    async def run(self, stop_event: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=self.settings.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **self._client_options,
        )
        self._consumer = consumer
        consumer.subscribe(self._decoder.topics, listener=_OnRevoke(self))
        await consumer.start()
        try:
            while not stop_event.is_set():
                await self._fetch(consumer)
                if self._flush_due():
                    await self._flush_once(consumer)
                if time.monotonic() >= self._next_job_poll:
                    await self._poll_jobs()
            # Last chance to store what is buffered; what remains is simply re-read later.
            while self._buffer.rows and await self._flush_once(consumer):
                pass
        finally:
            await consumer.stop()
            if self._conn is not None:
                await self._conn.close()

    async def _fetch(self, consumer: AIOKafkaConsumer) -> None:
        room = self.settings.max_buffer_rows - self._buffer.rows
        assigned = consumer.assignment()
        if room <= 0 and not self.health.paused:
            consumer.pause(*assigned)
            self.health.paused = True
            log.debug("store buffer full (%d rows): fetching paused", self._buffer.rows)
        elif room > 0 and self.health.paused:
            consumer.resume(*assigned)
            self.health.paused = False
        wait = self.settings.linger_seconds
        if self._buffer.rows and self.health.outage:
            wait = max(0.05, min(wait, self._next_attempt - time.monotonic()))
        try:
            batches = await consumer.getmany(
                timeout_ms=int(wait * 1000), max_records=max(1, min(room, self.settings.batch_size))
            )
        except KafkaError as exc:
            log.warning("store writer: fetching from Kafka failed (%s); retrying", exc)
            await asyncio.sleep(self.settings.linger_seconds)
            return
        if not batches:
            return
        rows = Rows.empty()
        offsets: dict[TopicPartition, int] = {}
        for tp, messages in batches.items():
            for m in messages:
                self._decoder.add(rows, tp.topic, tp.partition, m.offset, m.value)
            offsets[tp] = messages[-1].offset + 1
        self._buffer.append(_Chunk(rows, offsets))
        self.health.set_buffered(self._buffer.rows)

    def _flush_due(self) -> bool:
        if not self._buffer.rows or time.monotonic() < self._next_attempt:
            return False
        return (
            self._buffer.rows >= self.settings.batch_size
            or self._buffer.oldest_age() >= self.settings.linger_seconds
            or self.health.outage
        )

    async def _flush_once(self, consumer: AIOKafkaConsumer) -> bool:
        """Write the oldest batch and commit its offsets; False if the database failed."""
        async with self._flush_lock:
            if not self._buffer.rows:
                return True
            return await self._flush_locked(consumer)

    async def _flush_locked(self, consumer: AIOKafkaConsumer) -> bool:
        chunks, rows, offsets = self._buffer.head(self.settings.batch_size)
        try:
            if self._conn is None or self._conn.closed:
                # Autocommit: batches still run in explicit transactions, and a continuous
                # aggregate refresh must run outside one.
                self._conn = await psycopg.AsyncConnection.connect(
                    self._db_url,
                    connect_timeout=self.settings.connect_timeout_seconds,
                    autocommit=True,
                )
            conflicts = await write_batch(self._conn, rows)
        except psycopg.Error as exc:
            await self._drop_connection()
            reason = _first_line(exc)
            if isinstance(exc, psycopg.errors.UndefinedTable):
                reason += "; is the schema migrated? run `surveillance db migrate`"
            self.health.write_failed(reason, self.settings.max_buffer_rows)
            self._next_attempt = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, self.settings.backoff_max_seconds)
            return False
        self._buffer.drop(chunks)
        self._backoff = self.settings.backoff_initial_seconds
        self._next_attempt = 0.0
        self.health.set_buffered(self._buffer.rows)
        rejected = len(rows.rejects) + len(conflicts)
        self.health.write_succeeded(len(rows) - rejected, rejected)
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:
            # The rows are stored; if these offsets are re-delivered the upserts absorb them.
            log.warning("store writer: committing offsets failed (%s); rows are stored", exc)
        await self._refresh_old_days(rows)
        return True

    async def _refresh_old_days(self, rows: Rows) -> None:
        """After a commit: re-materialize the old days of `tool_daily` the batch wrote."""
        conn = self._conn
        if conn is None or not rows.ai_results:
            return
        try:
            if self._timescale is None:
                self._timescale = await has_continuous_aggregate(conn)
            window = refresh_window(
                (r[_INFERENCE_DATE] for r in rows.ai_results), datetime.now(UTC)
            )
            if self._timescale and window is not None:
                await refresh_tool_daily(conn, *window)
        except psycopg.Error as exc:
            # The rows are stored; the hourly refresh policy re-materializes these days.
            log.warning(
                "store writer: refreshing tool_daily failed (%s); the refresh policy will "
                "catch up within the hour",
                _first_line(exc),
            )

    async def _poll_jobs(self) -> None:
        """Export TimescaleDB job health; nothing on plain PostgreSQL or while unreachable."""
        async with self._flush_lock:
            conn = self._conn
            if conn is None or conn.closed or self.health.outage:
                return  # again on the next loop: the first batch opens the connection
            self._next_job_poll = time.monotonic() + self.settings.job_poll_seconds
            try:
                if self._timescale is None:
                    self._timescale = await has_continuous_aggregate(conn)
                if not self._timescale:
                    return
                jobs = await read_job_health(conn, datetime.now(UTC))
            except psycopg.Error as exc:
                log.warning("store writer: reading TimescaleDB job health failed (%s)", exc)
                return
        set_timescaledb_jobs(
            (j.job, j.last_run_failed, j.consecutive_failures, j.overdue_seconds) for j in jobs
        )

    async def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await self._conn.close()
        self._conn = None

    async def on_revoked(self) -> None:
        """Before partitions move: store the buffer if the database is there, else drop it."""
        consumer = self._consumer
        if consumer is None:
            return
        while self._buffer.rows and not self.health.outage:
            if not await self._flush_once(consumer):
                break
        if self._buffer.rows:
            log.info(
                "store writer: %d uncommitted rows dropped on rebalance; they will be re-read",
                self._buffer.rows,
            )
            self._buffer.clear()
            self.health.set_buffered(0)
        self.health.paused = False


class _OnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, writer: StoreWriter) -> None:
        self._writer = writer

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._writer.on_revoked()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


async def run_writer(
    bootstrap: str,
    db_url: str,
    stop_event: asyncio.Event,
    *,
    settings: WriterSettings | None = None,
    topic_names: WriterTopics | None = None,
    health: StoreHealth | None = None,
    client_options: Mapping[str, Any] | None = None,
) -> StoreHealth:
    """Run the store writer until `stop_event` is set; return its final health."""
    writer = StoreWriter(bootstrap, db_url, settings, topic_names, health, client_options)
    await writer.run(stop_event)
    return writer.health
