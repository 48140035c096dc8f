"""A worker stopped cleanly (a deploy) and started again alerts as if it had not stopped.

Real parts: the embedded broker and `surveillance worker` processes. The case agent reads
the `cases.adjudicated` records of one uninterrupted join of a drifting simulation (the
alert scenario of `tests.test_backfill_crashes`, via `tests.test_worker_case_crash`),
produced straight to that topic (one partition), so both runs read the same records in
the same order: one worker reads them all; in the other run a worker reads the first
half, is stopped with SIGTERM, and a new worker reads the rest. The counts, the alerts
(every field) and each tool's last snapshot must be the same.

The case stage's snapshots are throttled (`EngineConfig.snapshot_seconds`): before the
worker wrote its pending snapshots at a stop (`stream.app._snapshots_at_stop`), every
tool changed in its last minute had a snapshot older than the case table, which the new
worker refused ("the case table has changed since it was written") and replayed from its
case records; a replayed monitor lacks the verdicts and episodes the stopped one held, so
other alerts were raised (`tests.test_worker_case_crash`).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from surveillance.bulk import changelog
from surveillance.embedded import EmbeddedBroker
from surveillance.engine.case_sent import is_sent_key
from surveillance.engine.pipeline import CASE_SNAPSHOTS
from surveillance.engine.records import Record
from surveillance.engine.snapshots import is_part
from surveillance.stream.runner import WorkerProcess, wait_for_counts
from surveillance.stream.topics import ALERTS, CASES_ADJUDICATED, all_topics, create_topics
from tests.test_worker_case_crash import CaseWorker, _cases
from tests.test_worker_crash_order import TABLES, LogOutbox
from tests.topic_read import read_records

pytestmark = pytest.mark.integration

APP = "surveillance"
#: One partition everywhere: the case records' join sources are partition 0 of 1.
ENV = {"SURVEILLANCE_KAFKA__PARTITIONS": "1", "PYTHONHASHSEED": "0"}
#: What a snapshot holds of the state (not when it was written: its offset and clock).
STATE = ("format", "code", "tool", "digest", "evaluated", "parts", "sha256")


@pytest.fixture(scope="module")
def cases() -> tuple[list[Record], dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """The case records, and the counts a worker shows after the first half and after all
    (the ledger of the case stage run in process over them)."""
    config, records, now = _cases()
    half = len(records) // 2
    worker = CaseWorker(config, {n: {} for n in TABLES}, LogOutbox([]))
    asyncio.run(worker.read(records[:half], now))
    first = {t: dict(c) for t, c in worker.engine.cases.ledger.per_tool().items()}
    asyncio.run(worker.read(records[half:], now))
    whole = {t: dict(c) for t, c in worker.engine.cases.ledger.per_tool().items()}
    return records, first, whole


def _send(bootstrap: str, records: list[Record]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=5,
                             max_request_size=2 * 1024 * 1024)
    try:
        for r in records:
            producer.send(CASES_ADJUDICATED, r.value, r.key, headers=list(r.headers))
        producer.flush()
    finally:
        producer.close()


def _read(worker: WorkerProcess, counts: dict[str, dict[str, int]]) -> None:
    """Wait until `worker` shows `counts` (every outcome), then some more."""
    got = wait_for_counts([worker], {t: c["cases"] for t, c in counts.items()}, timeout=600,
                          outcomes=counts)
    assert got == counts, worker.log_tail()


def _run(tmp_path: Path, records: list[Record], counts: list[dict[str, dict[str, int]]]
         ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]], str]:
    """The records read by one worker per part (`counts`: what each shows at its part's
    end), each stopped with SIGTERM: the alerts by id, each tool's last snapshot, and the
    workers' logs."""
    logs = []
    with EmbeddedBroker(log_dir=tmp_path) as broker:
        create_topics(broker.bootstrap, all_topics(APP, 1))
        parts = [records[:len(records) // 2], records[len(records) // 2:]]
        if len(counts) == 1:
            parts = [records]
        for part, expected in zip(parts, counts, strict=True):
            worker = WorkerProcess(broker.bootstrap, tmp_path, env=ENV).start()
            try:
                _send(broker.bootstrap, part)
                _read(worker, expected)
            finally:
                worker.stop(timeout=120)
                logs.append(worker.log_tail(1_000_000))
        alerts: dict[str, dict[str, Any]] = {}
        for r in read_records(broker.bootstrap, [ALERTS]):
            alert = json.loads(r.value)
            alerts.setdefault(alert["alert_id"], alert)
        snapshots: dict[str, Any] = {}
        changelog.apply({CASE_SNAPSHOTS: snapshots}, CASE_SNAPSHOTS, [
            (r.key, r.value) for r in read_records(
                broker.bootstrap, [changelog.topic(APP, CASE_SNAPSHOTS)])])
    # Each tool's snapshot, not its parts nor a partition's saved alerts (`~sent:<p>`).
    last = {tool: {k: saved[k] for k in STATE} for tool, saved in snapshots.items()
            if not is_part(tool) and not is_sent_key(tool)}
    return alerts, last, "\n".join(logs)


def test_a_worker_stopped_and_started_again_alerts_the_same(
        cases: tuple[list[Record], dict[str, dict[str, int]], dict[str, dict[str, int]]],
        tmp_path: Path) -> None:
    records, first, whole = cases
    once, once_snapshots, _ = _run(tmp_path / "once", records, [whole])
    twice, twice_snapshots, logs = _run(tmp_path / "twice", records, [first, whole])
    refused = [line for line in logs.splitlines() if "not used, rebuilding" in line]
    assert not refused, refused
    loaded = [line for line in logs.splitlines() if "loaded from their snapshots" in line]
    assert loaded and loaded[-1].split("snapshots: ")[1].split() == sorted(first), loaded
    assert "Traceback" not in logs, logs[-3000:]
    print(f"\nalerts: {Counter(a['kind'] for a in once.values())}; only without the "
          f"restart: {sorted(once.keys() - twice.keys())}; only with it: "
          f"{sorted(twice.keys() - once.keys())}")
    assert len(once) >= 3
    assert twice == once
    assert twice_snapshots == once_snapshots
