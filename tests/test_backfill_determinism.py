"""Two backfills of one backlog, without any kill, fetched differently: the same alerts.

The daily evaluation must be a function of the input alone. Before `bulk.order`'s
`EventTimeMerge`, it depended on how the bulk fetches fell (the crash test's alerts
differed between two uninterrupted runs): the consumer hands over partition after
partition, so the join read days of AI results before their reports. The case clock (the
join partitions' AI clocks) then passed days whose reports were still unread, and those
days were evaluated without their labels; and a case whose AI result was read after its
report and the report's correction was labelled by the correction, at the correction's
time, where reading it between the two labels it at the original's (another day for the
monitor).

Here the crash test's backlog (21 simulated days with duplicates, invalid events,
corrections, a sensitivity drop, a model update, a new scanner software and an outage) is
backfilled twice, each on its own embedded broker, by `surveillance backfill` as an
operator runs it: once in one process taking 300 records a batch, once in two processes
(join and case stage apart) taking 20,000. Every alert (all its fields) and every metric
snapshot must be equal. On main 7474894 it failed: the ich-triage 5.3.0 version change's
first case was 01:34:22.783 in one run and 01:33:08.829 in the other, 5.2.1's specificity
n 386 against 385, and the 5.2.1 (07-08) and 5.3.0 (07-14) sensitivity alerts came in one
run only. 15-30 s of wall time on a loaded 2-core machine (the two backfills side by side).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from surveillance.demo import read_alerts
from surveillance.embedded import EmbeddedBroker
from surveillance.stream import topics
from surveillance.stream.runner import WorkerProcess
from tests.test_backfill_crashes import APP, stream
from tests.test_pipeline_integration import PARTITIONS, send
from tests.topic_read import read_topic

pytestmark = pytest.mark.integration

#: (processes, records per batch): the two ways of fetching the same backlog.
SHAPES = (("1", "300"), ("2", "20000"))


def backfilled(tmp_path: Path, processes: str, max_records: str
               ) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The alerts (id -> every field) and the metric snapshot records of one backfill."""
    events, _ = stream()
    backlog = events[:len(events) * 2 // 3]
    with EmbeddedBroker(log_dir=tmp_path) as broker:
        topics.create_topics(broker.bootstrap, topics.all_topics(APP, PARTITIONS))
        send(broker, backlog)
        runner = WorkerProcess(broker.bootstrap, tmp_path, command="backfill", args=(
            "--idle-seconds", "2", "--processes", processes, "--max-records", max_records,
        )).start()
        assert runner.proc is not None and runner.proc.wait(timeout=600) == 0, (
            runner.log_tail())
        print(f"{processes} process(es), {max_records} a batch: "
              f"{[line for line in runner.log_tail().splitlines() if 'done' in line]}")
        alerts = {a.alert_id: a.model_dump(mode="json") for a in read_alerts(broker.bootstrap)}
        snapshots = sorted(v.decode() for v in read_topic(broker.bootstrap, topics.SNAPSHOTS))
    return alerts, snapshots


def test_two_backfills_fetched_differently_raise_the_same_alerts(tmp_path: Path) -> None:
    with ThreadPoolExecutor(len(SHAPES)) as pool:
        first, second = pool.map(lambda shape: backfilled(tmp_path / "-".join(shape), *shape),
                                 SHAPES)
    (alerts, snapshots), (other_alerts, other_snapshots) = first, second
    assert len(alerts) >= 3 and snapshots  # the scenario raises alerts and evaluates days
    differing = [
        f"{alert_id}: {summary(alerts.get(alert_id))} | {summary(other_alerts.get(alert_id))}"
        for alert_id in sorted(alerts.keys() | other_alerts.keys())
        if alerts.get(alert_id) != other_alerts.get(alert_id)]
    assert not differing, "\n".join(differing)
    assert snapshots == other_snapshots, (
        f"{len(set(snapshots) - set(other_snapshots))} snapshot records only in the first, "
        f"{len(set(other_snapshots) - set(snapshots))} only in the second; the first days: "
        f"{sorted({json.loads(s)['at'] for s in set(snapshots) ^ set(other_snapshots)})[:4]}")


def summary(alert: dict[str, Any] | None) -> str:
    return "none" if alert is None else f"{alert['raised_at']} {alert['summary']}"
