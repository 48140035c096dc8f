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
another worker holds is neither read nor kept on disk here. Each fetched batch of a
partition goes into its database as one RocksDB write batch, the offset in it: a
pre-seed stopped anywhere leaves each database at the end of some batch, with that
batch's offset, and Faust's recovery (or the next start) goes on from it. While it runs
the databases take a larger memtable and no compression (`_bulk`); Faust's options are
set back, and the memtables flushed, before Faust writes to them again. Only rocksdict
databases (Faust's default driver since 0.11); other stores are left to Faust.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import rocksdict
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.stores.rocksdb import Store as RocksDBStore

log = logging.getLogger(__name__)

#: How long a fetch may wait at the broker. Short: the embedded broker (Tansu 0.6)
#: answers a fetch only when the wait runs out, even once records have come.
FETCH_MAX_WAIT_MS = 20
#: Bytes a fetch may bring per partition and in all: case records are ~5 kB, and the
#: client's default (1 MiB a partition) would make ~200 records a round trip.
PARTITION_FETCH_BYTES = 4 << 20
FETCH_BYTES = 16 << 20
#: Records a batch at most (one write each per partition): ~10 MB of case records.
BATCH_RECORDS = 2_000
#: Memtable size of a database while it is pre-seeded (`_bulk`).
BULK_WRITE_BUFFER = 16 << 20
#: What Faust's stores compress with: RocksDB's default (Faust sets none).
FAUST_COMPRESSION = "kSnappyCompression"
#: Writes skip the write-ahead log: a crash loses the memtables, but RocksDB flushes
#: them in write order, so what survives is every write up to some batch, each batch with
#: its offset. They are flushed before Faust writes again (with its log).
_NO_WAL = rocksdict.WriteOptions()
setattr(_NO_WAL, "disable_wal", True)  # a property (rocksdict 0.3's stub: a method)  # noqa: B010

Target = tuple[rocksdict.Rdict, bytes]  # a partition's database and its offset key


@dataclass
class Preseeded:
    """What a pre-seed read: per (changelog topic, partition), the records applied and
    the offset the store now keeps (-1: none; the offset Faust's recovery starts from).
    Filled batch by batch, so it is right also for a pre-seed stopped halfway."""

    records: dict[tuple[str, int], int] = field(default_factory=dict)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    seconds: float = 0.0
    #: CPU seconds of this process meanwhile (its RocksDB threads' included).
    cpu: float = 0.0
    #: Partitions left unfinished because the time allowed ran out (Faust reads the rest).
    unfinished: set[tuple[str, int]] = field(default_factory=set)

    @property
    def total(self) -> int:
        return sum(self.records.values())


def rocksdb_stores(tables: Mapping[str, Any]) -> dict[str, RocksDBStore]:
    """changelog topic -> store, of the Faust tables (`changelog topic -> table`) whose
    store is a rocksdict RocksDB store."""
    out = {}
    for topic, table in tables.items():
        store = table.data
        if isinstance(store, RocksDBStore) and store.use_rocksdict:
            out[topic] = store
    return out


async def preseed(stores: Mapping[str, RocksDBStore], partitions: Collection[Any],
                  consumer_options: dict[str, Any], *,
                  until: Mapping[Any, int] | None = None, deadline: float | None = None,
                  done: Preseeded | None = None) -> Preseeded:
    """Bring the databases of `partitions` ((changelog topic, partition) pairs of
    `stores`) to their changelogs' ends, through each store's own handle (Faust's, which
    stays open). `until`: per partition, the last offset to apply (Faust's recovery
    checks that a store keeps no offset past the highwater it took). `deadline`
    (`time.monotonic()`): stop after the batch that passes it."""
    began, cpu = time.perf_counter(), time.process_time()
    done = done if done is not None else Preseeded()
    dbs: dict[TopicPartition, Target] = {}
    for topic, partition in partitions:
        store = stores.get(topic)
        if store is not None:
            # The handle Faust's store opens (and keeps) for the partition.
            db = store._db_for_partition(partition)
            dbs[TopicPartition(topic, partition)] = (db, store.offset_key)
    restore = {tp: {"write_buffer_size": str(stores[tp.topic].rocksdb_options
                                             .write_buffer_size),
                    "compression": FAUST_COMPRESSION} for tp in dbs}
    try:
        for db, _ in dbs.values():
            _bulk(db)
        if dbs:
            ends = {tp: until[tp.topic, tp.partition] for tp in dbs
                    if until is not None and (tp.topic, tp.partition) in until}
            await _read(dbs, consumer_options, done, ends, deadline)
    finally:
        for tp, (db, _) in dbs.items():
            db.set_options(restore[tp])
            db.flush()  # the writes skipped the write-ahead log
    done.seconds += time.perf_counter() - began
    done.cpu += time.process_time() - cpu
    return done


def _bulk(db: rocksdict.Rdict) -> None:
    """A database set for a bulk write: with the worker's 4 MiB memtables
    (`TABLE_OPTIONS`) RocksDB stalled each write on flushes, and compressing what it
    flushes took about as much CPU as all the rest (RocksDB's flush threads, the ~5 kB
    JSON case records). Faust's compactions compress these files as they move them down
    the levels."""
    db.set_options({"write_buffer_size": str(BULK_WRITE_BUFFER),
                    "compression": "kNoCompression"})


async def _read(dbs: Mapping[TopicPartition, Target], consumer_options: dict[str, Any],
                done: Preseeded, ends: Mapping[TopicPartition, int],
                deadline: float | None) -> None:
    starts = {}
    for tp, (db, offset_key) in dbs.items():
        kept = db.get(offset_key)
        starts[tp] = -1 if kept is None else int(kept)
        done.offsets[tp.topic, tp.partition] = starts[tp]
    todo = {tp for tp, start in starts.items() if tp not in ends or start < ends[tp]}
    if not todo:
        return
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
                _apply(dbs[tp], messages)
                key = tp.topic, tp.partition
                done.records[key] = done.records.get(key, 0) + len(messages)
                done.offsets[key] = messages[-1].offset
            for tp in todo - finished:
                high = consumer.highwater(tp)
                if high is not None and await consumer.position(tp) >= min(
                        high, ends[tp] + 1 if tp in ends else high):
                    finished.add(tp)
            if finished:
                consumer.pause(*finished)
                todo -= finished
            if todo and deadline is not None and time.monotonic() > deadline:
                done.unfinished |= {(tp.topic, tp.partition) for tp in todo}
                return
    finally:
        await consumer.stop()


def _apply(target: Target, messages: list[Any]) -> None:
    """As `faust.stores.rocksdb.Store.apply_changelog_batch`, one write with the offset."""
    db, offset_key = target
    batch = rocksdict.WriteBatch(raw_mode=True)
    for m in messages:
        if m.key is None:  # no table writes one; Faust could not file it either
            continue
        if m.value is None:
            batch.delete(m.key)
        else:
            batch.put(m.key, m.value)
    batch.put(offset_key, str(messages[-1].offset).encode())
    db.write(batch, _NO_WAL)
