"""The performance monitor on seeded simulated streams: false alarms, detection, versions.

Two paths feed the monitor:
- the full path: `surveillance.simulate` events -> ingest -> `clinical.join.apply` ->
  `CaseLedger.apply` -> `on_case`, exactly as the worker does (model update, rebuild);
- a light path for the 20 tool-years: ptx-triage cases drawn with numpy from the same
  statistics as the simulator (profiles.CHEST_XR volumes, scanners and patients; the
  tool's prevalence; scores from `simulate.scores.solve_score_model`, so the operating
  point is the registry's; lognormal report delays), emitted once, at report time, as
  their final revision. Twenty full-path years take minutes; this takes seconds.

The full path runs with the simulator's usual ~1% corrections (an original report that
misread the finding, later corrected to the true label); the light path has none.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from scipy import stats

from surveillance.clinical import join
from surveillance.clinical.baselines import load_registry
from surveillance.clinical.ledger import LABELLED, CaseLedger, CaseRecord
from surveillance.clinical.monitor import PerformanceMonitor
from surveillance.clinical.monitor_state import ALL_SITES
from surveillance.contracts import AdjudicatedCase, Alert, CaseOutcome, Label, Sex, wire
from surveillance.simulate import Scenario, simulate
from surveillance.simulate import profiles as P
from surveillance.simulate.scores import solve_score_model
from surveillance.stats.cusum import average_run_length
from surveillance.stream.ingest import Ingest, Rejected

REGISTRY = load_registry()
TOOL = "ptx-triage"
START = date(2026, 1, 1)
T0 = datetime(START.year, START.month, START.day, tzinfo=UTC)
DAY_S = 86_400.0
YEARS = 20
DAYS = 365
DROP_DAY = 180
DROP_TO = 0.82
#: After the drop we follow each stream this long at most (a miss beyond it fails the test).
FOLLOW_DAYS = 150


# -- light path ----------------------------------------------------------------------------


@dataclass
class LightStream:
    """Cases of one tool-year in report order; the dropped scores apply from DROP_DAY."""

    inferred: np.ndarray
    labelled: np.ndarray
    site: np.ndarray
    scanner: np.ndarray
    age: np.ndarray
    female: np.ndarray
    label: np.ndarray  # 0 absent, 1 present, 2 indeterminate
    score: np.ndarray
    score_dropped: np.ndarray


def light_stream(seed: int, days: int = DAYS) -> LightStream:
    rng = np.random.default_rng(seed)
    study = P.CHEST_XR
    weekend = np.array([(T0 + timedelta(days=d)).weekday() >= 5 for d in range(days)])
    factor = np.where(weekend, study.weekend_factor, 1.0)
    means = np.outer([s.weekday_mean for s in study.sites], factor)
    counts = rng.poisson(means)
    site = np.repeat(np.arange(len(study.sites)), counts.sum(axis=1))
    day = np.concatenate([np.repeat(np.arange(days), row) for row in counts])
    n = day.size
    inferred = day * DAY_S + rng.uniform(0, DAY_S, n)
    scanner = np.empty(n, dtype=np.int64)
    for s, profile in enumerate(study.sites):
        mask = site == s
        w = np.array([sc.weight for sc in profile.scanners])
        scanner[mask] = rng.choice(len(w), size=int(mask.sum()), p=w / w.sum())
    age = np.clip(np.round(rng.normal(study.age_mean, study.age_sd, n)), study.age_min,
                  study.age_max).astype(int)
    female = rng.random(n) < study.female_fraction
    disease = rng.random(n) < P.TOOL_PROFILES[TOOL].prevalence
    label = np.where(rng.random(n) < P.INDETERMINATE_RATE, 2, disease.astype(int))
    uniform = rng.random(n)
    tool = REGISTRY[TOOL]
    threshold = tool.operating_threshold
    stable = solve_score_model(tool.baseline.sensitivity.value,
                               tool.baseline.specificity.value, threshold)
    dropped = solve_score_model(DROP_TO, tool.baseline.specificity.value, threshold)
    delay_h = np.minimum(rng.lognormal(np.log(P.REPORT_DELAY_MEDIAN_HOURS),
                                       P.REPORT_DELAY_SIGMA, n), P.REPORT_DELAY_MAX_HOURS)
    labelled = inferred + delay_h * 3600.0
    order = np.argsort(labelled, kind="stable")
    score = stable.scores(uniform, disease)
    score_dropped = np.where(day >= DROP_DAY, dropped.scores(uniform, disease), score)
    return LightStream(inferred[order], labelled[order], site[order], scanner[order],
                       age[order], female[order], label[order], score[order],
                       score_dropped[order])


def light_cases(
    s: LightStream, dropped: bool, first: int = 0
) -> Iterator[tuple[float, AdjudicatedCase]]:
    """(report time in seconds from T0, final case) from index `first`, in report order."""
    study = P.CHEST_XR
    scores = s.score_dropped if dropped else s.score
    threshold = REGISTRY[TOOL].operating_threshold
    labels = (Label.ABSENT, Label.PRESENT, Label.INDETERMINATE)
    for i in range(first, s.inferred.size):
        positive = bool(scores[i] >= threshold)
        label = labels[int(s.label[i])]
        outcome = _outcome(positive, label)
        site = study.sites[int(s.site[i])]
        scanner = site.scanners[int(s.scanner[i])]
        yield float(s.labelled[i]), AdjudicatedCase.model_construct(
            case_id=f"c{i}", revision=0, outcome=outcome, label=label, tool_id=TOOL,
            software_version=P.TOOL_PROFILES[TOOL].base_version, site=site.site,
            ai_result=float(scores[i]), result_indicator=positive,
            inference_date=T0 + timedelta(seconds=float(s.inferred[i])),
            labelled_at=T0 + timedelta(seconds=float(s.labelled[i])),
            scanner_manufacturer=scanner.manufacturer, age=int(s.age[i]),
            sex=Sex.FEMALE if s.female[i] else Sex.MALE,
        )


def _outcome(positive: bool, label: Label) -> CaseOutcome:
    if label is Label.INDETERMINATE:
        return CaseOutcome.INDETERMINATE
    present = label is Label.PRESENT
    if positive:
        return CaseOutcome.TP if present else CaseOutcome.FP
    return CaseOutcome.FN if present else CaseOutcome.TN


def run_light(
    monitor: PerformanceMonitor, cases: Iterator[tuple[float, AdjudicatedCase]],
    first_day: int, last_day: int, stop_after: int | None = None,
) -> tuple[list[Alert], int]:
    """Feed cases, evaluating at the end of each event-time day; returns alerts and the day
    reached. With `stop_after`, stops at the first flag on or after that day."""
    alerts: list[Alert] = []
    day = first_day
    for at, case in cases:
        case_day = int(at // DAY_S)
        while day < min(case_day, last_day + 1):
            alerts += monitor.evaluate(_end_of(day), snapshots=False)[0]
            day += 1
            if stop_after is not None and _flagged(alerts, stop_after):
                return alerts, day
        if case_day > last_day:
            break
        alerts += monitor.on_case(None, case)
        if stop_after is not None and _flagged(alerts, stop_after):
            return alerts, day
    return alerts, day


def _end_of(day: int) -> datetime:
    return T0 + timedelta(days=day + 1) - timedelta(microseconds=1)


def _day_of(moment: datetime) -> int:
    return (moment - T0) // timedelta(days=1)


FLAGS = ("cusum_signal", "baseline_deviation")


def _flagged(alerts: list[Alert], after_day: int) -> bool:
    return any(a.kind in FLAGS and _day_of(a.raised_at) >= after_day for a in alerts)


def test_twenty_stable_tool_years_stay_within_the_false_alarm_budget_and_every_drop_is_found(
) -> None:
    false_alarms: Counter[str] = Counter()
    label_free = 0
    delays: list[float] = []
    expected_delay: list[float] = []
    for seed in range(YEARS):
        s = light_stream(seed)
        monitor = PerformanceMonitor(REGISTRY)
        fork = int(np.searchsorted(s.labelled, DROP_DAY * DAY_S))
        # The stable year up to the drop day, then a copy continues on the dropped stream.
        before, _ = run_light(monitor, light_cases(s, False), 0, DROP_DAY - 1)
        dropped = copy.deepcopy(monitor)
        after, _ = run_light(monitor, light_cases(s, False, fork), DROP_DAY, DAYS - 1)
        for alert in before + after:
            if alert.kind in FLAGS:
                false_alarms[alert.kind] += 1
            label_free += alert.kind == "label_free_warning"
        post, _ = run_light(dropped, light_cases(s, True, fork), DROP_DAY,
                            DROP_DAY + FOLLOW_DAYS, stop_after=DROP_DAY)
        flags = [a for a in post if a.kind in FLAGS and _day_of(a.raised_at) >= DROP_DAY]
        assert flags, f"seed {seed}: drop to {DROP_TO} not flagged within {FOLLOW_DAYS} days"
        first = flags[0]
        delay = (first.raised_at - (T0 + timedelta(days=DROP_DAY))) / timedelta(days=1)
        chart = next(c for c in dropped.chart_states() if c.metric == "sensitivity")
        design = dropped.chart_design(TOOL, chart.version, "sensitivity")
        assert design is not None
        arl1 = average_run_length(design.p0, design.p1, design.h, 1.0 - DROP_TO)
        expected = arl1 / (design.weekly_volume / 7.0)
        delays.append(delay)
        expected_delay.append(expected)
        print(f"seed {seed:2d}: {first.kind:18s} after {delay:5.1f} days "
              f"(design: {expected:5.1f} days from a zero start, "
              f"{design.weekly_volume:.1f} read-positives/week, h={design.h:.2f})")
    allowance = int(stats.poisson.ppf(0.999, YEARS * 1.0))
    total = sum(false_alarms.values())
    print(f"\nstable: {total} false alarms in {YEARS} tool-years {dict(false_alarms)}; "
          f"allowance {allowance} (Poisson 99.9% quantile at 1/tool-year); "
          f"label-free warnings {label_free}")
    print(f"drop to {DROP_TO}: all {YEARS} flagged; median delay {np.median(delays):.1f} days, "
          f"mean {np.mean(delays):.1f}; design expected {np.mean(expected_delay):.1f} days")
    assert total <= allowance
    assert label_free <= allowance
    assert len(delays) == YEARS


# -- full path -----------------------------------------------------------------------------


@dataclass
class Worker:
    """The worker's pure steps, in one process: ingest, join, ledger, monitor."""

    monitor: PerformanceMonitor
    ingest: Ingest
    states: dict[str, join.JoinState]
    table: dict[str, CaseRecord]
    ledger: CaseLedger
    watermark: datetime | None = None


