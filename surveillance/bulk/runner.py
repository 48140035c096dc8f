"""The engine on a plain Kafka client, in large batches: a backfill at bulk speed.

The runner takes every partition of the topics the worker reads, inputs and internal
alike, and keeps its offsets in the worker's consumer group (the app id), so it is a
worker without Faust: a batch of up to `max_records` from `getmany` goes through the
engine; its records are sent (acks=all), then, once they are acknowledged, its table
changes are written to the tables' changelog topics in Faust's format (`bulk.changelog`),
the case snapshots last; once every send of the batch is acknowledged, the batch's offsets
are committed. A crash before the commit re-reads the batch from the state the tables
were left in: no table change is on the log before the records it made (`_persist` says
why that makes the re-read's records the same revisions, alerts and figures again, which
are idempotent by event id, case revision or id, as in the worker). At
start the runner restores the tables from the changelogs, so a restarted backfill
continues where the last one committed, and a Faust worker started afterwards recovers
the same tables and continues from the same offsets.

It assigns itself the partitions rather than joining the group: Faust's group protocol
(its own assignor) cannot share a generation with a plain client, and the embedded
broker keeps a departed member's protocol until its session times out (the worker
started next then failed with InconsistentGroupProtocolError). So: one runner at a
time, and no worker of the same app id while it runs (the worker's group would not
know of the runner's commits).

What it takes from each fetch goes through `bulk.order.EventTimeMerge`: the input records
in one event-time order over every input partition it owns, whatever the fetches brought,
so what a backfill evaluates is a function of the backlog alone (two backfills with other
batch sizes or processes raise the same alerts). A partition a batch's worth ahead of the
others is paused until they catch up; the offsets committed are those of the records
taken, not of those fetched and held.

It stops once every partition has been read to its end and no record has come for
`idle_seconds` (the internal topics it writes are read back in the meantime). Several
runners, each in its own process, can share a backfill: each owns some partitions of the
join and of the case stage (`bulk.ownership`), restores and reads only those, and they stop
together (`bulk.processes`). With several, the drift calibrations run in a calibration
process of their own (`bulk.calibration`); a case-stage process waiting only for
thresholds is not idle: it collects them before it may stop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from surveillance.bulk import changelog, join_clocks, order, restore
from surveillance.bulk.batches import BatchSender
from surveillance.bulk.calibration import CalibrationClient
from surveillance.bulk.ownership import JOIN_TOPICS, Ownership
from surveillance.bulk.pacing import PacedInputs
from surveillance.bulk.processes import CRASH_EXIT, Slot
from surveillance.clinical.ledger import CaseRecord
from surveillance.engine import collector
from surveillance.engine.config import EngineConfig
from surveillance.engine.horizon import case_records
from surveillance.engine.join import clock_key
from surveillance.engine.pipeline import (
    CASE_TABLE,
    JOIN_TABLE,
    Engine,
)
from surveillance.engine.records import Change, Output, Produce, Record
from surveillance.stream import topics

log = logging.getLogger(__name__)

#: Input topics: their records are the events counted.
INPUTS = (topics.AI_RESULTS, topics.REPORTS_FINAL)
#: Event-loop turns after a chunk's sends: enough for the producer's sender task to write
#: them (it wakes, drains the accumulator, starts the request) before the engine's next
#: chunk holds the loop.
IO_TURNS = 4
#: The fetch wait while tools wait for thresholds (how soon they are collected then).
CALIBRATION_POLL_MS = 20
#: What one fetch brings of a partition (aiokafka's `max_partition_fetch_bytes`; a broker
#: still sends a partition's first record batch whole when it is larger). The event-time
#: merge releases nothing until every input partition it waits on holds a record
#: (`bulk.order`), and a consumer hands over its fetched records a partition at a time: with
#: 8 MiB a partition, the join fetched and decoded 104,000-144,000 records of the 365-day
#: benchmark backlog (1.3-2.4 s) before its first release, the case stage idle all the
#: while, and held up to 138,000. With 1 MiB: 42,000 records (0.6 s), up to 92,000 held.
PARTITION_FETCH_BYTES = 1 << 20


@dataclass
class Progress:
    events: int = 0  # input events (ai.results, reports.final) taken
    records: int = 0  # every record taken, internal ones included
    behind: int = 0  # records between the positions and the log ends, last measured
    started: float = 0.0  # monotonic, before the tables are restored
    #: monotonic, when the last batch was committed or a held tool's outputs acknowledged
    last_batch: float = 0.0
    busy_cpu: float = 0.0  # CPU seconds of this process from `started` to `last_batch`
    ready_cpu: float = 0.0  # the same from `started` to its first batch's start


class BulkRunner:
    def __init__(self, config: EngineConfig, app_id: str, client: dict[str, Any],
                 max_records: int = 20_000, idle_seconds: float = 5.0,
                 chunk_records: int = 2_000,
                 on_batch: Callable[[Progress], None] | None = None,
                 crash_at: tuple[int, str] | None = None, owned: Ownership | None = None,
                 slot: Slot | None = None,
                 calibrator: CalibrationClient | None = None) -> None:
        self.config = config
        self.app_id = app_id
        self.client = client
        self.max_records = max_records
        self.idle_seconds = idle_seconds
        self.chunk_records = chunk_records
        self.on_batch = on_batch
        # Crash tests: (batch number, "flushed" | "committed"): the process dies there as
        # if killed (no flush, no commit, no goodbye to the broker).
        self.crash_at = crash_at
        self.owned = owned or Ownership.everything(config.partitions)
        #: Shared with the other runner processes of the backfill (None: alone).
        self.slot = slot
        #: The calibration process's end (None: the case stage calibrates in process).
        self.calibrator = calibrator
        self.batches = 0
        self.progress = Progress()
        self.tables: dict[str, dict[str, Any]] = {}
        self.engine: Engine | None = None
        self.assigned_cases: set[int] = set()
        self.sender: BatchSender | None = None  # the engine's records
        self.state_sender: BatchSender | None = None  # the tables' changelogs
        #: (join topic, partition) -> the offset after the last record taken (None: none
        #: committed): the offsets a join partition's saved clock is at (`bulk.join_clocks`).
        self._taken: dict[tuple[str, int], int | None] = {}

    async def run(self) -> Progress:
        collector.for_long_lived_state()
        self.progress.started = time.monotonic()
        cpu = time.process_time()
        owned = self.owned
        producer = AIOKafkaProducer(acks="all", linger_ms=5, max_batch_size=1 << 20,
                                    **self.client)
        consumer = AIOKafkaConsumer(
            group_id=self.app_id, enable_auto_commit=False, auto_offset_reset="earliest",
            max_partition_fetch_bytes=PARTITION_FETCH_BYTES, fetch_max_bytes=32 << 20,
            fetch_max_wait_ms=changelog.FETCH_MAX_WAIT_MS, **self.client)

        async def connect() -> None:
            await asyncio.gather(producer.start(), consumer.start())
            # Assigned now, the consumer looks up its committed offsets and starts
            # fetching while the tables are restored.
            consumer.assign([TopicPartition(t, p) for t, p in owned.topic_partitions()])

        try:
            # Both run to their end before either's failure is raised: the clients are
            # then stopped once, not while starting.
            restored, connected = await asyncio.gather(
                restore.restore(self.client, self.app_id, self.config.partitions, owned),
                connect(), return_exceptions=True)
            for outcome in (restored, connected):
                if isinstance(outcome, BaseException):
                    raise outcome
            assert not isinstance(restored, BaseException)
            self.tables, rewind = restored
            again = await restore.reread(consumer, owned, rewind, self.tables)
            self.engine = Engine(self.config, *(self.tables[t] for t in changelog.TABLES),
                                 join_objects=True, metrics=False)
            await self._join_clocks(consumer)
            for partition, (start, end) in again.items():
                self.engine.cases.snapshots.reread(partition, start, end)
            self.engine.cases.ready = False
            self.engine.cases.drift.calibrator = self.calibrator
            self.sender, self.state_sender = BatchSender(producer), BatchSender(producer)
            self.assigned_cases = set(owned.cases)
            await self._loop(consumer, cpu)
            # Caught up: the snapshot of every tool changed since its last one, so a
            # worker taking over loads them all (it replays a tool whose snapshot does
            # not match the case table).
            await self._send(self.engine.snapshot())
        finally:
            if self.calibrator is not None:
                self.calibrator.done()
            await consumer.stop()
            await producer.stop()
        return self.progress

    async def _join_clocks(self, consumer: AIOKafkaConsumer) -> None:
        """Each owned join partition's clock, from the one saved at its committed offsets
        (`bulk.join_clocks`), else from the join table; and the offsets taken so far."""
        assert self.engine is not None
        join_table = self.tables[JOIN_TABLE]
        saved = {p: join_table.pop(clock_key(p), None) for p in self.owned.join}
        for tp in consumer.assignment():
            if tp.topic in JOIN_TOPICS:
                self._taken[tp.topic, tp.partition] = await consumer.committed(tp)
        join = self.engine.join
        for p in sorted(self.owned.join):
            state = join_clocks.chosen(saved[p], join_clocks.offsets(self._taken, p))
            if state is not None:
                join.saved_clocks[p] = state
            join.clock(p, datetime.now(UTC))  # now: a batch's start state is its own

    def _clock_states(self) -> join_clocks.States:
        assert self.engine is not None
        return join_clocks.states(self._taken, self.engine.join.clocks, self.owned.join)

    def _clock_changes(self, before: join_clocks.States, records: list[Record]) -> list[Change]:
        """The saved clocks of the join partitions `records` (a batch) read."""
        assert self.engine is not None
        return [Change(JOIN_TABLE, clock_key(p), value, p) for p, value in join_clocks.batch(
            self._taken, before, records, self.engine.join.clocks, self.owned.join)]

    async def _loop(self, consumer: AIOKafkaConsumer, cpu: float) -> None:
        quiet_since: float | None = None
        assert self.engine is not None
        drift = self.engine.cases.drift
        merge = PacedInputs(consumer, INPUTS, self.max_records)
        while self.slot is None or not self.slot.stopped():
            batch = await merge.fetch(CALIBRATION_POLL_MS if drift.held else 500)
            # Input values decoded once, here: their time orders them (`bulk.order`),
            # and ingest takes them as they are.
            fetched = [Record(m.topic, m.partition, m.offset, m.key, m.value,
                              tuple(m.headers or ()), order.decoded(m.topic, m.value))
                       for messages in batch.values() for m in messages]
            records = await merge.take(fetched)
            if not records and drift.held:  # not quiet: their alerts are still to come
                held = len(drift.held)
                out = self.engine.process([], datetime.now(UTC), time.monotonic())
                await self._send(out)
                quiet_since = None
                if out.produce or out.changes or len(drift.held) < held:
                    self._progressed(cpu, len(merge))  # the backfill's work ends with them
                continue
            if not records:
                if fetched or len(merge):  # held for their turn: not idle
                    quiet_since = None
                    continue
                now = time.monotonic()
                quiet_since = quiet_since or now
                if (now - quiet_since >= self.idle_seconds and await self._at_end(consumer)
                        and (self.slot is None or self.slot.caught_up(quiet_since, now))):
                    return
                continue
            quiet_since = None
            if self.slot is not None:
                self.slot.busy()
            if not self.batches:
                self.progress.ready_cpu = time.process_time() - cpu
            await self._take(records)
            self.batches += 1
            self._crash_if("flushed")
            # What was taken, not what was fetched: held input records are read again
            # after a crash.
            await consumer.commit({TopicPartition(r.topic, r.partition): r.offset + 1
                                   for r in records})
            self._crash_if("committed")
            behind = len(merge)
            for tp in consumer.assignment():
                behind += max((consumer.highwater(tp) or 0) - await consumer.position(tp), 0)
            self._progressed(cpu, behind)

    def _progressed(self, cpu: float, behind: int) -> None:
        """A batch committed, or the outputs of tools a calibration held acknowledged
        after the last batch: either moves the end of the backfill's wall time (its
        events/s cover every output, the held tools' drift alerts included)."""
        progress = self.progress
        progress.last_batch = time.monotonic()
        progress.busy_cpu = time.process_time() - cpu
        progress.behind = behind
        if self.slot is not None:
            self.slot.progress(progress.events, progress.records, behind,
                               progress.last_batch, progress.busy_cpu, progress.ready_cpu)

    async def _send(self, out: Output) -> None:
        """What the engine made outside a batch (the tools a calibration held caught up,
        the final snapshots), sent as a batch's is."""
        assert self.sender is not None
        out.apply_to(self.tables)
        await asyncio.gather(*await self._persist(await self._send_outputs(out.produce),
                                                  out.changes))

    def _crash_if(self, point: str) -> None:
        if self.crash_at == (self.batches, point):
            os._exit(CRASH_EXIT)

    async def _take(self, records: list[Record]) -> None:
        """One batch through the engine (its input records in event-time order,
        `bulk.order`), `chunk_records` at a time; returns once every send is
        acknowledged. A chunk's records are sent as soon as it is taken, and its table
        changes once those records are acknowledged (`_persist`): in a process without
        the case stage, the engine takes the next chunk meanwhile, and the records of a
        chunk go out before the next chunk's (the partitions keep the engine's order), so
        another runner process starts on them about one chunk later. A process with the
        case stage waits for a chunk's records before its next chunk: that can hold a drift
        calibration (seconds of CPU, ten times that on a loaded machine), and a request
        left in flight across it can outlive the producer's request timeout (a 90-day
        benchmark under load 19 failed so)."""
        engine = self.engine
        assert engine is not None
        if not engine.cases.ready:  # the case stage from the restored case table
            engine.cases.rebuild(self._owned_cases(self.assigned_cases), self.assigned_cases)
        waiting: tuple[list[asyncio.Future[Any]], list[Change]] | None = None
        persisted: list[asyncio.Future[Any]] = []
        before = self._clock_states()
        for start in range(0, len(records), self.chunk_records):
            chunk = records[start:start + self.chunk_records]
            out = engine.process(chunk, datetime.now(UTC), time.monotonic())
            out.apply_to(self.tables)
            changes = out.changes
            if start + self.chunk_records >= len(records):  # the batch's last chunk
                # Not in the table's backing: the join reads no clock from it.
                changes = changes + self._clock_changes(before, records)
            acknowledged = await self._send_outputs(out.produce)
            # Let the producer hand these sends to the broker before the next chunk's
            # work holds the event loop.
            for _ in range(IO_TURNS):
                await asyncio.sleep(0)
            if waiting is not None:
                persisted += await self._persist(*waiting)
                waiting = None
            if self.assigned_cases:
                persisted += await self._persist(acknowledged, changes)
            else:
                waiting = (acknowledged, changes)
        if waiting is not None:
            persisted += await self._persist(*waiting)
        await asyncio.gather(*persisted)  # acks=all: every record is on its replicas
        self.progress.records += len(records)
        self.progress.events += sum(r.topic in INPUTS for r in records)
        if self.on_batch is not None:
            self.on_batch(self.progress)

    async def _send_outputs(self, produce: list[Produce]) -> list[asyncio.Future[Any]]:
        """A chunk's records, sent now; their acknowledgements (not awaited)."""
        outputs = self.sender
        assert outputs is not None
        for p in produce:
            await outputs.add(p.topic, p.key, p.value, p.partition,
                              tuple((p.headers or {}).items()))
        return await outputs.send_all()

    async def _persist(self, acknowledged: list[asyncio.Future[Any]],
                       changes: list[Change]) -> list[asyncio.Future[Any]]:
        """A chunk's table changes to their changelogs, once the chunk's records are
        acknowledged (`acknowledged`); their acknowledgements, not awaited.

        Records first: a table change on the log is then never ahead of the records it
        made. A kill after the records leaves the tables (or some of their keys) as they
        were, and the batch is read again from its start through the same clocks
        (`bulk.join_clocks`, the snapshots' case clocks): the join finds each input either
        in its state (it re-emits the case as it stands, a revision already sent) or not
        (it makes the same revisions again); the case stage drops both as not newer, and
        its alerts and figures made again carry the same ids. The other way round (the
        tables first, as before), the join, finding a batch's inputs in its state, re-sent
        only each case's last revision: a revision lost in the kill (a report's label that
        a correction in the same batch changed) never reached the case stage, and its
        day's window was a case short; and the alerts and figures of a batch whose case
        snapshot was on the log were never made again. Not covered: the `cases.join`
        forwards of a producer keying by something else than the accession pass the merge
        as fetched, so a re-read can join them in another order and number a case's
        revisions differently (a later revision under a number already taken is dropped).

        The case snapshots last (`bulk.changelog.write`)."""
        assert self.state_sender is not None
        await asyncio.gather(*acknowledged)
        return await changelog.write(self.state_sender, self.app_id, changes)

    def _owned_cases(self, partitions: set[int]) -> list[tuple[str, CaseRecord]]:
        return case_records(self.tables[CASE_TABLE].items(), partitions)

    async def _at_end(self, consumer: AIOKafkaConsumer) -> bool:
        assigned = consumer.assignment()
        if not assigned:
            return False
        ends = await consumer.end_offsets(list(assigned))
        for tp in assigned:
            if await consumer.position(tp) < ends[tp]:
                return False
        return True
