"""Fill a worker's RocksDB table stores from their changelogs, inside Faust's recovery.

Faust 0.15 recovers a table partition by reading its changelog from the offset its store
keeps, one `faust.Event` per record: ~240 us a record, so a worker with no local state
took ~525 s of CPU for a 2M-exam/yr system's tables (`benchmarks/state_bounds.py`). A
plain batch consumer and batched writes take ~10 us a record. So once Faust has assigned
this worker its table partitions, and before its recovery reads them
(`stream.preseed_recovery`), each assigned partition's database is brought up to its
changelog's end here, written exactly as Faust's `Store.apply_changelog_batch` writes it:
the record's key and value bytes as they are (a record without value deletes the key)
and, under the store's `offset_key`, the offset of the last record applied. Faust's
recovery then starts from that offset and reads only what is left.

Only the partitions this worker is given, active or standby, are read: a partition
another worker holds is neither read nor kept on disk here. A partition's records are
gathered (the last value per key) and put into its database by SST file ingestion
(`stream.sst_runs`), with the offset of the last record read: once the partition is read
to its end, or, when the records held pass `sst_runs.RUN_BYTES`, the largest partition's
so far. A pre-seed stopped anywhere leaves each database as of some ingestion, with its
offset, and Faust's recovery (or the next start) goes on from it; at its deadline, what
it has read is ingested first. Only rocksdict databases (Faust's default driver since
0.11) without a TTL (their values carry a timestamp); other stores are left to Faust.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from surveillance.stream import sst_runs
from surveillance.stream.sst_runs import Partition, Run

if TYPE_CHECKING:  # not imported at run time: the pre-seed's processes go without Faust
    from faust.stores.rocksdb import Store as RocksDBStore

log = logging.getLogger(__name__)

#: How long a fetch may wait at the broker. Short: the embedded broker (Tansu 0.6)
#: answers a fetch only when the wait runs out, even once records have come.
FETCH_MAX_WAIT_MS = 20
#: Bytes a fetch may bring per partition and in all: case records are ~5 kB, and the
#: client's default (1 MiB a partition) would make ~200 records a round trip.
PARTITION_FETCH_BYTES = 4 << 20
FETCH_BYTES = 16 << 20
#: Records a fetch at most.
BATCH_RECORDS = 2_000
#: With several processes allowed: records left to read (by the first fetch's high
#: watermarks) past which they take over. Starting them costs ~0.4 s of CPU each and a
#: restart's tail is mostly nothing, which this process reads at once.
HAND_OVER_RECORDS = 50_000

@dataclass
class Preseeded:
    """What a pre-seed read: per (changelog topic, partition), the records applied and
    the offset the store now keeps (-1: none; the offset Faust's recovery starts from).
    Filled batch by batch, so it is right also for a pre-seed stopped halfway."""

    records: dict[tuple[str, int], int] = field(default_factory=dict)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    seconds: float = 0.0
    #: CPU seconds of this process meanwhile (its RocksDB threads' included) and of the
    #: pre-seed's processes, if any (`stream.preseed_processes`).
    cpu: float = 0.0
    #: The pre-seed's processes: how many, and the peak resident memory of the largest.
    processes: int = 0
    process_peak_rss: int = 0
    #: Partitions left unfinished because the time allowed ran out (Faust reads the rest).
    unfinished: set[tuple[str, int]] = field(default_factory=set)

    @property
    def total(self) -> int:
        return sum(self.records.values())


def rocksdb_stores(tables: Mapping[str, Any]) -> dict[str, RocksDBStore]:
    """changelog topic -> store, of the Faust tables (`changelog topic -> table`) whose
    store is a rocksdict RocksDB store."""
    from faust.stores.rocksdb import Store as RocksDBStore

    out = {}
    for topic, table in tables.items():
        store = table.data
        if (isinstance(store, RocksDBStore) and store.use_rocksdict
                and store.rocksdb_options.ttl is None):
            out[topic] = store
    return out


async def preseed(stores: Mapping[str, RocksDBStore], partitions: Collection[Any],
                  consumer_options: dict[str, Any], *,
                  until: Mapping[Any, int] | None = None, deadline: float | None = None,
                  done: Preseeded | None = None, processes: int = 1) -> Preseeded:
    """Bring the databases of `partitions` ((changelog topic, partition) pairs of
    `stores`) to their changelogs' ends, through each store's own handle (Faust's, which
    stays open). `until`: per partition, the last offset to apply (Faust's recovery
    checks that a store keeps no offset past the highwater it took). `deadline`
    (`time.monotonic()`): stop after the batch that passes it. `processes` above 1: the
    partitions are read and their SST files written by that many processes
    (`stream.preseed_processes`), this one ingesting the files they finish."""
    began, cpu = time.perf_counter(), time.process_time()
    done = done if done is not None else Preseeded()
    targets: dict[TopicPartition, Partition] = {}
    for topic, number in partitions:
        store = stores.get(topic)
        if store is not None:
            targets[TopicPartition(topic, number)] = sst_runs.partition(store, number)
    try:
        if targets:
            ends = {tp: until[tp.topic, tp.partition] for tp in targets
                    if until is not None and (tp.topic, tp.partition) in until}
            starts = {}
            for tp, target in targets.items():
                kept = target.db.get(target.offset_key)
                starts[tp] = -1 if kept is None else int(kept)
                done.offsets[tp.topic, tp.partition] = starts[tp]
            todo = {tp: start for tp, start in starts.items()
                    if tp not in ends or start < ends[tp]}
            several = processes > 1 and len(todo) > 1
            left = todo and await read(todo, consumer_options, ends, deadline,
                              lambda tp, run: _write(targets[tp], tp, run, done),
                              hand_over=HAND_OVER_RECORDS if several else None)
            if left and (deadline is None or time.monotonic() <= deadline):
                from surveillance.stream import preseed_processes

                await preseed_processes.read(
                    targets, {tp: done.offsets[tp.topic, tp.partition] for tp in left},
                    ends, consumer_options, deadline, processes, done)
            elif left:
                done.unfinished |= {(tp.topic, tp.partition) for tp in left}
    finally:
        done.seconds += time.perf_counter() - began
        done.cpu += time.process_time() - cpu
    return done


async def read(starts: Mapping[TopicPartition, int], consumer_options: dict[str, Any],
               ends: Mapping[TopicPartition, int], deadline: float | None,
               write: Callable[[TopicPartition, Run], None], hand_over: int | None = None
               ) -> set[TopicPartition]:
    """Read each partition of `starts` after its offset there, up to its end (or `ends`),
    gathering its records into runs that `write` is given; the partitions left
    unfinished at the `deadline` (what is held written first), or, once the high
    watermarks of all are known, when more than `hand_over` records are left to read
    (what is held of those dropped: their starts stand). Runs are held to
    `sst_runs.RUN_BYTES` together."""
    todo = set(starts)
    consumer = AIOKafkaConsumer(
        enable_auto_commit=False, group_id=None, fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        # A kept offset before the log's start (compacted away): from the start.
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=PARTITION_FETCH_BYTES, fetch_max_bytes=FETCH_BYTES,
        **consumer_options)
    await consumer.start()
    # aiokafka 0.14's stop() raises CancelledError if the consumer's own start-up task
    # has not run once yet (it cancels and awaits it): let it run.
    await asyncio.sleep(0)
    runs: dict[TopicPartition, Run] = {}  # read, not yet written (lost if stopped)
    try:
        consumer.assign(list(todo))
        for tp in todo:
            consumer.seek(tp, starts[tp] + 1)
        # The end of a partition is the high watermark its fetch responses carry, not
        # ListOffsets(latest), which the embedded broker answers wrongly
        # (`embedded.log_end`), or `ends` when given. Records written meanwhile are
        # Faust's recovery's.
        while todo:
            batch = await consumer.getmany(*todo, timeout_ms=100,
                                           max_records=BATCH_RECORDS)
            finished = set()
            for tp, messages in batch.items():
                if tp in ends:
                    messages = [m for m in messages if m.offset <= ends[tp]]
                    if messages and messages[-1].offset >= ends[tp]:
                        finished.add(tp)
                if not messages:
                    continue
                runs.setdefault(tp, Run()).add(messages)
            for tp in todo - finished:
                high = consumer.highwater(tp)
                if high is not None and await consumer.position(tp) >= min(
                        high, ends[tp] + 1 if tp in ends else high):
                    finished.add(tp)
            if finished:
                consumer.pause(*finished)
                todo -= finished
            for tp in finished & runs.keys():
                write(tp, runs.pop(tp))
            while runs and sum(run.size for run in runs.values()) > sst_runs.RUN_BYTES:
                tp = max(runs, key=lambda tp: runs[tp].size)
                write(tp, runs.pop(tp))
            if todo and hand_over is not None:
                left = await _left(consumer, todo, ends)
                if left is not None and left > hand_over:
                    return todo  # what is held not written: read again from the starts
                if left is not None:
                    hand_over = None  # little to read: all here
            if todo and deadline is not None and time.monotonic() > deadline:
                for tp in list(runs):
                    write(tp, runs.pop(tp))
                return todo
        return set()
    finally:
        await consumer.stop()


async def _left(consumer: AIOKafkaConsumer, todo: set[TopicPartition],
                ends: Mapping[TopicPartition, int]) -> int | None:
    """Records left to read of `todo` (None until every high watermark is known)."""
    left = 0
    for tp in todo:
        high = consumer.highwater(tp)
        if high is None:
            return None
        left += min(high, ends[tp] + 1 if tp in ends else high) - await consumer.position(tp)
    return left


def _write(target: Partition, tp: TopicPartition, run: Run, done: Preseeded) -> None:
    """A partition's run ingested, and said in `done`."""
    sst_runs.write(target, run)
    key = tp.topic, tp.partition
    done.records[key] = done.records.get(key, 0) + run.records
    done.offsets[key] = run.offset
