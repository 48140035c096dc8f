"""The drift bank on the simulator's scenarios, fed exactly as the worker feeds it.

No broker (`DriftPath` below): `surveillance.simulate` events -> the engine's ingest and
join on 4 join partitions and its ledger (`engine.local.revisions`); on the first sight of
a case (no previous record) the engine's drift banks take its AI result (`DriftBanks`),
advanced to the low watermark of the join partitions' AI results, as the engine's case
stage (`engine.cases`) does. Events come in arrival order unless a test
re-orders them as a backlog is read.

Injected days (`simulate.scenario`): protocol change at site-b on day 45 (protocol
name, kVp 120 -> 100, slice 5 -> 2.5 mm on head CT), new scanner software at site-c on
day 60; the model update (day 40) and the ptx sensitivity drop (day 30) are not input
drift. The reference period is days 0-29.

False-alarm allowance: the bank is calibrated to the drift family's share of the tool's
budget, 0.25 expected false alarms a year (0.062 a quarter,
DriftBankConfig.alarms_per_quarter), so allowing a tool at most 1 drift alert per
simulated quarter on a feature the scenario does not touch is generous.
ich-triage and lvo-triage read the same head CT studies, so their chance alarms coincide.
"""

from __future__ import annotations

import itertools
import random
import statistics
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest

from surveillance.clinical.ledger import CaseRecord
from surveillance.contracts import AdjudicatedCase, Alert
from surveillance.engine.config import SOURCE_IDLE_SECONDS, EngineConfig
from surveillance.engine.drift import DriftBanks
from surveillance.engine.local import revisions
from surveillance.simulate import Faults, SimEvent, scenario_by_name, simulate
from surveillance.stats.drift_bank import DriftBank, DriftBankConfig, DriftVerdict
from surveillance.stream.case_features import new_bank
from surveillance.stream.watermark import SourceWatermark
from tests.test_drift_detectors import REFERENCE_DAYS, START, day_of, make_stream

SIM_START = date(2026, 7, 1)
PROTOCOL_DAY, SOFTWARE_DAY = 45, 60
PROTOCOL_FEATURES = {"protocol_name", "kvp", "slice_thickness"}
SOFTWARE_FEATURES = {"scanner_software_version"}
#: Detection delay allowed: the episode starts on the injected day or the next, and is
#: raised once the day is evaluated (one day of lateness, then the day closes).
MAX_SINCE_DELAY_DAYS = 1
MAX_RAISE_DELAY_DAYS = 3
#: Drift + new-category alerts per head CT tool over the quarter: 3 protocol features,
#: 1 software feature, 2 new categories, and 1 chance alarm (the budget).
MAX_ALERTS_PER_TOOL = 7
FALSE_ALARMS_PER_TOOL_QUARTER = 1
DRIFT_KINDS = {"input_drift", "output_drift"}


class DriftPath:
    """The case stage's drift side for one `cases.adjudicated` stream: the engine's drift
    banks, advanced to the low watermark of the join partitions."""

    def __init__(
        self, partitions: int, banks: dict[str, DriftBank] | None = None, now: float = 0.0
    ) -> None:
        self.drift = DriftBanks(banks)
        self.sources = SourceWatermark(SOURCE_IDLE_SECONDS, range(partitions), now)

    def on_case(
        self, source: int, reached: datetime, previous: CaseRecord | None,
        case: AdjudicatedCase, now: float,
    ) -> list[Alert]:
        self.sources.observe(source, reached, now)
        bank = self.drift.take(previous, case)
        low = self.sources.low(now)
        return [] if low is None else [v.to_alert() for v in bank.advance(low)]


def joined_revisions(
    events: list[SimEvent], partitions: int
) -> list[tuple[tuple[int, datetime], CaseRecord | None, AdjudicatedCase]]:
    return list(revisions(EngineConfig.plain(partitions), events))


def drift_alerts(events: list[SimEvent], partitions: int = 4) -> list[Alert]:
    """The drift alerts the case stage raises for `events` coming in this order (1 ms of
    wall time per case)."""
    path = DriftPath(partitions)
    alerts: list[Alert] = []
    for wall, ((source, reached), previous, case) in enumerate(
        joined_revisions(events, partitions)
    ):
        alerts += path.on_case(source, reached, previous, case, wall / 1000)
    return alerts


