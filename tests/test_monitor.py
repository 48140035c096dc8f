"""PerformanceMonitor fed short lists of cases: exact counts, alerts and their context."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from scipy.stats import binomtest, fisher_exact
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from surveillance.clinical.baselines import load_registry
from surveillance.clinical.label_free import alpha_for_budget
from surveillance.clinical.ledger import CaseRecord, record_of
from surveillance.clinical.monitor import PerformanceMonitor
from surveillance.clinical.monitor_state import ALL_SITES, MonitorError
from surveillance.contracts import AdjudicatedCase, Alert, CaseOutcome, Label, Sex
from surveillance.observe import metrics, publish
from surveillance.stats.agreement import Confusion

REGISTRY = load_registry()
TOOL = "ptx-triage"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
_LABEL = {
    CaseOutcome.TP: Label.PRESENT, CaseOutcome.FN: Label.PRESENT,
    CaseOutcome.FP: Label.ABSENT, CaseOutcome.TN: Label.ABSENT,
    CaseOutcome.INDETERMINATE: Label.INDETERMINATE,
}


def case(
    n: int, outcome: CaseOutcome, at: datetime = T0, *, version: str = "2.4.0",
    site: str = "site-a", scanner: str = "Carestream Health", sex: Sex = Sex.FEMALE,
    age: int = 50, revision: int = 0, score: float | None = None,
    labelled_after: timedelta = timedelta(hours=6),
) -> AdjudicatedCase:
    positive = outcome in (CaseOutcome.TP, CaseOutcome.FP)
    labelled = outcome not in (CaseOutcome.PENDING, CaseOutcome.UNLABELLED)
    return AdjudicatedCase(
        case_id=f"acc{n}:{TOOL}", revision=revision, outcome=outcome,
        label=_LABEL.get(outcome), tool_id=TOOL, software_version=version,
        finding_code="pneumothorax", site=site,
        ai_result=score if score is not None else (0.9 if positive else 0.1),
        operating_threshold=0.5, result_indicator=positive, accession=f"acc{n}",
        study_date=at.date(), inference_date=at,
        labelled_at=at + labelled_after if labelled else None, modality="DX",
        scanner_manufacturer=scanner, scanner_model="m", scanner_software_version="s",
        age=age, sex=sex, ai_event_id=f"ai{n}",
    )


class Feed:
    """Applies cases like the worker: previous record from a table keyed by case id."""

    def __init__(self, monitor: PerformanceMonitor) -> None:
        self.monitor = monitor
        self.table: dict[str, CaseRecord] = {}
        self.alerts: list[Alert] = []

    def __call__(self, c: AdjudicatedCase) -> list[Alert]:
        previous = self.table.get(c.case_id)
        out = self.monitor.on_case(previous, c)
        if previous is None or c.revision > previous.revision:
            self.table[c.case_id] = record_of(c, 0)
        self.alerts += out
        return out


def key_counts(m: PerformanceMonitor, site: str, sub: tuple[str, str] | None = None) -> Confusion:
    return m.window(TOOL, "2.4.0", site, 30, T0 + timedelta(days=1), sub)


def test_a_case_counts_under_site_all_and_each_subgroup_and_a_correction_moves_it() -> None:
    m = PerformanceMonitor(REGISTRY)
    feed = Feed(m)
    feed(case(1, CaseOutcome.TP, sex=Sex.MALE, age=70, scanner="GE"))
    assert len(m.window_keys(TOOL)) == 8  # (site, all) x (itself + 3 subgroup dimensions)
    for site in ("site-a", ALL_SITES):
        assert key_counts(m, site) == Confusion(tp=1)
        assert key_counts(m, site, ("scanner_manufacturer", "GE")) == Confusion(tp=1)
        assert key_counts(m, site, ("sex", "M")) == Confusion(tp=1)
        assert key_counts(m, site, ("age_band", "65-79")) == Confusion(tp=1)
    feed(case(1, CaseOutcome.FN, sex=Sex.MALE, age=70, scanner="GE", revision=1))
    assert key_counts(m, ALL_SITES) == Confusion(fn=1)
    assert key_counts(m, "site-a", ("sex", "M")) == Confusion(fn=1)
    # A replay of an older revision changes nothing.
    assert feed(case(1, CaseOutcome.TP, sex=Sex.MALE, age=70, scanner="GE")) == []
    assert key_counts(m, ALL_SITES) == Confusion(fn=1)


def test_new_version_raises_one_version_change_with_the_previous_versions_figures() -> None:
    m = PerformanceMonitor(REGISTRY)
    feed = Feed(m)
    for i, outcome in enumerate([CaseOutcome.TP] * 3 + [CaseOutcome.FN] + [CaseOutcome.TN] * 9
                                + [CaseOutcome.FP]):
        feed(case(i, outcome, T0 + timedelta(hours=i)))
    first = feed(case(100, CaseOutcome.TP, T0 + timedelta(days=2), version="2.5.0", site="site-b"))
    again = feed(case(101, CaseOutcome.TN, T0 + timedelta(days=2), version="2.5.0"))
    assert again == []
    assert [a.alert_id for a in first] == [f"version_change:{TOOL}:2.5.0"]
    alert = first[0]
    figures = alert.details["previous_figures"]
    assert alert.details["previous_version"] == "2.4.0"
    assert alert.site == "site-b" and alert.since == T0 + timedelta(days=2)
    assert figures["sensitivity"]["value"] == 0.75 and figures["sensitivity"]["n"] == 4
    assert figures["specificity"]["value"] == 0.9 and figures["specificity"]["n"] == 10
    low, high = proportion_confint(3, 4, alpha=0.05, method="wilson")
    assert figures["sensitivity"]["interval"] == pytest.approx((low, high), abs=1e-9)
    assert "revalidation required" in alert.summary
    print(f"\n{alert.summary}")
    # The new version's figures are kept apart.
    assert m.window(TOOL, "2.5.0", ALL_SITES, 30, T0 + timedelta(days=2)) == Confusion(tp=1, tn=1)
    assert m.window(TOOL, "2.4.0", ALL_SITES, 30, T0 + timedelta(days=2)) == Confusion(
        tp=3, fn=1, tn=9, fp=1
    )


def _sensitivity_window(feed: Feed, tp: int, fn: int, day0: datetime, fn_scanner: str) -> None:
    """tp + fn read-positive cases and 200 read-negatives over 10 days before day0."""
    n = 0
    for i in range(tp + fn):
        outcome = CaseOutcome.TP if i < tp else CaseOutcome.FN
        scanner = fn_scanner if outcome is CaseOutcome.FN else ("GE", "Carestream Health")[i % 2]
        feed(case(n, outcome, day0 - timedelta(hours=3 * (i + 1)), scanner=scanner,
                  site=("site-a", "site-b")[i % 2]))
        n += 1
    for i in range(200):
        feed(case(n, CaseOutcome.TN, day0 - timedelta(hours=i + 1),
                  scanner=("GE", "Carestream Health")[i % 2]))
        n += 1


def test_baseline_deviation_is_raised_once_on_entry_with_its_clinical_context() -> None:
    m = PerformanceMonitor(REGISTRY)
    feed = Feed(m)
    # 24/40 = 0.60: below baseline - tolerance, and improbable enough for a tool inside
    # its tolerance (0.902) to pass the budgeted alert level.
    _sensitivity_window(feed, tp=24, fn=16, day0=T0, fn_scanner="GE")
    alerts, snapshots = m.evaluate(T0)
    deviations = [a for a in alerts if a.kind == "baseline_deviation"]
    # 40 read-positives in both the 30- and 90-day windows, at site "all" (site-a and
    # site-b have 20 each, below min_counts 25): both verdicts are below baseline, and the
    # episode gives one alert, the first window's.
    assert [(a.site, a.window) for a in deviations] == [(ALL_SITES, "30d")]
    verdicts = m.verdicts()
    for window in (30, 90):
        assert verdicts[(TOOL, "2.4.0", ALL_SITES, window, "sensitivity")].kind == "below_baseline"
    assert list(m.episodes()) == [(TOOL, "2.4.0", "sensitivity")]
    alert = deviations[0]
    assert alert.metric == "sensitivity" and alert.value == 0.60 and alert.n == 40
    assert alert.baseline == 0.927 and alert.software_version == "2.4.0"
    assert alert.subgroup == {"scanner_manufacturer": "GE"}
    oracle = binomtest(24, 40, 0.927 - 0.05, alternative="less").pvalue
    assert alert.details["p_value"] == pytest.approx(oracle, rel=1e-9)
    # The alert level: the baseline-test family's 0.1/year over a year of 12 daily tests
    # (site-a, site-b, all x 30/90 days x 2 metrics), against 0.927 - 0.025.
    assert alert.details["alert_level"] == pytest.approx(0.1 / (365.25 * 12), rel=1e-12)
    in_control = binomtest(24, 40, 0.927 - 0.025, alternative="less").pvalue
    assert in_control < alert.details["alert_level"]
    assert alert.details["family"] == "baseline_test"
    assert alert.details["family_false_alarms_per_year"] == pytest.approx(0.1)
    low, high = proportion_confint(24, 40, alpha=0.05, method="wilson")
    # (misses, hits) of GE against Carestream, Carestream against GE, and the two sites
    # (identical): Holm over the four one-sided Fisher tests (scipy, statsmodels).
    tables = ([[16, 12], [0, 12]], [[0, 12], [16, 12]], [[8, 12], [8, 12]], [[8, 12], [8, 12]])
    fisher = [fisher_exact(t, alternative="greater").pvalue for t in tables]
    adjusted = multipletests(fisher, method="holm")[1][0]
    assert alert.interval == pytest.approx((low, high), abs=1e-9)
    assert alert.summary.startswith(
        "ptx-triage 2.4.0 at all sites: sensitivity 0.60 (95% CI "
        f"{low:.2f}-{high:.2f}, n=40, 30 days) is below the clearance baseline 0.927 minus "
        "tolerance 0.05"
    )
    assert alert.summary.endswith(
        "; by site: site-a 0.60 (n=20), site-b 0.60 (n=20); concentrated in scanner GE "
        "(sensitivity 0.43 (n=28) against 1.00 in the rest; one-sided Fisher exact tests of "
        f"each subgroup against the rest, Holm-corrected, adjusted p={adjusted:.2g} over 4 "
        "subgroups)."
    )
    print(f"\n{alert.summary}")
    # Still below the next day: no new alert (alert fatigue).
    later, _ = m.evaluate(T0 + timedelta(days=1))
    assert [a for a in later if a.kind == "baseline_deviation"] == []
    # Snapshots: 3 sites-or-all x (3 calendar windows + last N) x 7 metrics.
    agreement = [s for s in snapshots if s.kind == "agreement"]
    assert len(agreement) == 3 * 4 * 7
    sens = next(s for s in agreement if s.site == ALL_SITES and s.window == "30d"
                and s.metric == "sensitivity")
    assert (sens.value, sens.n) == (0.60, 40)
    assert len({s.snapshot_id for s in snapshots}) == len(snapshots)


def test_cusum_starts_after_the_reference_period_and_signals_with_context() -> None:
    m = PerformanceMonitor(REGISTRY, reference_days=28, reference_grace_days=0, settle_days=0)
    feed = Feed(m)
    n = 0
    # Reference period: 28 days, 5 read-positives (all TP) and 100 read-negatives a day.
    for day in range(28):
        for k in range(105):
            at = T0 + timedelta(days=day, minutes=10 * k)
            feed(case(n, CaseOutcome.TP if k < 5 else CaseOutcome.TN, at,
                      scanner=("GE", "Carestream Health")[k % 2], labelled_after=timedelta(0)))
            n += 1
    assert m.chart_states() == []
    start = T0 + timedelta(days=28, hours=1)
    feed(case(n, CaseOutcome.TP, start, labelled_after=timedelta(0)))
    n += 1
    design = m.chart_design(TOOL, "2.4.0", "sensitivity")
    assert design is not None
    assert design.weekly_volume == pytest.approx(5 * 7)
    other = m.chart_design(TOOL, "2.4.0", "specificity")
    assert other is not None
    assert other.weekly_volume == pytest.approx(100 * 7)
    # Consecutive misses on scanner GE from a zero statistic: each adds ln(p1/p0) (up to the
    # lattice rounding of the chart), so the signal comes after ceil(h / ln(p1/p0)) misses.
    weight = math.log(design.p1 / design.p0)
    needed = math.ceil(design.h / weight)
    signals: list[Alert] = []
    for i in range(needed):
        at = start + timedelta(hours=i + 1)
        signals += feed(case(n, CaseOutcome.FN, at, scanner="GE", labelled_after=timedelta(0)))
        n += 1
        if signals:
            break
    print(f"\nsignal after {i + 1} misses; h={design.h:.3f}, ln(p1/p0)={weight:.3f}")
    assert i + 1 == needed
    (alert,) = signals
    assert alert.alert_id == f"cusum_signal:{TOOL}:2.4.0:sensitivity:1"
    assert alert.since == start + timedelta(hours=1)  # the first miss of the excursion
    assert alert.subgroup == {"scanner_manufacturer": "GE"}
    assert alert.details["expected_detection_days"] == design.arl1_days
    assert alert.window == "30d" and alert.n is not None and alert.n > 0
    assert alert.value is not None and alert.interval is not None
    print(alert.summary)


def test_label_free_warning_on_a_positive_rate_jump_is_an_estimate_raised_once() -> None:
    m = PerformanceMonitor(REGISTRY, reference_days=7)
    feed = Feed(m)
    n = 0
    # Reference week: 10% positive calls; then a week at 30%, all still pending.
    for day in range(14):
        share = 6 if day < 7 else 18
        for k in range(60):
            at = T0 + timedelta(days=day, minutes=10 * k)
            positive = k < share
            c = case(n, CaseOutcome.PENDING, at, score=0.9 if positive else 0.1)
            feed(c.model_copy(update={"result_indicator": positive}))
            n += 1
    alerts, _ = m.evaluate(T0 + timedelta(days=13, hours=12))
    warnings = [a for a in alerts if a.kind == "label_free_warning"]
    assert [a.metric for a in warnings] == ["positive_rate", "score"]
    rate = warnings[0]
    assert rate.value == 0.3 and rate.baseline == 0.1 and rate.n == 420
    assert rate.details["estimate"] == "estimate, not confirmed by reports"
    assert "estimate, not confirmed by reports" in rate.summary
    print(f"\n{rate.summary}")
    again, _ = m.evaluate(T0 + timedelta(days=13, hours=13))
    assert [a for a in again if a.kind == "label_free_warning"] == []


def test_label_free_level_spreads_the_budget_over_two_daily_tests() -> None:
    assert alpha_for_budget(1.0) == 1.0 / (365.25 * 2)


def test_rebuild_with_a_correction_matches_the_incremental_counts() -> None:
    m = PerformanceMonitor(REGISTRY)
    feed = Feed(m)
    outcomes = [CaseOutcome.TP, CaseOutcome.FN, CaseOutcome.TN, CaseOutcome.FP,
                CaseOutcome.PENDING, CaseOutcome.INDETERMINATE]
    for i, outcome in enumerate(outcomes * 5):
        feed(case(i, outcome, T0 + timedelta(days=i % 9, hours=i), scanner=("GE", "X")[i % 2],
                  site=("site-a", "site-b")[i % 2]))
    feed(case(0, CaseOutcome.FN, T0, scanner="GE", revision=1))
    feed(case(4, CaseOutcome.TP, T0 + timedelta(days=4, hours=4), scanner="GE", revision=1))
    rebuilt = PerformanceMonitor(REGISTRY)
    rebuilt.rebuild(feed.table.items())
    now = T0 + timedelta(days=10)
    assert sorted(rebuilt.window_keys(TOOL)) == sorted(m.window_keys(TOOL))
    for key in m.window_keys(TOOL):
        for days in (7, 30, 90):
            assert rebuilt.tool_windows(TOOL).window(key, days, now) == m.tool_windows(TOOL).window(
                key, days, now
            )
    # A correction after the rebuild finds its case.
    rebuilt.on_case(feed.table["acc0:ptx-triage"], case(0, CaseOutcome.TP, T0, scanner="GE",
                                                         revision=2))
    assert rebuilt.window(TOOL, "2.4.0", ALL_SITES, 30, now).tp == (
        m.window(TOOL, "2.4.0", ALL_SITES, 30, now).tp + 1
    )


def test_forget_tools_drops_their_state_and_naive_times_are_refused() -> None:
    m = PerformanceMonitor(REGISTRY)
    feed = Feed(m)
    feed(case(1, CaseOutcome.TP))
    m.forget_tools([TOOL])
    assert m.window_keys(TOOL) == [] and m.versions(TOOL) == []
    assert m.evaluate(T0) == ([], [])
    with pytest.raises(MonitorError, match="timezone-aware"):
        m.evaluate(datetime(2026, 3, 2))
    with pytest.raises(MonitorError, match="verdict windows"):
        PerformanceMonitor(REGISTRY, windows_days=(7, 30))


def _gauge(gauge: Any, *labels: str) -> float:
    return float(gauge.labels(*labels)._value.get())


def test_publish_sets_agreement_verdict_and_cusum_gauges() -> None:
    metrics.register_tool(TOOL, REGISTRY[TOOL].modality)  # as the worker does at startup
    m = PerformanceMonitor(REGISTRY)
    feed = Feed(m)
    _sensitivity_window(feed, tp=30, fn=10, day0=T0, fn_scanner="GE")
    _, snapshots = m.evaluate(T0)
    publish.publish(snapshots)
    publish.publish_verdicts(m.verdicts())
    publish.publish_baselines(REGISTRY)
    labels = (TOOL, "2.4.0", ALL_SITES, "sensitivity", "30d")
    assert _gauge(metrics.AGREEMENT_VALUE, *labels) == 0.75
    assert _gauge(metrics.AGREEMENT_DENOMINATOR, *labels) == 40
    assert _gauge(metrics.BELOW_BASELINE, *labels) == 1.0
    assert _gauge(metrics.BASELINE_VALUE, TOOL, "sensitivity") == 0.927
    # Site-b saw no read-negative case: its specificity is NaN (undefined), not 0.
    empty = (TOOL, "2.4.0", "site-b", "specificity", "7d")
    assert math.isnan(_gauge(metrics.AGREEMENT_VALUE, *empty))
    metrics.forget_tool(TOOL)

