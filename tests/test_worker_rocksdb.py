"""A worker on the disk-backed table store (`SURVEILLANCE_STREAM__STORE=rocksdb://`).

What a restart on the same host saves (`benchmarks/state_bounds.py`): the worker writes
its table changes into the store itself and records, per changelog partition, the offset
the broker acknowledged (`stream.staging`); Faust's RocksDB store keeps it on disk, so a
restarted worker recovers only the changelog after it instead of all of it. Checked here
on a real worker and broker: the offsets it leaves are the changelogs' last ones, the
tables have the small caches the worker asks for (`faust_options.TABLE_OPTIONS`, not
Faust's 2 GiB per table partition), and the restarted worker counts every case again
from the store (its owned records read without their drift features,
`horizon.light_record`). A new worker on an empty state directory pre-seeds its stores
from the changelogs and counts the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition
from rocksdict import AccessType, Options, Rdict

from surveillance.bulk import changelog
from surveillance.embedded import EmbeddedBroker
from surveillance.embedded.broker import free_port
from surveillance.simulate import simulate
from surveillance.stream.faust_options import TABLE_OPTIONS
from surveillance.stream.produce import produce
from surveillance.stream.runner import WorkerProcess, wait_for_counts
from surveillance.stream.topics import TABLES, all_topics, create_topics
from tests.topic_read import read_records

pytestmark = pytest.mark.integration

PARTITIONS = 4
OFFSET_KEY = b"__faust\0offset__"  # where Faust's RocksDB store keeps a partition's offset


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(log_dir=tmp_path) as broker:
        create_topics(broker.bootstrap, all_topics("surveillance", PARTITIONS))
        yield broker


def _last_offsets(bootstrap: str) -> dict[tuple[str, int], int]:
    """The offset of the last record of each changelog partition, as read (the embedded
    broker's ListOffsets answer is not the log end: 5 for 9 records written in 3 batches)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        consumer.assign([TopicPartition(changelog.topic("surveillance", t), p)
                         for t in TABLES for p in range(PARTITIONS)])
        consumer.seek_to_beginning()
        last: dict[tuple[str, int], int] = {}
        while batch := consumer.poll(timeout_ms=2000):
            for tp, messages in batch.items():
                last[tp.topic, tp.partition] = messages[-1].offset
        return last
    finally:
        consumer.close()


def _persisted(state_dir: Path) -> dict[tuple[str, int], int]:
    """(changelog topic, partition) -> the offset each table partition's store keeps."""
    out = {}
    for path in state_dir.rglob("*.db"):
        table, partition = path.name.removesuffix(".db").rsplit("-", 1)
        db = Rdict(str(path), Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            offset = db.get(OFFSET_KEY)
        finally:
            db.close()
        if offset is not None:
            out[changelog.topic("surveillance", table), int(partition)] = int(offset)
    return out


def test_a_worker_restarted_on_its_rocksdb_store_recovers_only_the_tail(
        stack: EmbeddedBroker, tmp_path: Path) -> None:
    events, truth = simulate(days=10, seed=21, volume_scale=0.3)
    expected = {tool: t.cases for tool, t in truth.items()}
    port = free_port()
    env = {"SURVEILLANCE_STREAM__STORE": "rocksdb://"}
    worker = WorkerProcess(stack.bootstrap, tmp_path, env=env, web_port=port).start()
    try:
        produce(stack.bootstrap, ((e.topic, e.key, e.value) for e in events))
        counts = wait_for_counts([worker], expected, timeout=240)
    finally:
        worker.stop()
    assert {t: c.get("cases", 0) for t, c in counts.items()} == expected
    assert _persisted(worker.state_dir) == _last_offsets(stack.bootstrap)
    options = "".join(p.read_text() for p in worker.state_dir.rglob("OPTIONS-*"))
    assert f"write_buffer_size={TABLE_OPTIONS['write_buffer_size']}" in options
    assert "write_buffer_size=67108864" not in options  # Faust's default

    # Restarted on the same store: nothing left to recover, every case counted from it.
    again = WorkerProcess(stack.bootstrap, tmp_path, env=env, web_port=port).start()
    try:
        recounted = wait_for_counts([again], expected, timeout=240, settle=1.0)
        log = again.log_tail(1_000_000)
    finally:
        again.stop()
    assert {t: c.get("cases", 0) for t, c in recounted.items()} == expected
    assert "Traceback" not in log, log[-3000:]
    # The records read back (`table_stores.raw_items`) match every tool's snapshot (their
    # digests), none replayed.
    assert "not used, rebuilding it from its case records" not in log, log[-3000:]
    assert f"tools loaded from their snapshots: {' '.join(sorted(expected))}" in log

    # A new worker with no local state: its stores pre-seeded with every changelog record
    # (`stream.store_preseed`), Faust's recovery then starts at their end; it counts what
    # the worker that processed the events live counted, outcomes too.
    records = len(read_records(stack.bootstrap, [changelog.topic("surveillance", t)
                                                 for t in TABLES]))
    cold = WorkerProcess(stack.bootstrap, tmp_path / "cold", env=env).start()
    try:
        cold_counts = wait_for_counts([cold], expected, timeout=240, settle=1.0,
                                      outcomes=counts)
        log = cold.log_tail(1_000_000)
    finally:
        cold.stop()
    assert cold_counts == counts
    assert f"pre-seeded from their changelogs: {records} records" in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    # The records read back (`table_stores.raw_items`) match every tool's snapshot (their
    # digests), none replayed.
    assert "not used, rebuilding it from its case records" not in log, log[-3000:]
    assert f"tools loaded from their snapshots: {' '.join(sorted(expected))}" in log
