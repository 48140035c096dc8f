"""End to end on loopback: a sensitivity drop becomes an Alertmanager notification.

The real chain an on-call engineer depends on: simulator -> embedded broker -> `surveillance
worker` (verdict gauges on /metrics) -> Prometheus (the shipped rule files) -> Alertmanager
(the shipped routing tree, grouping and inhibition) -> a webhook receiver in this process.

The seeded stream is ptx-triage alone at 3x volume, 80 days, its sensitivity dropping from
0.927 to 0.82 on day 30. It is replayed in two parts:
1. the days before the drop: the worker must judge the tool (below-baseline gauges exist)
   and no performance alert may reach the webhook, so an alert in part 2 is caused by the
   drop and not by a stream that alerts anyway;
2. the days from the drop on: a performance alert for ptx-triage must reach the webhook.

Simulated report corrections are off (Faults(correction_rate=0)): the simulator's
corrections flip a correct label to a wrong one, which alone pushes a stable ptx-triage
below its sensitivity baseline (see tests/test_monitor_scenarios.py).

What the configs change from deploy/, and why: every rule's `for:` is 0s (production waits
5-30 minutes before paging); scrape and evaluation intervals are 1s; Alertmanager's
group_wait/group_interval are 1s and every receiver is the local webhook. Expressions,
labels, routes and inhibitions are the shipped ones. Seed and sizes were chosen with a dry
run of the pure monitor: the verdict enters below baseline about 20 event-time days after
the drop, with none before it.

The test prints how long the alert took; it asserts no timing (see STYLE/preamble).
"""

from __future__ import annotations

import contextlib
import time
import urllib.error
import urllib.parse
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from surveillance.embedded import EmbeddedBroker
from surveillance.simulate import Faults, Scenario, SimEvent, simulate
from surveillance.stream.produce import produce
from surveillance.stream.runner import WorkerProcess, combined_counts
from surveillance.stream.topics import all_topics, create_topics
from tests.alert_e2e_helpers import (
    WORKER_JOB,
    MissingBinaryError,
    Notification,
    Service,
    VerdictWatch,
    WebhookReceiver,
    alertmanager_service,
    prometheus_service,
    scrape,
    shipped_rule_groups,
)

pytestmark = pytest.mark.integration

TOOL = "ptx-triage"
START = date(2026, 1, 1)
DAYS = 80
DROP_DAY = 30
VOLUME_SCALE = 3.0
SEED = 9
PARTITIONS = 4
PERFORMANCE_ALERTS = frozenset({"SensitivityBelowBaseline", "CusumSignal", "MetricBelowBaseline"})
#: Bounds on waiting; generous because the machine is shared (they are not assertions).
PROCESS_TIMEOUT = 300.0
ALERT_TIMEOUT = 240.0


def sensitivity_drop_stream() -> tuple[list[SimEvent], list[SimEvent]]:
    """The seeded stream, split at the first arrival on or after the drop day."""
    events, _truth = simulate(
        days=DAYS,
        seed=SEED,
        start=START,
        scenario=Scenario(sensitivity_drop_day=DROP_DAY, drop_tool=TOOL, drop_to=0.82),
        faults=Faults(correction_rate=0.0),
        volume_scale=VOLUME_SCALE,
        tools=[TOOL],
    )
    drop_at = datetime(START.year, START.month, START.day, tzinfo=UTC) + timedelta(DROP_DAY)
    before = [e for e in events if e.arrival < drop_at]
    return before, events[len(before):]


def send(bootstrap: str, events: list[SimEvent]) -> int:
    return produce(bootstrap, ((e.topic, e.key, e.value) for e in events))


def wait_until(what: str, check: Callable[[], bool], timeout: float, worker: WorkerProcess) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not worker.alive():
            pytest.fail(f"the worker exited while waiting for {what}:\n{worker.log_tail()}")
        if check():
            return
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}:\n{worker.log_tail()}")


def processed(worker: WorkerProcess) -> float:
    """Input events the worker has ingested (valid or not), from its /metrics.

    An HTTP error fails at once: Prometheus could not scrape such a worker either.
    """
    try:
        samples = scrape(worker.url + "/metrics")
    except urllib.error.HTTPError as exc:
        pytest.fail(f"the worker's /metrics answered HTTP {exc.code}:\n{worker.log_tail()}")
    except OSError:
        return -1.0
    return sum(v for n, _l, v in samples if n == "surveillance_events_processed_total")


def counts_settled(worker: WorkerProcess, settle: float = 3.0) -> Callable[[], bool]:
    """A check that is true once the worker's case counts stayed the same for `settle` s."""
    state: dict[str, Any] = {"last": None, "since": 0.0}

    def check() -> bool:
        counts = combined_counts([worker])
        if counts is None or counts != state["last"]:
            state["last"], state["since"] = counts, time.monotonic()
            return False
        since: float = state["since"]
        return time.monotonic() - since >= settle

    return check


def prom_query(prometheus: Service, expr: str) -> list[dict[str, Any]]:
    answer = prometheus.get_json("/api/v1/query?query=" + urllib.parse.quote(expr))
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def performance_alerts(notes: list[Notification]) -> list[Notification]:
    return [
        n for n in notes
        if n.labels.get("alertname") in PERFORMANCE_ALERTS and n.labels.get("tool") == TOOL
    ]


