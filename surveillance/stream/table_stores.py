"""Writing and reading the worker's table stores directly, as its batches need.

The worker applies a batch's table changes to the stores itself (`stream.staging`):
Faust's `table[key] = value` would send each changelog record through Faust's producer,
one message at a time. Faust 0.15's RocksDB store files a key under the current event's
partition and fails without one (a timer's changes, the regulatory clocks, have none),
and a batch's change need not be on the partition of an event, so a change goes into
the database of its own changelog partition, where recovery puts it too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import rocksdict
from faust.stores.rocksdb import Store as RocksDBStore

_DECODE_KEY = msgspec.json.Decoder(str).decode  # a table key as Faust stores it (JSON)


def write_change(store: Any, key: str, value: Any, partition: int) -> None:
    """`value` under `key` in the store (None: the key deleted)."""
    if isinstance(store, RocksDBStore):
        _store_on(store, key, value, partition)
    elif value is not None:
        store[key] = value
    elif key in store:
        del store[key]


def _store_on(store: RocksDBStore, key: str, value: Any, partition: int) -> None:
    raw = store._encode_key(key)
    if value is None:
        store._del(raw)  # from every partition's database it may be in
        return
    store._db_for_partition(partition).put(raw, store._encode_value(value))
    store._key_index[raw] = partition


def raw_items(store: Any) -> Iterator[tuple[str, bytes]]:
    """(key, value as stored: JSON bytes) of a serialized store, without Faust decoding
    each value (~20 us a case record against ~1.3 for `horizon.light_record`). A
    rocksdict store's databases are read as Faust's `_iteritems` reads them, but with
    `scan_options` (`benchmarks/store_scan.py`)."""
    if not isinstance(store, RocksDBStore) or not store.use_rocksdict:
        return ((_DECODE_KEY(k), v) for k, v in store._iteritems())
    return ((_DECODE_KEY(k), v) for db in store._dbs_for_actives()
            for k, v in db.items(read_opt=scan_options()) if k != store.offset_key)


def scan_options() -> rocksdict.ReadOptions:
    """A whole database read once: its blocks read ahead (4 MiB) and not kept in the block
    cache (which serves the worker's lookups). Checksums are still verified."""
    options = rocksdict.ReadOptions()
    options.fill_cache(False)  # type: ignore[call-arg]  # its stub lacks the argument
    options.set_readahead_size(4 << 20)
    return options