class LatestSeenClock:
    """The drift clock before the watermark, for comparison: the latest event time seen."""

    def __init__(self) -> None:
        self.at: datetime | None = None

    def feed(
        self, banks: dict[str, DriftBank], previous: CaseRecord | None, case: AdjudicatedCase
    ) -> list[Alert]:
        at = max(case.inference_date, case.labelled_at or case.inference_date)
        self.at = at if self.at is None or at > self.at else self.at
        return [v.to_alert() for v in DriftBanks(banks).take(previous, case).advance(self.at)]


def run_worker_path(scenario: str) -> list[Alert]:
    events, _ = simulate(days=90, seed=7, scenario=scenario_by_name(scenario), faults=Faults())
    return drift_alerts(events)


def sim_day(t: datetime) -> int:
    return (t.date() - SIM_START).days


@pytest.fixture(scope="module")
def all_alerts() -> list[Alert]:
    return run_worker_path("all")


@pytest.fixture(scope="module")
def stable_alerts() -> list[Alert]:
    return run_worker_path("stable")


@pytest.mark.parametrize("tool", ["ich-triage", "lvo-triage"])
def test_all_scenario_alerts_once_per_injected_change_within_delay(
    all_alerts: list[Alert], tool: str
) -> None:
    mine = [a for a in all_alerts if a.tool_id == tool]
    for a in mine:
        print(f"{a.kind:13} day {sim_day(a.raised_at):2} since day {sim_day(a.since)}: {a.summary}")
    drift = {a.details["feature"]: a for a in mine if a.kind == "input_drift"}
    assert len(drift) == sum(1 for a in mine if a.kind == "input_drift")  # one per feature
    assert set(drift) >= PROTOCOL_FEATURES | SOFTWARE_FEATURES
    for features, day in ((PROTOCOL_FEATURES, PROTOCOL_DAY), (SOFTWARE_FEATURES, SOFTWARE_DAY)):
        for feature in sorted(features):
            alert = drift[feature]
            since, raised = sim_day(alert.since) - day, sim_day(alert.raised_at) - day
            print(f"{tool} {feature}: injected day {day}, episode since +{since} d, "
                  f"raised +{raised} d")
            assert 0 <= since <= MAX_SINCE_DELAY_DAYS
            assert 0 <= raised <= MAX_RAISE_DELAY_DAYS
    others = set(drift) - PROTOCOL_FEATURES - SOFTWARE_FEATURES
    assert len(others) <= FALSE_ALARMS_PER_TOOL_QUARTER
    assert all(sim_day(a.raised_at) >= REFERENCE_DAYS for a in mine)
    assert not [a for a in mine if a.kind == "output_drift"]
    assert len(mine) <= MAX_ALERTS_PER_TOOL
    assert len({a.alert_id for a in mine}) == len(mine)


def test_all_scenario_alerts_say_what_where_since_and_against_what(
    all_alerts: list[Alert],
) -> None:
    ich = {(a.kind, a.details["feature"]): a for a in all_alerts if a.tool_id == "ich-triage"}
    kvp = ich[("input_drift", "kvp")]
    assert kvp.site == "site-b" and kvp.subgroup == {"site": "site-b"}
    assert "kvp mean 120 -> 100 kV (median 120 -> 100 kV) at site-b since 2026-08-15" in (
        kvp.summary
    )
    assert "reference 2026-07-01..2026-07-30 (n=" in kvp.summary
    assert kvp.details["reference_period"] == ["2026-07-01", "2026-07-30"]
    slices = ich[("input_drift", "slice_thickness")]
    assert "mean 5 -> 2.5 mm" in slices.summary and slices.site == "site-b"
    software = ich[("input_drift", "scanner_software_version")]
    assert software.site == "site-c" and "'4.1.6-SP2' 0% -> " in software.summary
    new_protocol = ich[("new_category", "protocol_name")]
    assert new_protocol.site == "site-b" and sim_day(new_protocol.since) == PROTOCOL_DAY
    assert "new protocol_name 'HEAD LOW DOSE 2.5MM' at site-b first seen 2026-08-15" in (
        new_protocol.summary
    )


def test_ptx_and_dr_screen_raise_no_input_drift_in_the_all_scenario(
    all_alerts: list[Alert],
) -> None:
    for tool in ("ptx-triage", "dr-screen"):
        drift = [a.summary for a in all_alerts if a.tool_id == tool and a.kind in DRIFT_KINDS]
        print(tool, drift)
        assert len(drift) <= FALSE_ALARMS_PER_TOOL_QUARTER


