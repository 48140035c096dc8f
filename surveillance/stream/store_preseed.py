"""Fill the worker's RocksDB table stores from their changelogs before Faust recovers them.

Faust 0.15 recovers a table partition by reading its changelog from the offset its store
keeps, one `faust.Event` per record: ~240 us a record, so a worker with no local state
took ~525 s of CPU for a 2M-exam/yr system's tables (`benchmarks/state_bounds.py`). A
plain batch consumer and batched writes take ~10 us a record. So at start-up, before
Faust runs, every table partition's database is brought up to its changelog's end here,
written exactly as Faust's `Store.apply_changelog_batch` writes it: the record's key and
value bytes as they are (a record without value deletes the key) and, under the store's
`offset_key`, the offset of the last record applied. Faust's recovery then starts from
that offset and reads only what was written since.

Each fetched batch of a partition goes into its database as one RocksDB write batch, the
offset in it: a start-up stopped halfway leaves each database at the end of some batch,
with that batch's offset, and the next start (this or Faust's recovery) goes on from it.
A database this creates keeps the bulk write's memtable size and compression (`_open`)
until a pre-seed of it ends; the next start's does.

Every partition of every table is read, not only those this worker will be assigned (the
assignment comes later, from Faust's rebalance): a partition it is not given stays on
disk, up to date as of now, as Faust leaves one it has been revoked. Only rocksdict
databases (Faust's default driver since 0.11); other stores are left to Faust.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
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
#: Memtable size of a database while it is pre-seeded (`_open`).
BULK_WRITE_BUFFER = 16 << 20
#: What Faust's stores compress with: RocksDB's default (Faust sets none).
FAUST_COMPRESSION = "kSnappyCompression"
#: Writes skip the write-ahead log: a crash loses the memtables, but RocksDB flushes
#: them in write order, so what survives is every write up to some batch, each batch with
#: its offset (they are flushed before the database is closed).
_NO_WAL = rocksdict.WriteOptions()
setattr(_NO_WAL, "disable_wal", True)  # a property (rocksdict 0.3's stub: a method)  # noqa: B010


@dataclass
class Preseeded:
    """What a pre-seed read: per (changelog topic, partition), the records applied and
    the offset the store now keeps (the offset Faust's recovery starts from)."""

    records: dict[tuple[str, int], int] = field(default_factory=dict)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    seconds: float = 0.0

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


def run(stores: Mapping[str, RocksDBStore], partitions: int,
        consumer_options: dict[str, Any]) -> Preseeded:
    """Pre-seed `stores` (changelog topic -> store, `partitions` each) from the broker,
    on an event loop of its own (Faust later sets up its own), and say what was read."""
    loop = asyncio.new_event_loop()
    try:
        done = loop.run_until_complete(preseed(stores, partitions, consumer_options))
    finally:
        loop.close()
    log.warning("table stores pre-seeded from their changelogs: %d records in %.1f s; "
                "Faust's recovery starts after them", done.total, done.seconds)
    return done


async def preseed(stores: Mapping[str, RocksDBStore], partitions: int,
                  consumer_options: dict[str, Any]) -> Preseeded:
    """Bring every partition database of `stores` to its changelog's end."""
    began = time.perf_counter()
    done = Preseeded()
    dbs: dict[TopicPartition, tuple[rocksdict.Rdict, bytes]] = {}
    faust_options = {topic: {
        "write_buffer_size": str(store.rocksdb_options.write_buffer_size),
        "compression": FAUST_COMPRESSION} for topic, store in stores.items()}
    try:
        for topic, store in stores.items():
            for partition in range(partitions):
                path = Path(store.partition_path(partition))
                path.parent.mkdir(parents=True, exist_ok=True)
                dbs[TopicPartition(topic, partition)] = (_open(store, path), store.offset_key)
        if dbs:
            await _read(dbs, consumer_options, done)
    finally:
        for tp, (db, _) in dbs.items():
            # RocksDB keeps a database's memtable size and compression from its first
            # opening and Faust's later one does not change them: back to Faust's.
            db.set_options(faust_options[tp.topic])
            db.flush()  # the writes skipped the write-ahead log
            db.close()  # Faust opens each again (RocksDB allows one opener)
    done.seconds = time.perf_counter() - began
    return done


async def _read(dbs: Mapping[TopicPartition, tuple[rocksdict.Rdict, bytes]],
                consumer_options: dict[str, Any], done: Preseeded) -> None:
    consumer = AIOKafkaConsumer(
        enable_auto_commit=False, group_id=None, fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        # A kept offset before the log's start (compacted away): from the start.
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=PARTITION_FETCH_BYTES, fetch_max_bytes=FETCH_BYTES,
        **consumer_options)
    await consumer.start()
    try:
        consumer.assign(list(dbs))
        for tp, (db, offset_key) in dbs.items():
            kept = db.get(offset_key)
            done.offsets[tp.topic, tp.partition] = -1 if kept is None else int(kept)
            if kept is None:
                consumer.seek(tp, 0)
            else:
                consumer.seek(tp, int(kept) + 1)
        # The end of a partition is the high watermark its fetch responses carry, not
        # ListOffsets(latest), which the embedded broker answers wrongly
        # (`embedded.log_end`). Records written meanwhile are Faust's recovery's.
        todo = set(dbs)
        while todo:
            batch = await consumer.getmany(*todo, timeout_ms=100,
                                         max_records=BATCH_RECORDS)
            for tp, messages in batch.items():
                _apply(dbs[tp], messages)
                key = tp.topic, tp.partition
                done.records[key] = done.records.get(key, 0) + len(messages)
                done.offsets[key] = messages[-1].offset
            finished = {tp for tp in todo if (high := consumer.highwater(tp)) is not None
                        and await consumer.position(tp) >= high}
            if finished:
                consumer.pause(*finished)
                todo -= finished
    finally:
        await consumer.stop()


def _open(store: RocksDBStore, path: Path) -> rocksdict.Rdict:
    """A partition database opened as Faust's store opens it (`RocksDBOptions.open`),
    but for a bulk write: with the worker's 4 MiB memtables (`TABLE_OPTIONS`) RocksDB
    stalled each write on flushes, and compressing what it flushes took about as much CPU
    as all the rest (RocksDB's flush threads, the ~5 kB JSON case records). Only for a
    database created here: an existing one keeps the options it was created with. Faust's
    are set back before it is closed (`preseed`); Faust's compactions compress these
    files as they move them down the levels."""
    options = copy.copy(store.rocksdb_options)
    options.write_buffer_size = BULK_WRITE_BUFFER
    opening = options.as_options()
    opening.set_compression_type(rocksdict.DBCompressionType.none())
    access = (rocksdict.AccessType.read_write() if options.ttl is None
              else rocksdict.AccessType.with_ttl(options.ttl))
    db = rocksdict.Rdict(str(path), options=opening, access_type=access)
    db.set_read_options(rocksdict.ReadOptions())
    return db


def _apply(target: tuple[rocksdict.Rdict, bytes], messages: list[Any]) -> None:
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
