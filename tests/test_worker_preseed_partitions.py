"""Two workers with no local state share the tables: each pre-seeds only its partitions.

`stream.preseed_recovery`: a worker pre-seeds the RocksDB table partitions Faust assigned
it, not every partition. On a real broker with real workers (`rocksdb://`, no standby
replicas, so each table partition belongs to one worker): the changelogs hold a
10-day state written as a worker leaves it; worker A starts alone (it is given every
partition and pre-seeds all of them), then worker B joins. B pre-seeds exactly the
partitions it was given (the only ones on its disk), every record of those once and none
of A's; A reads nothing again; the two together count every case once.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from surveillance.bulk import changelog
from surveillance.embedded import EmbeddedBroker
from surveillance.engine.config import EngineConfig
from surveillance.engine.horizon import is_summary
from surveillance.engine.local import LocalPipeline
from surveillance.engine.pipeline import ADVERSE_TABLE, CASE_TABLE, JOIN_TABLE, SNAPSHOT_TABLE
from surveillance.simulate import simulate
from surveillance.stream.ingest import join_partition
from surveillance.stream.runner import WorkerProcess, wait_for_counts
from surveillance.stream.topics import all_topics, create_topics
from tests.topic_read import read_records

pytestmark = pytest.mark.integration

PARTITIONS = 4
ENV = {"SURVEILLANCE_STREAM__STORE": "rocksdb://",
       "SURVEILLANCE_STREAM__STANDBY_REPLICAS": "0"}
SEEDED = re.compile(r"pre-seeded from their changelogs: (\d+) records in [\d.]+ s "
                    r"\((\w+) partitions ([^)]*)\)")


def _write_state(bootstrap: str) -> tuple[dict[str, int], Counter[tuple[str, int]]]:
    """The tables of 10 simulated days (the engine in process) written to their
    changelogs as a worker writes them: (cases per tool, records per changelog
    partition)."""
    events, truth = simulate(days=10, seed=21, volume_scale=0.3)
    path = LocalPipeline(EngineConfig.plain(PARTITIONS, snapshots=False))
    for event in events:
        path.feed(event)
    counted = Counter(key.rsplit(":", 1)[1] for key in path.tables[CASE_TABLE]
                      if not is_summary(key))
    expected = {tool: t.cases for tool, t in truth.items()}
    assert dict(counted) == {t: n for t, n in expected.items() if n}  # nothing evicted

    def partition(table: str, key: str, value: Any) -> int:
        return join_partition(key, PARTITIONS) if table == JOIN_TABLE else value["partition"]

    written: Counter[tuple[str, int]] = Counter()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        for table in (JOIN_TABLE, CASE_TABLE, ADVERSE_TABLE):
            topic = changelog.topic("surveillance", table)
            for key, value in path.tables[table].items():
                p = partition(table, key, value)
                k, v = changelog.encode(key, value)
                producer.send(topic, key=k, value=v, partition=p)
                written[topic, p] += 1
        producer.flush()
    finally:
        producer.close()
    return expected, written


def _seeded(worker: WorkerProcess) -> list[tuple[int, set[tuple[str, int]]]]:
    """Each pre-seed the worker logged: (records read, its (topic, partition)s)."""
    out = []
    for n, _title, names in SEEDED.findall(worker.log_path.read_text(errors="replace")):
        tps = {(t, int(p)) for t, p in (name.rsplit(":", 1) for name in names.split())}
        out.append((int(n), tps))
    return out


def _on_disk(worker: WorkerProcess) -> set[tuple[str, int]]:
    """(changelog topic, partition) of every table partition database on its disk."""
    out = set()
    for path in worker.state_dir.rglob("*.db"):
        table, partition = path.name.removesuffix(".db").rsplit("-", 1)
        out.add((changelog.topic("surveillance", table), int(partition)))
    return out


def test_each_new_worker_preseeds_only_the_partitions_it_is_assigned(
        tmp_path: Path) -> None:
    with EmbeddedBroker(log_dir=tmp_path) as broker:
        create_topics(broker.bootstrap, all_topics("surveillance", PARTITIONS))
        expected, written = _write_state(broker.bootstrap)
        everything = sum(written.values())
        first = WorkerProcess(broker.bootstrap, tmp_path / "a", env=ENV).start()
        second = WorkerProcess(broker.bootstrap, tmp_path / "b", env=ENV)
        try:
            alone = wait_for_counts([first], expected, timeout=240, settle=1.0)
            assert {t: c.get("cases", 0) for t, c in alone.items()} == expected
            second.start()
            both = wait_for_counts([first, second], expected, timeout=240, settle=1.0)
        finally:
            second.stop()
            first.stop()
        # What the changelogs hold at the end: the state written above, and what the
        # workers wrote (A writes its tools' pending snapshots when B's joining revokes
        # its partitions, `stream.app._snapshots_at_stop`, so B's pre-seed may find them).
        topics = [changelog.topic("surveillance", t)
                  for t in (JOIN_TABLE, CASE_TABLE, ADVERSE_TABLE, SNAPSHOT_TABLE)]
        on_log = Counter((r.topic, r.partition) for r in read_records(broker.bootstrap, topics))
        assert {t: c.get("cases", 0) for t, c in both.items()} == expected
        for worker in (first, second):
            assert "Traceback" not in worker.log_tail(1_000_000), worker.log_tail()

    # A, alone at first, was given every partition and read every record once; after B
    # joined it read nothing again (its partitions were already at their ends).
    a_seeds = _seeded(first)
    assert a_seeds[0][0] == everything, a_seeds
    assert set(written) <= a_seeds[0][1] == _on_disk(first)
    assert {p for _, p in a_seeds[0][1]} == set(range(PARTITIONS))
    assert all(n == 0 for n, _ in a_seeds[1:]), a_seeds
    # B read only what it was given: the partitions on its disk, a proper part of each
    # table's (the same numbers in every table: Faust co-partitions them), each
    # record of those once.
    b_seeds = _seeded(second)
    mine = set().union(*(tps for _, tps in b_seeds))
    assert mine == _on_disk(second)
    numbers = {p for _, p in mine}
    assert 0 < len(numbers) < PARTITIONS, mine
    assert mine == {(t, p) for t, _ in _on_disk(first) for p in numbers}
    # Each record of those once: at least every record the state put there, at most what
    # the logs of its partitions held at the end.
    seeded = sum(n for n, _ in b_seeds)
    assert sum(written[tp] for tp in mine if tp in written) <= seeded, (seeded, written)
    assert seeded <= sum(on_log[tp] for tp in mine), (seeded, on_log)