def test_stable_quarter_stays_within_the_false_alarm_budget(
    stable_alerts: list[Alert],
) -> None:
    per_tool = Counter(a.tool_id for a in stable_alerts if a.kind in DRIFT_KINDS)
    for a in stable_alerts:
        print(f"{a.kind} day {sim_day(a.raised_at)}: {a.summary}")
    print(f"stable quarter drift alerts per tool: {dict(per_tool)} "
          f"(allowed {FALSE_ALARMS_PER_TOOL_QUARTER} per tool)")
    assert all(n <= FALSE_ALARMS_PER_TOOL_QUARTER for n in per_tool.values())


def _key(v: DriftVerdict) -> tuple[str, str, str, datetime]:
    return (v.kind, v.feature, v.category or "", v.episode_start)


def test_arrival_disorder_within_the_lateness_gives_the_same_verdicts() -> None:
    reference = make_stream(3, 0, REFERENCE_DAYS)
    stream = make_stream(4, REFERENCE_DAYS, 20, protocol_change_day=REFERENCE_DAYS + 8,
                         new_software_day=REFERENCE_DAYS + 12)
    rng = random.Random(9)
    # Arrival up to 20 hours after the event: well within one day of lateness.
    shuffled = sorted(
        stream, key=lambda r: r.inference_date + timedelta(hours=rng.uniform(0, 20))
    )
    end = START + timedelta(days=REFERENCE_DAYS + 22)
    results = []
    for order in (stream, shuffled):
        bank = DriftBank.from_reference("ich-triage", reference, DriftBankConfig(seed=3))
        verdicts = [v for r in order for v in bank.update(r)] + bank.advance(end)
        results.append(sorted(_key(v) for v in verdicts))
    assert shuffled != stream
    assert results[0] == results[1]
    assert ("input_drift", "protocol_name", "", START + timedelta(days=REFERENCE_DAYS + 8)) in (
        results[0]
    )


def test_constant_feature_shift_is_one_episode_not_one_alert_per_event() -> None:
    # kVp 120 on every reference study, then 100 on 30% of studies for 20 days.
    reference = [
        r.model_copy(update={"acquisition": r.acquisition.model_copy(update={"kvp": 120.0})})
        for r in make_stream(5, 0, REFERENCE_DAYS)
    ]
    rng = random.Random(5)
    stream = [
        r.model_copy(update={"acquisition": r.acquisition.model_copy(
            update={"kvp": 100.0 if rng.random() < 0.3 else 120.0})})
        for r in make_stream(6, REFERENCE_DAYS, 20)
    ]  # fmt: skip
    bank = DriftBank.from_reference("ich-triage", reference, DriftBankConfig(seed=5))
    verdicts = [v for r in stream for v in bank.update(r)]
    verdicts += bank.advance(START + timedelta(days=REFERENCE_DAYS + 22))
    kvp = [v for v in verdicts if v.feature == "kvp"]
    assert [(v.detector, v.window_start) for v in kvp] == [
        ("psi", START + timedelta(days=REFERENCE_DAYS))
    ]
    first_day = [r.acquisition.kvp for r in stream if day_of(r.inference_date) == REFERENCE_DAYS]
    mean, median = statistics.fmean(first_day), statistics.median(first_day)
    assert kvp[0].site is None  # both sites shifted alike
    assert kvp[0].change == f"mean 120 -> {mean:.4g} kV (median 120 -> {median:.4g} kV)"


def test_without_event_clock_only_advance_evaluates_days() -> None:
    reference = make_stream(3, 0, REFERENCE_DAYS)
    stream = make_stream(4, REFERENCE_DAYS, 10, protocol_change_day=REFERENCE_DAYS + 2)
    bank = DriftBank.from_reference(
        "ich-triage", reference, DriftBankConfig(seed=3, event_clock=False)
    )
    assert [v for r in stream for v in bank.update(r)] == []
    # The watermark reaches the end of the change day plus one day of lateness.
    verdicts = bank.advance(START + timedelta(days=REFERENCE_DAYS + 4))
    assert ("input_drift", "protocol_name") in {(v.kind, v.feature) for v in verdicts}


