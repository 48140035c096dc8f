"""A partition's changelog records put into its RocksDB database by SST file ingestion.

The pre-seed (`stream.store_preseed`) keeps, per partition, the records it has read and
not yet written as a `Run`: the last value per key (None: the key deleted, as Faust's
`Store.apply_changelog_batch` deletes it), and the offset of the last record. A run is
written, keys in bytewise order, into one SST file with the store's own options, the
offset under the store's `offset_key` as Faust's `set_persisted_offset` writes it
(`str(offset).encode()`), and the file is ingested: RocksDB links it into the database
whole, at the lowest level nothing it already holds overlaps (the bottom one, for a new
worker's empty database). Writing the same records with puts went through memtables,
flushes and compactions: a third to a half of the pre-seed's CPU. Measured at a quarter
of a 2M-exam/yr system (748,325 records, `benchmarks/state_bounds.py`, load 9-10 on 2
cores): the pre-seed 7.8 and 6.9 s of CPU against 8.8 and 9.0 with puts, the stores
~250 MiB on disk in ~one file a partition against ~870 MiB with their compactions still
to come. Smaller runs (32 MiB: several overlapping files a partition, which RocksDB
compacts) cost more than puts (10.4 and 9.3 s); uncompressed files no less (8.3, 7.9 s).

One ingestion is atomic: a pre-seed stopped anywhere (an error, a kill) leaves each
database as of the end of some run, with that run's offset. Memory: the runs of all
partitions are held to `RUN_BYTES` together; past it the largest is written. A
partition written in several runs gets several files, each later one above the earlier
(RocksDB gives an overlapping file a newer sequence number), so its deletions are
written into the file as deletions, except into the first file of a database that held
nothing (a deletion there deletes nothing).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rocksdict

#: What the runs of all partitions may hold together (key and value bytes and
#: `ENTRY_BYTES` an entry) before the largest is written.
RUN_BYTES = 128 << 20
#: Python's cost of an entry beyond its key and value bytes (two bytes objects and a
#: dictionary slot), roughly.
ENTRY_BYTES = 120

def _ingest_options() -> rocksdict.IngestExternalFileOptions:
    options = rocksdict.IngestExternalFileOptions()
    options.set_move_files(True)  # linked, not copied (a copy when it cannot link)
    # RocksDB's defaults, said: a file overlapping what the database holds gets a newer
    # sequence number than all of it (so it wins), and a memtable it overlaps is
    # flushed first; never below existing data.
    options.set_allow_global_seqno(True)
    options.set_allow_blocking_flush(True)
    options.set_ingest_behind(False)
    return options


_INGEST = _ingest_options()


@dataclass
class Partition:
    """Where a partition's runs go: its database (the handle Faust's store keeps), the
    store's offset key and options, and the path its SST file is written at (beside the
    database, on the same file system, so ingesting it is a link)."""

    db: rocksdict.Rdict
    offset_key: bytes
    options: rocksdict.Options
    scratch: Path
    #: The database holds nothing (no key, no offset): the first run's deletions are
    #: left out.
    empty: bool
    #: `store_options`: what a pre-seed process writes this partition's files with.
    file_options: dict[str, Any] = field(default_factory=dict)


def partition(store: Any, number: int) -> Partition:
    """The `Partition` of a Faust RocksDB store's partition `number` (opened if not)."""
    db = store._db_for_partition(number)  # the handle Faust's store opens and keeps
    path = Path(store.partition_path(number))
    scratch = path.with_name(f".{path.name}.preseed.sst")
    for left in scratch_files(scratch):  # ones a killed pre-seed (or its process) left
        left.unlink(missing_ok=True)
    it = db.iter()
    it.seek_to_first()
    return Partition(db, store.offset_key, store.rocksdb_options.as_options(), scratch,
                     not it.valid(), store_options(store))


def scratch_files(scratch: Path) -> list[Path]:
    """The partition's scratch SST file and those of the pre-seed's processes
    (`<scratch>.<n>`): never ingested unless a pre-seed finished writing them."""
    return [scratch, *scratch.parent.glob(f"{scratch.name}.*")]


def file_options(options: dict[str, Any]) -> rocksdict.Options:
    """Options to write a store's SST files with, in a process without Faust, from
    `store_options` (what Faust's `RocksDBOptions.as_options` makes of them for
    rocksdict: its bloom filter and index; the block cache only serves reads)."""
    out = rocksdict.Options(raw_mode=True)
    table = rocksdict.BlockBasedOptions()
    table.set_bloom_filter(options["bloom_filter_size"], block_based=True)
    table.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
    out.set_block_based_table_factory(table)
    return out


def store_options(store: Any) -> dict[str, Any]:
    """What `file_options` needs of a Faust RocksDB store's options (plain values)."""
    return {"bloom_filter_size": store.rocksdb_options.bloom_filter_size}


@dataclass
class Run:
    """Records of a partition read and not yet in its database."""

    values: dict[bytes, bytes | None] = field(default_factory=dict)
    #: The offset of the last record read (written with the run).
    offset: int = -1
    records: int = 0
    size: int = 0

    def add(self, messages: Iterable[Any]) -> None:
        """Records in offset order (`key`, `value`, `offset`): the last value a key
        gets is the one kept."""
        values, size, count, offset = self.values, self.size, 0, self.offset
        for m in messages:
            count += 1
            offset = m.offset
            key = m.key
            if key is None:  # no table writes one; Faust could not file it either
                continue
            value = m.value
            if key in values:
                old = values[key]
                if old is not None:
                    size -= len(old)
            else:
                size += len(key) + ENTRY_BYTES
            values[key] = value
            if value is not None:
                size += len(value)
        self.size, self.records, self.offset = size, self.records + count, offset


def write(target: Partition, run: Run) -> None:
    """`run` into its partition's database, with its offset, in one ingestion."""
    try:
        write_file(target.options, target.scratch, target.offset_key, run, target.empty)
        ingest(target, target.scratch)
    finally:
        target.scratch.unlink(missing_ok=True)


def write_file(options: rocksdict.Options, path: Path, offset_key: bytes, run: Run,
               empty: bool) -> None:
    """`run` and its offset (under `offset_key`) as one SST file at `path` (a file there
    is written over). `empty`: for a database holding nothing (its deletions left out)."""
    values = run.values
    values[offset_key] = str(run.offset).encode()
    writer = rocksdict.SstFileWriter(options)
    writer.open(str(path))
    if empty:
        for key in sorted(values):
            value = values[key]
            if value is not None:
                writer[key] = value
    else:
        for key in sorted(values):
            value = values[key]
            if value is None:
                del writer[key]
            else:
                writer[key] = value
    writer.finish()


def ingest(target: Partition, path: Path) -> None:
    """A finished SST file into the partition's database, at once (it then holds data)."""
    target.db.ingest_external_file([str(path)], _INGEST)
    target.empty = False
