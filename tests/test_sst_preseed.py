"""A store pre-seeded by SST file ingestion (`stream.sst_runs`) holds, entry for entry,
what Faust's puts (`Store.apply_changelog_batch`) write from the same changelog.

A real broker and Faust's real RocksDB stores (rocksdict): keys written many times,
tombstones (also of keys Faust had written before the pre-seed), an empty partition, a
partition Faust already wrote part of through the handle the pre-seed then uses (its
offset kept, its memtable not flushed), and runs small enough that a partition is
written in several SST files.
"""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP

from surveillance.bulk import changelog
from surveillance.embedded import EmbeddedBroker
from surveillance.stream import sst_runs, store_preseed
from tests.test_store_preseed import (
    OFFSET,
    PARTITIONS,
    _close,
    _contents,
    _faust_applies,
    _fold,
    _preseed,
    _send,
    _stores,
    topics,  # noqa: F401  (a fixture)
)
from tests.topic_read import read_records

pytestmark = pytest.mark.integration

assert PARTITIONS == 3  # partition 0 stays empty, 1 is new, 2 is partly in the store


def _records(rng: random.Random, keys: list[bytes], n: int, partition: int
             ) -> list[tuple[int, bytes, bytes | None]]:
    out: list[tuple[int, bytes, bytes | None]] = []
    for _ in range(n):
        roll = rng.random()
        value: bytes | None
        if roll < 0.25:
            value = None
        elif roll < 0.4:
            value = b'{"big":"' + b"y" * rng.randrange(1_000, 30_000) + b'"}'
        else:
            value = changelog.encode("", {"n": rng.random()})[1]
        out.append((partition, rng.choice(keys), value))
    return out


def _faust_puts(store: Any, records: list[Any]) -> None:
    """`records` written by Faust's own `apply_changelog_batch`, in batches of 9."""
    for start in range(0, len(records), 9):
        store.apply_changelog_batch(
            [SimpleNamespace(message=SimpleNamespace(
                tp=TP(r.topic, r.partition), partition=r.partition, offset=r.offset,
                key=r.key, value=r.value)) for r in records[start:start + 9]],
            to_key=None, to_value=None)


def test_an_ingested_store_equals_one_written_by_puts(
        topics: tuple[EmbeddedBroker, str], tmp_path: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    broker, app_id = topics
    topic = changelog.topic(app_id, "case_state")
    rng = random.Random(3)
    keys = [changelog.encode(f"ACC-{i}:{'é' * (i % 3)}", None)[0] for i in range(40)]
    _send(broker.bootstrap, topic, _records(rng, keys, 150, 2))

    # Faust writes partition 2's first 150 records (puts, the handle left open) ...
    seeded = _stores(app_id, tmp_path / "seeded")
    early = read_records(broker.bootstrap, [topic])
    _faust_puts(seeded[topic], early)
    # ... then more come, and the pre-seed runs through the same handles.
    _send(broker.bootstrap, topic, _records(rng, keys, 300, 1) + _records(rng, keys, 150, 2))
    monkeypatch.setattr(store_preseed, "BATCH_RECORDS", 20)
    monkeypatch.setattr(sst_runs, "RUN_BYTES", 60_000)
    applied = sst_runs.write
    runs: dict[Path, int] = {}

    def counting(target: sst_runs.Partition, run: sst_runs.Run) -> None:
        runs[target.scratch] = runs.get(target.scratch, 0) + 1
        applied(target, run)

    monkeypatch.setattr(sst_runs, "write", counting)
    done = _preseed(broker.bootstrap, seeded)

    records = read_records(broker.bootstrap, [topic])
    last = {p: max(r.offset for r in records if r.partition == p) for p in (1, 2)}
    assert done.records == {(topic, 1): 300, (topic, 2): 150}  # 2: after Faust's offset
    assert done.offsets[topic, 0] == -1
    assert done.offsets[topic, 1] == last[1] and done.offsets[topic, 2] == last[2]
    assert len(runs) == 2 and min(runs.values()) >= 2  # several files a partition

    oracle = _stores(app_id, tmp_path / "faust")
    _faust_applies(broker.bootstrap, oracle)
    want = _contents(oracle)
    got = _contents(_stores(app_id, tmp_path / "seeded"))
    assert got == want
    assert got[topic, 0] == {} and OFFSET not in got[topic, 0]
    assert got[topic, 2][OFFSET] == str(last[2]).encode()
    # Keys Faust had written before the pre-seed, deleted in it, and keys written again
    # after a deletion: the cases the ingested files' deletions and order decide.
    mid = max(r.offset for r in early)
    assert set(_fold(records, (topic, 2), mid)) - set(want[topic, 2])
    later = [r for r in records if r.partition == 2 and r.offset > mid]
    assert any(r.value is None for r in later)
    assert any(len([r for r in records if r.partition == 1 and r.key == key]) > 3
               for key in keys)
    _close(oracle)