def verdict_series(worker: WorkerProcess) -> list[tuple[dict[str, str], float]]:
    return [
        (labels, value)
        for name, labels, value in scrape(worker.url + "/metrics")
        if name == "surveillance_below_baseline" and labels.get("tool") == TOOL
    ]


def test_sensitivity_drop_reaches_the_alertmanager_webhook(tmp_path: Path) -> None:
    before, after = sensitivity_drop_stream()
    try:
        with contextlib.ExitStack() as stack:
            webhook = WebhookReceiver().start()
            stack.callback(webhook.stop)
            broker = stack.enter_context(EmbeddedBroker(log_dir=tmp_path))
            create_topics(broker.bootstrap, all_topics("surveillance", PARTITIONS))
            worker = WorkerProcess(broker.bootstrap, tmp_path).start()
            stack.callback(worker.stop)
            alertmanager = alertmanager_service(tmp_path, webhook.url)
            stack.callback(alertmanager.stop)
            alertmanager.start()
            prometheus = prometheus_service(tmp_path, worker.web_port, alertmanager.port)
            stack.callback(prometheus.stop)
            prometheus.start()
            wait_until("the worker to be ready", lambda: combined_counts([worker]) is not None,
                       PROCESS_TIMEOUT, worker)
            watch = VerdictWatch(worker.url + "/metrics", TOOL).start()
            stack.callback(watch.stop)

            # Part 1: the days before the drop -----------------------------------------
            t_first_event = time.monotonic()
            n_before = send(broker.bootstrap, before)
            wait_until(f"the worker to ingest the {n_before} pre-drop events",
                       lambda: processed(worker) == n_before, PROCESS_TIMEOUT, worker)
            wait_until("the pre-drop cases to settle", counts_settled(worker),
                       PROCESS_TIMEOUT, worker)
            wait_until(
                "Prometheus to scrape the pre-drop state",
                lambda: [float(r["value"][1]) for r in prom_query(
                    prometheus, f'sum(surveillance_events_processed_total{{job="{WORKER_JOB}"}})'
                )] == [float(n_before)],
                PROCESS_TIMEOUT, worker,
            )
            # A few evaluation rounds and Alertmanager's group_wait (all 1s) to let any
            # alert of the pre-drop state arrive before we look.
            time.sleep(6.0)
            verdicts = verdict_series(worker)
            print(f"\npre-drop: {n_before} events; {len(verdicts)} {TOOL} below-baseline "
                  f"verdict series, values {sorted({v for _l, v in verdicts})}")
            assert verdicts, f"the worker published no {TOOL} verdict before the drop"
            assert all(v == 0 for _l, v in verdicts), verdicts
            assert watch.first_verdict is None, watch.first_labels
            assert performance_alerts(webhook.notifications()) == []
            firing = prometheus.get_json("/api/v1/alerts")["data"]["alerts"]
            assert [a for a in firing if a["labels"].get("alertname") in PERFORMANCE_ALERTS
                    and a["labels"].get("tool") == TOOL] == []
            other = sorted({n.labels.get("alertname", "?") for n in webhook.notifications()})
            print(f"pre-drop notifications of other alerts: {other}")

            # Part 2: from the drop on -----------------------------------------------------
            t_drop_events = time.monotonic()
            n_after = send(broker.bootstrap, after)
            print(f"post-drop: {n_after} events produced in "
                  f"{time.monotonic() - t_drop_events:.1f}s")
            wait_until(f"a {TOOL} performance alert at the webhook",
                       lambda: bool(performance_alerts(webhook.notifications())),
                       ALERT_TIMEOUT, worker)
            first = performance_alerts(webhook.notifications())[0]
            assert first.status == "firing"
            assert first.labels["alertname"] in PERFORMANCE_ALERTS
            assert first.labels["tool"] == TOOL
            print(f"alert: {first.labels} via receiver {first.receiver}")
            print(f"elapsed to the webhook: {first.received - t_first_event:.1f}s from the "
                  f"first produced event, {first.received - t_drop_events:.1f}s from the first "
                  "post-drop event")
            assert watch.first_verdict is not None, "the alert arrived but no gauge read 1"
            print(f"worker gauge {watch.first_labels} read 1 at "
                  f"{watch.first_verdict - t_drop_events:.1f}s after the first post-drop "
                  f"event; the webhook got the alert {first.received - watch.first_verdict:.1f}s "
                  "after that")

            # The shipped rules all loaded and evaluate without error; the worker is up.
            groups = prometheus.get_json("/api/v1/rules")["data"]["groups"]
            assert {g["name"]: len(g["rules"]) for g in groups} == shipped_rule_groups()
            broken = [(r["name"], r["health"], r.get("lastError", ""))
                      for g in groups for r in g["rules"]
                      if r["health"] != "ok" or r.get("lastError")]
            assert broken == []
            targets = prometheus.get_json("/api/v1/targets")["data"]["activeTargets"]
            worker_targets = [(t["labels"]["job"], t["scrapeUrl"], t["health"]) for t in targets]
            assert worker_targets == [
                (WORKER_JOB, f"http://127.0.0.1:{worker.web_port}/metrics", "up")
            ]
    except MissingBinaryError as exc:
        pytest.fail(str(exc))