def new_worker() -> Worker:
    codes = [b.finding_code for b in REGISTRY.values()]
    return Worker(PerformanceMonitor(REGISTRY), Ingest(b"test-key", codes, 64 * 1024), {}, {},
                  CaseLedger())


def replay(worker: Worker, events: list, evaluate: bool = True) -> tuple[list[Alert], list]:
    """Feed simulator events in arrival order; evaluate at the end of each arrival day."""
    alerts: list[Alert] = []
    snapshots: list = []
    day: date | None = None
    for event in events:
        if evaluate and day is not None and event.arrival.date() > day:
            a, s = worker.monitor.evaluate(_end_of((day - START).days))
            alerts += a
            snapshots += s
        day = event.arrival.date()
        item = worker.ingest(event.topic, event.value, event.arrival)
        if isinstance(item, Rejected):
            continue
        state, cases = join.apply(worker.states.get(item.accession), item, 0,
                                  timedelta(days=14), worker.watermark)
        worker.states[item.accession] = state
        at = join.event_time(item)
        worker.watermark = at if worker.watermark is None or at > worker.watermark else (
            worker.watermark
        )
        for emitted in cases:  # as the case stage reads it from `cases.adjudicated`
            case = AdjudicatedCase.model_validate_json(wire.encode(emitted))
            previous = worker.table.get(case.case_id)
            record = worker.ledger.apply(previous, case, 0)
            if record is None:
                continue
            alerts += worker.monitor.on_case(previous, case)
            worker.table[case.case_id] = record
    if evaluate and day is not None:
        a, s = worker.monitor.evaluate(_end_of((day - START).days))
        alerts += a
        snapshots += s
    return alerts, snapshots


