"""The pre-seed spread over several processes (`stream.preseed_processes`) leaves each
store entry for entry as the pre-seed in one process does, and as Faust's own
`apply_changelog_batch` of the same changelog (the oracle); a process killed while it
writes a file leaves nothing that is trusted.

A real broker and Faust's real RocksDB stores: keys written many times, tombstones (also
of keys Faust had written before the pre-seed), an empty partition, a partition Faust
already wrote part of through the handle the pre-seed then uses, and runs small enough
that a partition is written in several files. The kills are real SIGKILLs, in a
pre-seed process (through a `sitecustomize` on the processes' path that makes their
third file stop half-way) and of the process that started them.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from surveillance.bulk import changelog
from surveillance.embedded import EmbeddedBroker
from surveillance.stream import preseed_processes, sst_runs, store_preseed
from tests.test_sst_preseed import _faust_puts
from tests.test_store_preseed import (
    OFFSET,
    PARTITIONS,
    TABLES,
    _close,
    _contents,
    _faust_applies,
    _fold,
    _records,
    _send,
    _stores,
    topics,  # noqa: F401  (a fixture)
)
from tests.topic_read import read_records

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parent.parent

#: Loaded by every Python process started with its directory on PYTHONPATH: in a
#: pre-seed process (the only one writing files when there are several), the third
#: file is written half-way, then the process is SIGKILLed (itself, or with `KILL=parent`
#: the process that started it first, which the kernel then follows with this one).
_SITECUSTOMIZE = """
import os, signal
if os.environ.get("PRESEED_KILL"):
    import rocksdict
    from surveillance.stream import sst_runs
    written = []
    def half_then_kill(options, path, offset_key, run, empty):
        written.append(path)
        if len(written) < 3:
            return WRITE(options, path, offset_key, run, empty)
        writer = rocksdict.SstFileWriter(options)
        writer.open(str(path))
        for key in sorted(run.values)[: len(run.values) // 2]:
            if run.values[key] is not None:
                writer[key] = run.values[key]
        if os.environ["PRESEED_KILL"] == "parent":
            os.kill(os.getppid(), signal.SIGKILL)
            import time
            time.sleep(30)  # the kernel kills this process with its parent
        os.kill(os.getpid(), signal.SIGKILL)
    WRITE = sst_runs.write_file
    sst_runs.write_file = half_then_kill
"""

#: A pre-seed in 2 processes of every partition, in a process of its own (argv: app id,
#: data dir, bootstrap), small runs and batches so that each partition has several files.
_PRESEED_IN_2 = """
import asyncio, sys
from pathlib import Path
from surveillance.stream import sst_runs, store_preseed
from tests.test_store_preseed import PARTITIONS, _stores
store_preseed.BATCH_RECORDS = 10
store_preseed.HAND_OVER_RECORDS = 0
sst_runs.RUN_BYTES = 60_000
stores = _stores(sys.argv[1], Path(sys.argv[2]))
asyncio.run(store_preseed.preseed(
    stores, [(t, p) for t in stores for p in range(PARTITIONS)],
    {"bootstrap_servers": sys.argv[3]}, processes=2))
"""


def _preseed(bootstrap: str, stores: dict[str, Any], processes: int
             ) -> store_preseed.Preseeded:
    try:
        return asyncio.run(store_preseed.preseed(
            stores, [(t, p) for t in stores for p in range(PARTITIONS)],
            {"bootstrap_servers": bootstrap}, processes=processes))
    finally:
        _close(stores)


def _scratch(datadir: Path) -> list[Path]:
    return list(datadir.rglob("*.preseed.sst*"))


def test_deal_spreads_each_topic_over_the_processes() -> None:
    tps = [preseed_processes.TopicPartition(t, p) for t in ("a", "b") for p in range(4)]
    groups = preseed_processes.deal(list(reversed(tps)), 2)
    assert [[(tp.topic, tp.partition) for tp in g] for g in groups] == [
        [("a", 0), ("a", 2), ("b", 0), ("b", 2)], [("a", 1), ("a", 3), ("b", 1), ("b", 3)]]
    assert len(preseed_processes.deal(tps[:3], 8)) == 3
    assert preseed_processes.deal(tps, 1) == [sorted(tps)]


def test_stores_preseeded_by_several_processes_equal_those_of_one(
        topics: tuple[EmbeddedBroker, str], tmp_path: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    broker, app_id = topics
    rng = random.Random(21)
    # Partition 0 of the case table stays empty; Faust writes part of partition 2 of
    # both tables first (puts, through the handle the pre-seed then uses).
    early = {t: [r for r in _records(rng, 200) if t == "join_state" or r[0] != 0]
             for t in TABLES}
    for table, records in early.items():
        _send(broker.bootstrap, changelog.topic(app_id, table), records)
    written = [r for r in read_records(broker.bootstrap,
                                       [changelog.topic(app_id, t) for t in TABLES])
               if r.partition == 2]
    seeded = {n: _stores(app_id, tmp_path / f"seeded-{n}") for n in (1, 2, 3)}
    for stores in seeded.values():
        for topic, store in stores.items():
            _faust_puts(store, [r for r in written if r.topic == topic])
    for table in TABLES:
        _send(broker.bootstrap, changelog.topic(app_id, table),
              [r for r in _records(rng, 400) if table == "join_state" or r[0] != 0])
    monkeypatch.setattr(store_preseed, "BATCH_RECORDS", 20)
    monkeypatch.setattr(sst_runs, "RUN_BYTES", 60_000)  # several files a partition
    monkeypatch.setattr(store_preseed, "HAND_OVER_RECORDS", 0)  # processes for any

    done = {n: _preseed(broker.bootstrap, stores, n) for n, stores in seeded.items()}
    assert done[1].processes == 0 and done[2].processes == 2 and done[3].processes == 3
    assert done[1].records == done[2].records == done[3].records
    assert done[1].offsets == done[2].offsets == done[3].offsets
    assert done[2].cpu > 0 and done[2].process_peak_rss > 0
    contents = {n: _contents(_stores(app_id, tmp_path / f"seeded-{n}")) for n in seeded}
    assert contents[2] == contents[1] and contents[3] == contents[1]
    oracle = _stores(app_id, tmp_path / "faust")
    _faust_applies(broker.bootstrap, oracle)
    assert contents[2] == _contents(oracle)
    case_topic = changelog.topic(app_id, "case_state")
    assert contents[2][case_topic, 0] == {}  # empty: no offset either
    records = read_records(broker.bootstrap, [changelog.topic(app_id, t) for t in TABLES])
    mid = max(r.offset for r in written if r.topic == case_topic)
    # Keys Faust had written, deleted by the pre-seed's files; keys written many times.
    assert set(_fold(records, (case_topic, 2), mid)) - set(contents[2][case_topic, 2])
    assert any(r.value is None for r in records if r.offset > mid and r.partition == 2)
    assert not any(_scratch(tmp_path / f"seeded-{n}") for n in seeded)

    # A tail (a restart's) below the hand-over is read here, without processes.
    for table in TABLES:
        _send(broker.bootstrap, changelog.topic(app_id, table), _records(rng, 30))
    monkeypatch.setattr(store_preseed, "HAND_OVER_RECORDS", 1_000)
    tail = _preseed(broker.bootstrap, _stores(app_id, tmp_path / "seeded-2"), 2)
    assert tail.processes == 0 and tail.total == 60
    oracle = _stores(app_id, tmp_path / "faust-all")
    _faust_applies(broker.bootstrap, oracle)
    assert _contents(_stores(app_id, tmp_path / "seeded-2")) == _contents(oracle)


def _hook(tmp_path: Path, kill: str) -> dict[str, str]:
    hook = tmp_path / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    return {**os.environ, "PRESEED_KILL": kill,
            "PYTHONPATH": os.pathsep.join([str(hook), str(ROOT)])}


def _held_as_of_their_offsets(broker: EmbeddedBroker, app_id: str, datadir: Path) -> None:
    """Each partition holds the fold of its changelog up to the offset it keeps, and
    some partition is not at its end."""
    records = read_records(broker.bootstrap, [changelog.topic(app_id, t) for t in TABLES])
    left = _contents(_stores(app_id, datadir))
    kept = {tp: int(c[OFFSET]) for tp, c in left.items() if OFFSET in c}
    assert any(kept.get(tp, -1) < max(r.offset for r in records if (r.topic, r.partition)
                                      == tp) for tp in left)
    for tp, contents in left.items():
        assert contents == _fold(records, tp, kept.get(tp, -1)), tp


def _finished_again(broker: EmbeddedBroker, app_id: str, tmp_path: Path) -> None:
    """A new pre-seed on what was left goes on and ends where Faust's recovery does."""
    _preseed(broker.bootstrap, _stores(app_id, tmp_path / "seeded"), 2)
    assert not _scratch(tmp_path / "seeded")
    oracle = _stores(app_id, tmp_path / "faust")
    _faust_applies(broker.bootstrap, oracle)
    assert _contents(_stores(app_id, tmp_path / "seeded")) == _contents(oracle)


def test_a_preseed_process_killed_mid_file_fails_the_preseed_and_its_file_is_not_used(
        topics: tuple[EmbeddedBroker, str], tmp_path: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    broker, app_id = topics
    rng = random.Random(22)
    for table in TABLES:
        _send(broker.bootstrap, changelog.topic(app_id, table), _records(rng, 400))
    # The pre-seed processes start with this process's environment: the hook kills one
    # of them half-way through its third file.
    for key, value in _hook(tmp_path, "self").items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(store_preseed, "BATCH_RECORDS", 10)
    monkeypatch.setattr(sst_runs, "RUN_BYTES", 60_000)
    monkeypatch.setattr(store_preseed, "HAND_OVER_RECORDS", 0)
    with pytest.raises(preseed_processes.PreseedProcessError, match="exit code -9"):
        _preseed(broker.bootstrap, _stores(app_id, tmp_path / "seeded"), 2)
    assert not _scratch(tmp_path / "seeded")  # the half-written file is gone, unused
    _held_as_of_their_offsets(broker, app_id, tmp_path / "seeded")
    monkeypatch.delenv("PRESEED_KILL")
    _finished_again(broker, app_id, tmp_path)


def test_a_preseed_killed_with_its_processes_leaves_files_the_restart_does_not_trust(
        topics: tuple[EmbeddedBroker, str], tmp_path: Path) -> None:  # noqa: F811
    broker, app_id = topics
    rng = random.Random(23)
    for table in TABLES:
        _send(broker.bootstrap, changelog.topic(app_id, table), _records(rng, 400))
    # The pre-seed's process is SIGKILLed while one of its processes is half-way through
    # a file; that one dies with it (the kernel's doing: `child_process`).
    killed = subprocess.Popen(
        [sys.executable, "-c", _PRESEED_IN_2, app_id, str(tmp_path / "seeded"),
         broker.bootstrap], env=_hook(tmp_path, "parent"), cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = killed.communicate(timeout=120)
    assert killed.returncode == -signal.SIGKILL, err.decode()[-2000:]
    left = _scratch(tmp_path / "seeded")
    assert left  # the half-written file (and any finished, not yet ingested)
    deadline = time.monotonic() + 10
    while _alive_preseed_processes(killed.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive_preseed_processes(killed.pid)
    _held_as_of_their_offsets(broker, app_id, tmp_path / "seeded")
    _finished_again(broker, app_id, tmp_path)  # deletes the files left, then ingests
    assert not any(path.exists() for path in left)


def _alive_preseed_processes(parent: int) -> list[int]:
    """Pre-seed processes started by `parent` still running (not zombies)."""
    out = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if (b"surveillance.stream.preseed_processes" in cmd and str(parent).encode() in cmd
                and state != "Z"):
            out.append(int(proc.name))
    return out
