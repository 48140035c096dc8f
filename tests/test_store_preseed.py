"""Pre-seeding RocksDB table stores from their changelogs (`stream.store_preseed`).

On a real broker, with Faust's real RocksDB store: the oracle is Faust's own
`Store.apply_changelog_batch` fed the same records (read with another client), and the
two stores' databases must hold the same bytes, the persisted offset among them. Also a
pre-seed stopped between two ingestions and run again, one killed (SIGKILL), one run
again after more records came (it reads only those), and one on a store Faust already
wrote part of, in several SST files a partition (`stream.sst_runs`).
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.types import TP
from kafka import KafkaProducer
from rocksdict import AccessType, Options, Rdict

from surveillance.bulk import changelog
from surveillance.embedded import EmbeddedBroker
from surveillance.stream import sst_runs, store_preseed
from surveillance.stream.faust_options import TABLE_OPTIONS
from surveillance.stream.topics import TopicSpec, create_topics
from tests.topic_read import read_records

pytestmark = pytest.mark.integration

PARTITIONS = 3
TABLES = ("join_state", "case_state")
OFFSET = b"__faust\0offset__"  # where Faust's RocksDB store keeps a partition's offset


class Stopped(Exception):
    """A pre-seed interrupted."""


def _stores(app_id: str, datadir: Path) -> dict[str, Any]:
    """changelog topic -> Faust's RocksDB store, of an app that is never started."""
    app = faust.App(app_id, store="rocksdb://", datadir=str(datadir))
    return {changelog.topic(app_id, name): app.Table(
        name, partitions=PARTITIONS, options=dict(TABLE_OPTIONS)).data for name in TABLES}


