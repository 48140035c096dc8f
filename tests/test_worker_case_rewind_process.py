"""A real worker killed between a case batch's two writes, restarted with the case-table
rewind: the alerts and published figures of one uninterrupted worker.

`tests/test_worker_case_crash.py` runs the worker's case stage, staging and rewind with
the broker replaced; here everything is the real thing: an embedded broker, worker
processes (`surveillance worker`) with the default throttled snapshots (one per tool per
60 s, so every snapshot is from the tool's first case batch), Faust's recovery and its
seek to the committed offsets the rewind lowered. The kill is a `sitecustomize` on the
first worker's path (the worker's code is unchanged): at the case agent's `KILL_AT`-th
batch with records to send (its alerts, a day's figures), its first write (the case
table's changes, the saved alerts) is made and acknowledged, then the process SIGKILLs
itself. The backlog makes about 7 such batches of ~300 cases in ~20 s, so from the second on
the case table on the log is ahead of every tool's snapshot; the third raises the first
alert.

A second worker, on the same broker, must rewind its case table to the snapshots (its
log says so, no snapshot is refused, every tool loads its own), read the partitions
again from their offsets, and end with the exact counts, the alerts (every field) and
the published figures (every value) of a worker that was never killed, run beside it on
its own broker. With the rewind off (`SURVEILLANCE_STREAM__CASE_REWIND=false`) the
tools are replayed from their records (`PerformanceMonitor.rebuild` is approximate),
and at both kill points the alerts and figures differed (measured:
`baseline_deviation:ich-triage:5.2.1:all:sensitivity:30d:2026-07-08` with another
p-value and interval, and 3 figures of 07-06 published only after the crash).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from surveillance.demo import read_alerts
from surveillance.embedded import EmbeddedBroker
from surveillance.simulate import SimEvent, ToolTruth
from surveillance.stream.produce import produce
from surveillance.stream.runner import WorkerError, WorkerProcess, wait_for_counts
from surveillance.stream.topics import SNAPSHOTS, all_topics, create_topics
from tests.alert_e2e_helpers import scrape
from tests.test_backfill_crashes import stream
from tests.test_pipeline_integration import assert_exact, expected_counts, expected_outcomes
from tests.topic_read import read_topic

pytestmark = pytest.mark.integration

PARTITIONS = 4
REWIND = {"SURVEILLANCE_STREAM__CASE_REWIND": "true"}  # the default, set against the environment
KILLED = "killed between the case batch's two writes"
REWOUND = "case table rewound to its tools' snapshots"
REFUSED = "not used, rebuilding it from its case records"

KILL_HOOK = f'''
import os
import signal
import sys

from surveillance.bulk import changelog
from surveillance.engine.pipeline import CASE_TABLE
from surveillance.settings import get_settings
from surveillance.stream import outbox

_CASES = changelog.topic(get_settings().stream.app_id, CASE_TABLE)
_KILL_AT = int(os.environ["CASE_REWIND_TEST_KILL_AT"])
_send = outbox.Outbox.send
_seen = 0


async def send(self, records, then=()):
    global _seen
    records, then = list(records), list(then)
    if then and any(r.topic == _CASES for r in records):
        _seen += 1
        if _seen == _KILL_AT:
            await _send(self, records)  # the first write, acknowledged
            print("{KILLED}", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    return await _send(self, records, then)


outbox.Outbox.send = send
'''


@dataclass
class Outcome:
    counts: dict[str, dict[str, int]]
    alerts: dict[str, dict[str, Any]]  # alert id -> every field
    figures: set[str]  # every published figure (a canonical JSON each)
    logs: list[str]
    #: (tool, how) -> times the worker rebuilt its state so (`surveillance_tool_state_rebuilds`)
    rebuilds: dict[tuple[str, str], float]


@pytest.fixture(scope="module")
def events() -> tuple[list[SimEvent], dict[str, ToolTruth]]:
    return stream()


@pytest.fixture
def broker_pair(tmp_path: Path) -> Iterator[tuple[EmbeddedBroker, EmbeddedBroker]]:
    with EmbeddedBroker(log_dir=tmp_path / "a") as a, EmbeddedBroker(log_dir=tmp_path / "b") as b:
        for broker in (a, b):
            create_topics(broker.bootstrap, all_topics("surveillance", PARTITIONS))
        yield a, b


def published(bootstrap: str) -> set[str]:
    """Every figure on `surveillance.snapshots` (a batch's figures one by one), once each."""
    figures = set()
    for value in read_topic(bootstrap, SNAPSHOTS):
        record = json.loads(value)
        for figure in record.get("snapshots", [record]):
            figure.pop("snapshot_id", None)
            figures.add(json.dumps(figure, sort_keys=True))
    return figures


def finish(worker: WorkerProcess, truth: dict[str, ToolTruth], logs: list[str]) -> Outcome:
    try:
        counts = wait_for_counts([worker], expected_counts(truth), timeout=300,
                                 outcomes=expected_outcomes(truth))
        logs.append(worker.log_tail(10_000_000))
        rebuilds = {(labels["tool"], labels["status"]): value
                    for name, labels, value in scrape(worker.url + "/metrics")
                    if name == "surveillance_tool_state_rebuilds_total"}
    finally:
        worker.stop()
    alerts = {a.alert_id: a.model_dump(mode="json") for a in read_alerts(worker.bootstrap)}
    return Outcome(counts, alerts, published(worker.bootstrap), logs, rebuilds)


def uninterrupted(broker: EmbeddedBroker, tmp_path: Path,
                  events: list[SimEvent], truth: dict[str, ToolTruth]) -> Outcome:
    produce(broker.bootstrap, ((e.topic, e.key, e.value) for e in events))
    worker = WorkerProcess(broker.bootstrap, tmp_path / "reference", env=REWIND).start()
    return finish(worker, truth, [])


def crashed(broker: EmbeddedBroker, tmp_path: Path, events: list[SimEvent],
            truth: dict[str, ToolTruth], kill_at: int) -> Outcome:
    produce(broker.bootstrap, ((e.topic, e.key, e.value) for e in events))
    hook = tmp_path / "kill-hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(KILL_HOOK)
    path = os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH")) if p)
    first = WorkerProcess(broker.bootstrap, tmp_path / "crashed", env={
        **REWIND, "PYTHONPATH": path, "CASE_REWIND_TEST_KILL_AT": str(kill_at)}).start()
    try:
        # Ends with the kill, or (if the kill never came) once every case is counted.
        with contextlib.suppress(WorkerError):
            wait_for_counts([first], expected_counts(truth), timeout=300,
                            outcomes=expected_outcomes(truth))
    finally:
        first.kill()
    logs = [first.log_tail(10_000_000)]
    second = WorkerProcess(broker.bootstrap, tmp_path / "crashed", env=REWIND).start()
    return finish(second, truth, logs)


@pytest.mark.parametrize("kill_at", [3, 6])
def test_a_worker_killed_between_a_case_batchs_writes_rewinds_and_alerts_as_one_run(
    broker_pair: tuple[EmbeddedBroker, EmbeddedBroker], tmp_path: Path,
    events: tuple[list[SimEvent], dict[str, ToolTruth]], kill_at: int,
) -> None:
    stream_events, truth = events
    a, b = broker_pair
    with ThreadPoolExecutor(2) as pool:
        ref = pool.submit(uninterrupted, a, tmp_path, stream_events, truth)
        got = pool.submit(crashed, b, tmp_path, stream_events, truth, kill_at)
        reference, after = ref.result(), got.result()
    first, second = after.logs
    assert KILLED in first, first[-3000:]  # the kill landed where it was meant to
    assert "Traceback" not in second, second[-3000:]
    assert REWOUND in second, second[-3000:]
    assert REFUSED not in second, second[-3000:]
    assert f"tools loaded from their snapshots: {' '.join(sorted(truth))}" in second
    # Told on /metrics too: each tool rebuilt once, rewound (or loaded as written, if its
    # snapshot was not behind), none replayed.
    assert sorted(tool for tool, _ in after.rebuilds) == sorted(truth), after.rebuilds
    assert set(after.rebuilds.values()) == {1.0}, after.rebuilds
    how = {status for _, status in after.rebuilds}
    assert "rewound" in how and how <= {"rewound", "snapshot"}, after.rebuilds
    assert_exact(truth, after.counts)
    assert_exact(truth, reference.counts)
    assert len(reference.alerts) >= 3 and reference.figures
    only_after = sorted(after.alerts.keys() - reference.alerts.keys())
    only_reference = sorted(reference.alerts.keys() - after.alerts.keys())
    assert (only_after, only_reference) == ([], [])
    for alert_id, alert in reference.alerts.items():
        assert after.alerts[alert_id] == alert, alert_id
    assert sorted(after.figures - reference.figures)[:3] == []
    assert sorted(reference.figures - after.figures)[:3] == []