@pytest.fixture(scope="module")
def model_update() -> tuple[Worker, list[Alert], list, dict]:
    events, truth = simulate(
        days=90, seed=11, start=START, tools=[TOOL],
        scenario=Scenario(model_update_day=40, model_update_tool=TOOL),
    )
    worker = new_worker()
    alerts, snapshots = replay(worker, events)
    return worker, alerts, snapshots, truth


def test_model_update_raises_exactly_one_version_change_and_keeps_versions_apart(
    model_update: tuple[Worker, list[Alert], list, dict],
) -> None:
    worker, alerts, snapshots, truth = model_update
    old, new = P.TOOL_PROFILES[TOOL].base_version, P.TOOL_PROFILES[TOOL].updated_version
    changes = [a for a in alerts if a.kind == "version_change"]
    assert [a.alert_id for a in changes] == [f"version_change:{TOOL}:{new}"]
    change = changes[0]
    assert _day_of(change.since) == 40
    assert change.details["previous_version"] == old
    figures = change.details["previous_figures"]
    print(f"\nversion change: {change.summary}")
    assert figures["sensitivity"]["n"] > 0 and figures["specificity"]["n"] > 0
    assert worker.monitor.versions(TOOL) == [old, new]
    # Both versions have snapshots, and their labelled counts add up to the ledger's.
    versions_in_snapshots = {s.software_version for s in snapshots}
    assert versions_in_snapshots == {old, new}
    last = _end_of(89)
    per_version = {v: worker.monitor.window(TOOL, v, ALL_SITES, 90, last) for v in (old, new)}
    ledger: Counter[str] = Counter()
    for (t, _v, _s, o), n in worker.ledger.counts.items():
        if t == TOOL and o in LABELLED:
            ledger[o] += n
    for outcome in ("TP", "FP", "TN", "FN"):
        split = [getattr(per_version[v], outcome.lower()) for v in (old, new)]
        print(f"{outcome}: {old} {split[0]} + {new} {split[1]} = ledger {ledger[outcome]}")
        assert sum(split) == ledger[outcome]
    by_version = Counter({v: c.n for v, c in per_version.items()})
    labelled_by_version: Counter[str] = Counter()
    for (t, v, _s, o), n in worker.ledger.counts.items():
        if t == TOOL and o in LABELLED:
            labelled_by_version[v] += n
    assert by_version == labelled_by_version
    assert sum(truth[TOOL].versions.values()) == sum(
        n for (t, _v, _s, _o), n in worker.ledger.counts.items() if t == TOOL
    )


def test_rebuild_from_records_gives_the_incremental_window_counts(
    model_update: tuple[Worker, list[Alert], list, dict],
) -> None:
    worker, _, _, _ = model_update
    rebuilt = PerformanceMonitor(REGISTRY)
    rebuilt.rebuild(list(worker.table.items()))
    now = _end_of(89)
    keys = worker.monitor.window_keys(TOOL)
    assert sorted(keys) == sorted(rebuilt.window_keys(TOOL))
    windows = worker.monitor.tool_windows(TOOL)
    again = rebuilt.tool_windows(TOOL)
    for key in keys:
        for days in (7, 30, 90):
            assert windows.window(key, days, now) == again.window(key, days, now), (key, days)
    last_n_equal = sum(windows.window(k, "last_n") == again.window(k, "last_n") for k in keys)
    print(f"\nrebuild: {len(keys)} keys x 3 calendar windows identical; last-N identical "
          f"for {last_n_equal}/{len(keys)} keys")
    assert [c.metric for c in rebuilt.chart_states()] == ["sensitivity", "specificity"] * 2