def _records(rng: random.Random, n: int) -> list[tuple[int, bytes, bytes | None]]:
    """(partition, key, value): JSON keys (some not ASCII), values from empty to beyond a
    small fetch, keys written again, deleted, and written after their deletion."""
    keys = [changelog.encode(f"ACC-{i}:{'tool' if i % 3 else 'outil-é€'}", None)[0]
            for i in range(n // 4 + 1)]
    out = []
    for _ in range(n):
        key = rng.choice(keys)
        roll = rng.random()
        value: bytes | None
        if roll < 0.2:
            value = None  # a tombstone
        elif roll < 0.25:
            value = b""
        elif roll < 0.3:
            value = b'{"big":"' + b"x" * rng.randrange(20_000, 120_000) + b'"}'
        else:
            value = changelog.encode("", {"n": rng.random(), "s": "\u00e9\u0000\n"})[1]
        out.append((zlib.crc32(key) % PARTITIONS, key, value))
    return out


def _send(bootstrap: str, topic: str, records: list[tuple[int, bytes, bytes | None]]
          ) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                             max_request_size=1 << 20)
    try:
        for partition, key, value in records:
            producer.send(topic, key=key, value=value, partition=partition)
        producer.flush()
    finally:
        producer.close()


def _faust_applies(bootstrap: str, stores: dict[str, Any]) -> None:
    """The oracle: every changelog record, as read by kafka-python, given to Faust's own
    `apply_changelog_batch` (it reads only `event.message`), in batches of 7."""
    records = read_records(bootstrap, stores)
    for topic, store in stores.items():
        mine = [r for r in records if r.topic == topic]
        for start in range(0, len(mine), 7):
            store.apply_changelog_batch(
                [SimpleNamespace(message=SimpleNamespace(
                    tp=TP(r.topic, r.partition), partition=r.partition, offset=r.offset,
                    key=r.key, value=r.value)) for r in mine[start:start + 7]],
                to_key=None, to_value=None)
    _close(stores)


def _contents(stores: dict[str, Any]) -> dict[tuple[str, int], dict[bytes, bytes]]:
    out = {}
    for topic, store in stores.items():
        for partition in range(PARTITIONS):
            path = store.partition_path(partition)
            if not Path(path).exists():
                out[topic, partition] = {}
                continue
            db = Rdict(str(path), Options(raw_mode=True), access_type=AccessType.read_only())
            try:
                out[topic, partition] = dict(db.items())
            finally:
                db.close()
    return out


def _column_options(stores: dict[str, Any]) -> list[list[str]]:
    """Per partition database, its memtable size, compression and automatic compactions
    as RocksDB keeps them for the next opening (its latest OPTIONS file): Faust's opening
    does not change them. The pre-seed sets the first two for its writes only."""
    out = []
    for store in stores.values():
        for partition in range(PARTITIONS):
            latest = max(Path(store.partition_path(partition)).glob("OPTIONS-*"))
            out.append([line.strip() for line in latest.read_text().splitlines()
                        if line.strip().startswith(("write_buffer_size=", "compression=",
                                                    "disable_auto_compactions="))])
    return out


@pytest.fixture
def topics(tmp_path: Path) -> Iterator[tuple[EmbeddedBroker, str]]:
    app_id = f"preseed-{uuid.uuid4().hex[:8]}"
    with EmbeddedBroker(log_dir=tmp_path / "broker") as broker:
        create_topics(broker.bootstrap, [TopicSpec(changelog.topic(app_id, t), PARTITIONS)
                                         for t in TABLES])
        yield broker, app_id


def _preseed(bootstrap: str, stores: dict[str, Any]) -> store_preseed.Preseeded:
    """Every partition pre-seeded through the stores' own handles (as in a worker's
    recovery), which are then closed (the next check opens the databases)."""
    try:
        return asyncio.run(store_preseed.preseed(
            stores, [(t, p) for t in stores for p in range(PARTITIONS)],
            {"bootstrap_servers": bootstrap}))
    finally:
        _close(stores)


def _close(stores: dict[str, Any]) -> None:
    for store in stores.values():
        for db in store._dbs.values():
            db.close()
        store._dbs.clear()


def test_a_preseeded_store_holds_the_bytes_faust_recovery_would_write(
        topics: tuple[EmbeddedBroker, str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    broker, app_id = topics
    rng = random.Random(5)
    first = {t: _records(rng, 300) for t in TABLES}
    for table, records in first.items():
        _send(broker.bootstrap, changelog.topic(app_id, table), records)

    # Stopped after its 5th ingestion, with small runs: some partitions done, one
    # halfway, some not begun.
    monkeypatch.setattr(store_preseed, "BATCH_RECORDS", 50)
    monkeypatch.setattr(sst_runs, "RUN_BYTES", 100_000)
    applied = sst_runs.write
    calls = 0

    def stopping(target: Any, run: Any) -> None:
        nonlocal calls
        calls += 1
        if calls > 5:
            raise Stopped
        applied(target, run)

    seeded = _stores(app_id, tmp_path / "seeded")
    monkeypatch.setattr(sst_runs, "write", stopping)
    with pytest.raises(Stopped):
        _preseed(broker.bootstrap, seeded)
    monkeypatch.setattr(sst_runs, "write", applied)
    halfway = _contents(seeded)
    assert sum(len(c) for c in halfway.values()) > 0

    again = _preseed(broker.bootstrap, _stores(app_id, tmp_path / "seeded"))
    assert 0 < again.total < 600  # on from where it stopped
    oracle = _stores(app_id, tmp_path / "faust")
    _faust_applies(broker.bootstrap, oracle)
    want = _contents(oracle)
    assert _contents(seeded) == want
    assert any(OFFSET in c for c in want.values())
    assert _column_options(seeded) == _column_options(oracle)  # Faust's, as they were
    assert ["compression=kSnappyCompression", "write_buffer_size=4194304",
            "disable_auto_compactions=false"] in _column_options(oracle)

    # More records come: the next start reads those only, and still agrees with Faust.
    tail = {t: _records(rng, 40) for t in TABLES}
    for table, records in tail.items():
        _send(broker.bootstrap, changelog.topic(app_id, table), records)
    more = _preseed(broker.bootstrap, _stores(app_id, tmp_path / "seeded"))
    assert more.total == 80
    oracle = _stores(app_id, tmp_path / "faust-all")
    _faust_applies(broker.bootstrap, oracle)
    assert _contents(_stores(app_id, tmp_path / "seeded")) == _contents(oracle)


def test_a_store_of_empty_changelogs_stays_without_an_offset(
        topics: tuple[EmbeddedBroker, str], tmp_path: Path) -> None:
    broker, app_id = topics
    stores = _stores(app_id, tmp_path / "seeded")
    done = _preseed(broker.bootstrap, stores)
    assert done.total == 0
    assert set(done.offsets.values()) == {-1}
    assert all(c == {} for c in _contents(stores).values())


_KILLED_AFTER_12_INGESTIONS = """
import os, signal, sys
from pathlib import Path
from surveillance.stream import sst_runs, store_preseed
from tests.test_store_preseed import _stores
store_preseed.BATCH_RECORDS = 10
sst_runs.RUN_BYTES = 60_000  # a run written every few batches
applied, calls = sst_runs.write, []
def killing(target, run):
    calls.append(1)
    if len(calls) > 12:
        os.kill(os.getpid(), signal.SIGKILL)
    applied(target, run)
sst_runs.write = killing
from tests.test_store_preseed import _preseed
_preseed(sys.argv[3], _stores(sys.argv[1], Path(sys.argv[2])))
"""


def test_a_killed_preseed_leaves_each_partition_as_of_a_batch_with_its_offset(
        topics: tuple[EmbeddedBroker, str], tmp_path: Path) -> None:
    broker, app_id = topics
    rng = random.Random(8)
    for table in TABLES:
        _send(broker.bootstrap, changelog.topic(app_id, table), _records(rng, 400))
    killed = subprocess.run([sys.executable, "-c", _KILLED_AFTER_12_INGESTIONS, app_id,
                             str(tmp_path / "seeded"), broker.bootstrap],
                            capture_output=True, cwd=Path(__file__).parent.parent)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]

    # Each partition holds the fold of its changelog up to the offset it keeps: no
    # batch's data without its offset, no offset without its data.
    records = read_records(broker.bootstrap, [changelog.topic(app_id, t) for t in TABLES])
    left = _contents(_stores(app_id, tmp_path / "seeded"))
    kept = {tp: int(c[OFFSET]) for tp, c in left.items() if OFFSET in c}
    assert kept  # some were ingested before the kill ...
    assert any(kept.get(tp, -1) < max(r.offset for r in records if (r.topic, r.partition)
                                      == tp) for tp in left)  # ... and some not to the end
    for tp, contents in left.items():
        assert contents == _fold(records, tp, kept.get(tp, -1)), tp

    _preseed(broker.bootstrap, _stores(app_id, tmp_path / "seeded"))
    oracle = _stores(app_id, tmp_path / "faust")
    _faust_applies(broker.bootstrap, oracle)
    assert _contents(_stores(app_id, tmp_path / "seeded")) == _contents(oracle)


def _fold(records: list[Any], tp: tuple[str, int], upto: int) -> dict[bytes, bytes]:
    """What a partition's database holds once its changelog is applied up to `upto`."""
    fold: dict[bytes, bytes] = {}
    for r in records:
        if (r.topic, r.partition) == tp and r.offset <= upto:
            if r.value is None:
                fold.pop(r.key, None)
            else:
                fold[r.key] = r.value
    if upto >= 0:
        fold[OFFSET] = str(upto).encode()
    return fold


def test_a_preseed_stops_at_the_offsets_given_and_once_its_time_is_up(
        topics: tuple[EmbeddedBroker, str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker's recovery gives the active partitions' highwaters as `until` and a
    deadline (`stream.preseed_recovery`): the pre-seed stops at either, each partition
    at the end of a batch with its offset, and the next one goes on from there."""
    broker, app_id = topics
    rng = random.Random(11)
    for table in TABLES:
        _send(broker.bootstrap, changelog.topic(app_id, table), _records(rng, 300))
    records = read_records(broker.bootstrap, [changelog.topic(app_id, t) for t in TABLES])
    last: dict[tuple[str, int], int] = {}
    for r in records:
        last[r.topic, r.partition] = r.offset
    until = {tp: offset // 2 for tp, offset in last.items()}
    until[min(until)] = -1  # an empty log as Faust's highwater says it: nothing to read
    monkeypatch.setattr(store_preseed, "BATCH_RECORDS", 10)
    stores = _stores(app_id, tmp_path / "seeded")
    try:
        halfway = asyncio.run(store_preseed.preseed(
            stores, list(until), {"bootstrap_servers": broker.bootstrap}, until=until))
    finally:
        _close(stores)
    assert {tp: o for tp, o in halfway.offsets.items()} == until
    contents = _contents(_stores(app_id, tmp_path / "seeded"))
    for tp, upto in until.items():
        assert contents[tp] == _fold(records, tp, upto), tp

    # The time allowed is already over: one batch (10 records) at most.
    stores = _stores(app_id, tmp_path / "seeded")
    try:
        late = asyncio.run(store_preseed.preseed(
            stores, list(until), {"bootstrap_servers": broker.bootstrap},
            deadline=time.monotonic() - 1))
    finally:
        _close(stores)
    assert late.unfinished and late.total <= 10
    contents = _contents(_stores(app_id, tmp_path / "seeded"))
    for tp in until:
        assert contents[tp] == _fold(records, tp, late.offsets[tp]), tp
        assert late.offsets[tp] >= until[tp]

    _preseed(broker.bootstrap, _stores(app_id, tmp_path / "seeded"))
    oracle = _stores(app_id, tmp_path / "faust")
    _faust_applies(broker.bootstrap, oracle)
    assert _contents(_stores(app_id, tmp_path / "seeded")) == _contents(oracle)


def test_the_table_manager_starts_as_faust_does_but_for_its_first_second() -> None:
    """`PreseedingTableManager.on_start` is Faust's `TableManager.on_start` without the
    1 s sleep it opens with (for tables declared after the app starts; this app declares
    them on import). A Faust whose `on_start` does anything else fails here, so that the
    override is looked at again rather than silently skipping the new step."""
    import ast
    import inspect
    import textwrap

    from faust.tables.manager import TableManager

    from surveillance.stream.preseed_recovery import PreseedingTableManager

    def body(method: Any) -> list[ast.stmt]:
        tree = ast.parse(textwrap.dedent(inspect.getsource(method)))
        function = tree.body[0]
        assert isinstance(function, ast.AsyncFunctionDef)
        statements = function.body
        if (statements and isinstance(statements[0], ast.Expr)
                and isinstance(statements[0].value, ast.Constant)):
            statements = statements[1:]  # the docstring
        return statements

    faust_body = body(TableManager.on_start)
    sleep = ast.dump(ast.parse("await self.sleep(1.0)").body[0])
    assert [ast.dump(s) for s in faust_body[:1]] == [sleep]
    assert ([ast.dump(s) for s in body(PreseedingTableManager.on_start)]
            == [ast.dump(s) for s in faust_body[1:]])