def test_bank_statistics_feed_the_drift_gauges() -> None:
    """Every monitored feature reports its last window's statistic; the gauges take them."""
    from datetime import datetime, timedelta

    from surveillance.observe import metrics, publish
    from surveillance.stats.drift_bank import DriftBank, DriftBankConfig
    from tests.factories import ai_result

    metrics.register_tool("ich-triage", "CT")  # as the worker does at startup
    bank = DriftBank.for_tool("ich-triage", DriftBankConfig(reference_days=3, lateness_days=0))
    start = datetime(2026, 7, 1, tzinfo=UTC)
    for i in range(6 * 300):
        at = start + timedelta(minutes=i * 24 * 60 / 300)
        bank.update(ai_result(event_id=f"e{i}", accession=f"A{i}", at=at,
                              positive=i % 9 == 0, age=40 + i % 40))
    bank.advance(start + timedelta(days=7))
    stats = {(f, d): (v, on) for f, d, v, on in bank.statistics()}
    assert ("age", "psi") in stats and ("site", "psi") in stats
    assert all(v >= 0 for v, _ in stats.values())
    publish.publish_drift("ich-triage", bank.statistics())
    age = metrics.REGISTRY.get_sample_value(
        "surveillance_drift_statistic",
        {"tool": "ich-triage", "feature": "age", "detector": "psi"})
    assert age == stats[("age", "psi")][0]


TAKEOVER_DAY = 40  # after the reference period (days 0-29) closed; before the change (45)


def _takeover_paths() -> tuple[list[Alert], list[Alert], list[Alert], int]:
    """Alerts raised after a worker takes over on TAKEOVER_DAY, three ways: the bank that
    was never interrupted, a bank rebuilt from the stored case records (what the worker
    does on assignment), and a fresh bank (what it did before: a new reference period)."""
    from surveillance.clinical.ledger import record_of
    from surveillance.stream.case_features import rebuild_drift_banks

    events, _ = simulate(
        days=90, seed=7, scenario=scenario_by_name("protocol_change"), faults=Faults()
    )
    revisions = list(joined_revisions(events, 4))
    cut = next(i for i, (_, _, c) in enumerate(revisions) if sim_day(c.inference_date)
               >= TAKEOVER_DAY)
    # The latest revision of each case wins, as in the table.
    table = {c.case_id: record_of(c, 0, source=s) for (s, _), _, c in revisions[:cut]}
    never = DriftPath(4)
    for wall, ((source, reached), previous, case) in enumerate(revisions[:cut]):
        never.on_case(source, reached, previous, case, wall / 1000)
    rebuilt = DriftPath(4, rebuild_drift_banks(table.values(), new_bank), now=cut / 1000)
    fresh = DriftPath(4, now=cut / 1000)
    out: tuple[list[Alert], list[Alert], list[Alert]] = ([], [], [])
    for wall, ((source, reached), previous, case) in enumerate(revisions[cut:], start=cut):
        for path, alerts in zip((never, rebuilt, fresh), out, strict=True):
            alerts += path.on_case(source, reached, previous, case, wall / 1000)
    return (*out, len(table))


def test_a_worker_taking_over_rebuilds_the_drift_bank_from_stored_cases() -> None:
    never, rebuilt, fresh, stored = _takeover_paths()

    def described(alerts: list[Alert]) -> list[tuple[str, str, str]]:
        return [(a.tool_id, a.kind, a.summary) for a in alerts]

    print(f"\n{stored} stored cases replayed; after the takeover: {len(never)} alerts "
          f"uninterrupted, {len(rebuilt)} rebuilt, {len(fresh)} with a fresh bank")
    for a in rebuilt:
        print(f"  rebuilt: {a.kind} day {sim_day(a.raised_at)}: {a.summary[:110]}")
    # The rebuilt bank raises exactly what the uninterrupted one raises.
    assert described(rebuilt) == described(never)
    protocol = {(t, f) for t in ("ich-triage", "lvo-triage") for f in PROTOCOL_FEATURES}

    def on_time(alerts: list[Alert]) -> set[tuple[str, str]]:
        """Protocol-feature drift raised within the delay, dated from the injected day."""
        return {
            (a.tool_id, a.details["feature"]) for a in alerts
            if a.kind == "input_drift" and sim_day(a.since) == PROTOCOL_DAY
            and sim_day(a.raised_at) - PROTOCOL_DAY <= MAX_RAISE_DELAY_DAYS
        }

    assert protocol <= on_time(rebuilt)
    # A bank restarted at the takeover takes the changed protocol into a new, mixed
    # reference (days 40-69): it says nothing for weeks, then misdates and understates the
    # change ("kvp mean 103.4 -> 100 kV since 2026-09-12"). The gap the rebuild closes.
    assert not protocol & on_time(fresh)
    for a in fresh:
        if a.kind == "input_drift":
            assert sim_day(a.raised_at) >= TAKEOVER_DAY + 30, a.summary


#: Events per input partition per turn when a backlog is read: about one fetch.
CATCH_UP_CHUNK = 1000


