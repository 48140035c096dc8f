"""The monitor fed exactly as the worker feeds it, on 90-day simulated streams: how many alerts.

`worker_replay` mirrors the engine's case stage (`engine.cases`): simulator events -> the
engine's ingest and join on 4 join partitions (`engine.local.revisions`) -> the ledger ->
`monitor.on_case(previous, case)` per new revision, in the order the events come, and
`monitor.evaluate(midnight, tools=[tool])` once per new day of each tool's clock (the low
watermark of the join partitions' AI results, `stream.watermark`; 1 ms of wall time per
case). `kafka_order` re-orders the events as a bulk replay over 4 partitions consumes them
(each round takes up to 1 MiB from each topic-partition), which scrambles event time by
weeks: a backlog's conditions.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, time, timedelta

import pytest
from scipy import stats

from surveillance.clinical.baselines import load_registry
from surveillance.clinical.monitor import PerformanceMonitor
from surveillance.contracts import Alert
from surveillance.engine.config import EngineConfig
from surveillance.engine.local import revisions
from surveillance.simulate import SimEvent, scenario_by_name, simulate
from surveillance.simulate.profiles import OPT_IN_TOOLS, TOOL_PROFILES
from surveillance.simulate.scenario import SENSITIVITY_DROP_DAY
from surveillance.stats.cusum import DAYS_PER_YEAR, average_run_length
from surveillance.stream.ingest import join_partition
from surveillance.stream.watermark import SourceWatermark

PARTITIONS = 4

REGISTRY = load_registry()
DAYS = 90
START = datetime(2026, 7, 1, tzinfo=UTC)
FLAGS = ("cusum_signal", "baseline_deviation")


def worker_replay(events: list[SimEvent]) -> tuple[PerformanceMonitor, list[Alert]]:
    monitor = PerformanceMonitor(REGISTRY)
    evaluated: dict[str, datetime] = {}
    alerts: list[Alert] = []
    sources = SourceWatermark(idle_seconds=30, expected=range(PARTITIONS), now=0.0)
    config = EngineConfig.plain(PARTITIONS)
    for wall, ((partition, reached), previous, case) in enumerate(revisions(config, events)):
        alerts += monitor.on_case(previous, case)
        sources.observe(partition, reached, wall / 1000)
        at = sources.low(wall / 1000)
        if at is None:
            continue
        day = datetime.combine(at.date(), time.min, tzinfo=UTC)
        last = evaluated.get(case.tool_id)
        if last is None or day > last:
            evaluated[case.tool_id] = day
            if last is not None:
                alerts += monitor.evaluate(day, tools=[case.tool_id], snapshots=False)[0]
    return monitor, alerts


def kafka_order(events: list[SimEvent], partitions: int = PARTITIONS) -> list[SimEvent]:
    queues: dict[tuple[str, int], list[SimEvent]] = {}
    for e in events:
        queues.setdefault((e.topic, join_partition(e.key.decode(), partitions)), []).append(e)
    out: list[SimEvent] = []
    position = dict.fromkeys(queues, 0)
    while len(out) < len(events):
        for key in sorted(queues):
            queue, taken = queues[key], 0
            while position[key] < len(queue) and taken < 1 << 20:
                taken += len(queue[position[key]].value)
                out.append(queue[position[key]])
                position[key] += 1
    return out


def _day(moment: datetime) -> float:
    return (moment - START) / timedelta(days=1)


@pytest.fixture(scope="module")
def all_scenario() -> tuple[list[SimEvent], PerformanceMonitor, list[Alert]]:
    events, _ = simulate(days=DAYS, seed=7, scenario=scenario_by_name("all"))
    monitor, alerts = worker_replay(events)
    return events, monitor, alerts


def _expected_delay_days(monitor: PerformanceMonitor, tool: str, version: str) -> float:
    """Design delay of the sensitivity chart for the simulated drop, plus the settling wait."""
    design = monitor.chart_design(tool, version, "sensitivity")
    assert design is not None
    drop_to = scenario_by_name("all").drop_to
    arl1 = average_run_length(design.p0, design.p1, design.h, 1.0 - drop_to)
    return arl1 / (design.weekly_volume / 7.0) + monitor.settle_days


def _check_dates(alert: Alert) -> None:
    assert alert.since is not None and alert.since <= alert.raised_at, alert.summary
    assert alert.n is not None and alert.n > 0, alert.summary


def test_all_scenario_one_sensitivity_episode_for_ptx_and_one_version_change_for_ich(
    all_scenario: tuple[list[SimEvent], PerformanceMonitor, list[Alert]],
) -> None:
    _, monitor, alerts = all_scenario
    print()
    for a in alerts:
        if a.kind in (*FLAGS, "version_change"):
            print(f"[{a.kind}] day {_day(a.raised_at):.1f}: {a.summary}")
    ptx = [a for a in alerts if a.tool_id == "ptx-triage" and a.kind in FLAGS]
    assert 1 <= len(ptx) <= 2
    first = ptx[0]
    assert first.metric == "sensitivity"
    delay = _day(first.raised_at) - SENSITIVITY_DROP_DAY
    expected = _expected_delay_days(monitor, "ptx-triage", "2.4.0")
    print(f"ptx-triage sensitivity alert {delay:.1f} days after the drop; design expects "
          f"{expected:.1f} days (chart from a zero start + {monitor.settle_days} days settling)")
    # Not before the drop, and within twice the design's expected delay.
    assert 0 <= delay <= 2 * expected
    for a in ptx:
        _check_dates(a)
        assert "clearance baseline 0.927" in a.summary
        # Names the site: its own, or each site's figure for an all-sites alert.
        named = ("by site: site-a",) if a.site == "all" else (f"at {a.site}:", "all sites")
        assert all(text in a.summary for text in named), a.summary
    others = [a for a in alerts if a.tool_id != "ptx-triage" and a.kind in FLAGS]
    assert len(others) <= 1, [a.summary for a in others]
    changes = [a.alert_id for a in alerts if a.kind == "version_change"]
    assert changes == ["version_change:ich-triage:5.3.0"]


def test_stable_scenario_stays_within_the_false_alarm_budget() -> None:
    events, _ = simulate(days=DAYS, seed=7, scenario=scenario_by_name("stable"))
    _, alerts = worker_replay(events)
    flags = Counter((a.tool_id, a.kind) for a in alerts if a.kind in FLAGS)
    # The tools the stream holds (tools simulated only when named are not in it).
    tools = len([t for t in REGISTRY if t in TOOL_PROFILES and t not in OPT_IN_TOOLS])
    mean = tools * DAYS / DAYS_PER_YEAR
    allowance = int(stats.poisson.ppf(0.999, mean))
    print(f"\nstable: {sum(flags.values())} CUSUM/baseline alerts over {tools} tools x {DAYS} "
          f"days {dict(flags)}; allowance {allowance} (Poisson 99.9% quantile of mean "
          f"{mean:.2f} at 1 false alarm per tool-year)")
    assert sum(flags.values()) <= allowance
    assert not [a for a in alerts if a.kind == "version_change"]


def test_scrambled_bulk_replay_keeps_dates_consistent_and_alerts_few(
    all_scenario: tuple[list[SimEvent], PerformanceMonitor, list[Alert]],
) -> None:
    events, _, _ = all_scenario
    monitor, alerts = worker_replay(kafka_order(events))
    flags = [a for a in alerts if a.kind in FLAGS]
    for a in flags:
        print(f"\n[{a.kind}] day {_day(a.raised_at):.1f}: {a.summary}")
        _check_dates(a)
    per_tool = Counter(a.tool_id for a in flags)
    assert per_tool["ptx-triage"] <= 2
    assert sum(n for tool, n in per_tool.items() if tool != "ptx-triage") <= 1
    design = monitor.chart_design("ptx-triage", "2.4.0", "sensitivity")
    assert design is not None and design.weekly_volume > 0