def _catch_up_alerts(
    with_watermark: bool, takeover_at: float | None = None
) -> tuple[list[Alert], int]:
    """Drift alerts when the protocol-change quarter is read as a backlog: the worker's
    consumer takes the 8 input partitions (2 topics x 4) a chunk at a time, so they run
    days apart in event time; the join runs per partition and the case agent receives
    the cases in that order, 1 ms of wall time per case. With `takeover_at` (a fraction
    of the cases), a new worker takes over there: banks rebuilt from the stored records,
    the watermark started afresh. Returns the alerts and the largest lag in event time
    of an AI result behind the latest one read before it."""
    from surveillance.clinical.ledger import record_of
    from surveillance.stream.case_features import rebuild_drift_banks
    from surveillance.stream.ingest import join_partition

    events, _ = simulate(
        days=90, seed=7, scenario=scenario_by_name("protocol_change"), faults=Faults()
    )
    queues: dict[tuple[str, int], list[SimEvent]] = {}
    for e in events:
        queues.setdefault((e.topic, join_partition(e.key.decode(), 4)), []).append(e)
    read: list[SimEvent] = []
    while any(queues.values()):
        for queue in queues.values():
            read += queue[:CATCH_UP_CHUNK]
            del queue[:CATCH_UP_CHUNK]
    times = [e.arrival for e in read if e.topic == "ai.results"]
    skew = max(a - b for a, b in zip(itertools.accumulate(times, max), times, strict=True))
    revisions = list(joined_revisions(read, 4))
    cut = int(len(revisions) * takeover_at) if takeover_at is not None else len(revisions)
    path = DriftPath(4)
    latest_seen, banks = LatestSeenClock(), dict[str, DriftBank]()
    alerts: list[Alert] = []
    table: dict[str, CaseRecord] = {}
    for wall, ((source, reached), previous, case) in enumerate(revisions):
        if wall == cut:
            path = DriftPath(4, rebuild_drift_banks(table.values(), new_bank), wall / 1000)
        table[case.case_id] = record_of(case, 0, source=source)
        if with_watermark:
            alerts += path.on_case(source, reached, previous, case, wall / 1000)
        else:
            alerts += latest_seen.feed(banks, previous, case)
    return alerts, skew.days


def _described(alerts: list[Alert]) -> set[tuple[str, str, object, date]]:
    return {(a.tool_id, a.kind, a.details.get("feature"), a.since.date()) for a in alerts}


def test_a_backlog_read_partition_by_partition_raises_what_live_traffic_raises() -> None:
    """The case agent's drift clock is the low watermark of the join partitions' AI
    results, so a backlog (catch-up after an outage, a backfill) gives the alerts the same
    quarter gives arriving in order. A clock following the latest event time seen closes
    days before the lagging partitions deliver them: it dates the protocol change days
    late, from windows that mix the old protocol with the new."""
    live = run_worker_path("protocol_change")
    backlog, skew = _catch_up_alerts(with_watermark=True)
    latest_seen, _ = _catch_up_alerts(with_watermark=False)
    print(f"\ninput partitions up to {skew} days apart in event time; alerts: {len(live)} "
          f"live, {len(backlog)} backlog with the watermark, {len(latest_seen)} with the "
          f"latest event time as the clock")
    for a in latest_seen:
        if _described([a]) - _described(live):
            print(f"  latest-seen clock: {a.summary[:150]}")
    assert skew > 2  # further apart than the banks' lateness: days would close early
    assert _described(backlog) == _described(live)
    kvp = [a for a in backlog if a.tool_id == "ich-triage" and a.details.get("feature") == "kvp"]
    assert len(kvp) == 1 and "kvp mean 120 -> 100 kV" in kvp[0].summary
    assert "at site-b since 2026-08-15" in kvp[0].summary
    # The same backlog against the old clock: not what live traffic raises.
    assert _described(latest_seen) != _described(live)


def test_a_worker_taking_over_in_the_middle_of_a_backlog_raises_what_live_traffic_raises(
) -> None:
    """Taking over while the partitions are days apart: the stored records run ahead on
    some partitions, so the rebuilt banks close only the days every partition has
    delivered; the lagging partitions' cases still count in their own days."""
    live = run_worker_path("protocol_change")
    for takeover_at in (0.48, 0.63):  # partitions 14 and 15 days apart (08-10 .. 08-25)
        backlog, _ = _catch_up_alerts(with_watermark=True, takeover_at=takeover_at)
        assert _described(backlog) == _described(live), takeover_at
