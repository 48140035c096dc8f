"""One false-alarm budget per tool-year: the split, the charts' in-control point (Monte
Carlo against the Markov-chain design), volume re-derivation, and subgroup naming in the
monitor's alerts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import numpy as np
import pytest
from scipy import stats

from surveillance.clinical.monitor import PerformanceMonitor
from surveillance.clinical.monitor_state import ALL_SITES
from surveillance.clinical.verdicts import chart_designs
from surveillance.clinical.version_charts import VOLUME_CHANGE, VersionCharts
from surveillance.contracts import Alert, CaseOutcome
from surveillance.stats.alarm_budget import DEFAULT_BUDGET, FAMILIES, AlarmBudget
from surveillance.stats.cusum import DAYS_PER_YEAR, BernoulliCUSUM, threshold_for_arl
from tests.test_monitor import REGISTRY, T0, TOOL, Feed, case

PTX = REGISTRY[TOOL]  # sensitivity 0.927, tolerance 0.05


def test_the_default_split_adds_up_to_one_alarm_per_tool_year() -> None:
    assert sum(DEFAULT_BUDGET.per_year(f) for f in FAMILIES) == pytest.approx(1.0, abs=1e-12)
    assert DEFAULT_BUDGET.per_quarter("drift") == pytest.approx(0.25 * 91 / 365.25)
    # The union bound of a family's daily tests: share / (days a year x tests a day).
    assert DEFAULT_BUDGET.per_test_day("baseline_test", 12) == pytest.approx(
        0.1 / (365.25 * 12)
    )
    doubled = AlarmBudget(per_tool_year=2.0)
    assert doubled.per_year("cusum") == 2 * DEFAULT_BUDGET.per_year("cusum")


@pytest.mark.parametrize(
    "shares",
    [
        {"cusum": 0.5, "baseline_test": 0.1, "label_free": 0.15},  # a family missing
        {"cusum": 0.6, "baseline_test": 0.1, "label_free": 0.15, "drift": 0.25},  # 1.1
        {"cusum": 0.0, "baseline_test": 0.35, "label_free": 0.4, "drift": 0.25},  # zero share
    ],
)
def test_an_allocation_that_does_not_add_up_is_refused(shares: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="share"):
        AlarmBudget.model_validate({"shares": shares})


def test_a_tool_inside_its_tolerance_stays_within_the_charts_share() -> None:
    """Monte Carlo of the chart itself at sensitivity baseline - tolerance/2: its mean run
    length matches the Markov-chain ARL0 of the design, so the calendar false-alarm rate
    is the chart's half of the CUSUM share (and far less at the baseline)."""
    weekly = 40.0
    design = chart_designs(PTX, weekly, 360.0, DEFAULT_BUDGET.per_year("cusum"))["sensitivity"]
    p_in = 1 - (0.927 - 0.05 / 2)
    assert design.p0 == pytest.approx(p_in, abs=1e-12)
    rng = np.random.default_rng(1)
    runs = []
    for _ in range(300):
        chart = BernoulliCUSUM(design.p0, design.p1, design.h)
        misses = rng.random(50_000) < p_in
        n = 0
        while True:
            chunk = misses[n:n + 5000] if n + 5000 <= misses.size else rng.random(5000) < p_in
            hit = next((i for i, x in enumerate(chunk) if chart.update(bool(x)).drift_detected),
                       None)
            if hit is not None:
                runs.append(n + hit + 1)
                break
            n += chunk.size
    mean, sem = float(np.mean(runs)), float(stats.sem(runs))
    assert abs(mean - design.arl0_cases) < 4 * sem
    per_year = weekly * DAYS_PER_YEAR / 7 / design.arl0_cases
    assert per_year <= DEFAULT_BUDGET.per_year("cusum") / 2 + 1e-12


def _reference_and_period(c: VersionCharts, weekly_positives: int, start_day: int) -> None:
    for i in range(weekly_positives):
        at = T0 + timedelta(days=start_day, hours=i * 168 / weekly_positives)
        c.update(f"p{start_day}-{i}", None, CaseOutcome.TP, at)


def test_a_volume_change_re_derives_the_threshold_and_keeps_the_calendar_budget() -> None:
    c = VersionCharts(PTX, reference_days=7, grace_days=0, settle_days=0,
                      false_alarms_per_year=0.5)
    _reference_and_period(c, 14, 0)  # reference week: 14 read-positives
    _reference_and_period(c, 14, 7)  # the charts are designed; a week at the same volume
    assert c.charts is not None
    chart = c.charts["sensitivity"]
    before = chart.design
    assert before.weekly_volume == 14.0 and chart.redesigns == 0
    _reference_and_period(c, 30, 14)  # +114%: beyond VOLUME_CHANGE
    c.update("next", None, CaseOutcome.TP, T0 + timedelta(days=21, hours=1))
    assert VOLUME_CHANGE < 30 / 14 - 1
    assert chart.redesigns == 1 and chart.design.weekly_volume == 30.0
    target = 30 * DAYS_PER_YEAR / 7 * 2 / 0.5  # two charts share 0.5 a year
    assert chart.design.h == threshold_for_arl(before.p0, before.p1, target)
    assert chart.cusum.h == chart.design.h
    # The same calendar run length at the new volume: a false alarm every 4 years a chart.
    assert chart.design.arl0_days >= 4 * DAYS_PER_YEAR
    assert chart.design.arl0_days == pytest.approx(before.arl0_days, rel=0.1)
    # A change within VOLUME_CHANGE keeps the threshold.
    _reference_and_period(c, 33, 21)
    c.update("later", None, CaseOutcome.TP, T0 + timedelta(days=28, hours=1))
    assert chart.redesigns == 1


def _deviations(missed: Callable[[str, int], bool]) -> list[Alert]:
    """Baseline-deviation alerts after 40 read-positives at each of three sites over 10
    days (case i of a site read on scanner GE when i is even, else Carestream), missed
    where `missed(site, i)`, and 200 read-negatives."""
    m = PerformanceMonitor(REGISTRY)
    feed = Feed(m)
    n = 0
    for site in ("site-a", "site-b", "site-c"):
        for i in range(40):
            outcome = CaseOutcome.FN if missed(site, i) else CaseOutcome.TP
            feed(case(n, outcome, T0 - timedelta(hours=6 * i + 1), site=site,
                      scanner=("GE", "Carestream Health")[i % 2]))
            n += 1
    for i in range(200):
        feed(case(n, CaseOutcome.TN, T0 - timedelta(hours=i + 1)))
        n += 1
    alerts, _ = m.evaluate(T0)
    return [a for a in alerts if a.kind == "baseline_deviation"]


def test_a_uniform_drop_names_no_subgroup() -> None:
    # 14 of 40 missed at every site, on both scanners alike.
    uniform = _deviations(lambda site, i: i < 14)
    assert uniform and all(a.subgroup is None for a in uniform)
    assert all("no site, scanner, sex or age band stands out" in a.summary for a in uniform)


def test_a_drop_on_one_scanner_names_the_scanner() -> None:
    # 10 of the 20 GE studies missed at every site: each site's 30/40 is not enough for an
    # alert at the budgeted level, the pooled 90/120 is, and the misses are all on GE.
    alerts = _deviations(lambda site, i: i % 2 == 0 and i < 20)
    assert [a.site for a in alerts] == [ALL_SITES]
    assert alerts[0].subgroup == {"scanner_manufacturer": "GE"}
    assert "concentrated in scanner GE" in alerts[0].summary


def test_a_drop_at_one_site_is_alerted_at_that_site() -> None:
    alerts = _deviations(lambda site, i: site == "site-b" and i < 26)
    assert [a.site for a in alerts] == ["site-b"]
    # Within the site both scanners lost alike: no subgroup is named there.
    assert alerts[0].subgroup is None


def test_the_expected_delay_adds_settling_and_the_observed_report_lag() -> None:
    """Reports come 2 days after the AI call and settle 7 days before they feed a chart:
    the alert's expected delay is the chart's ARL1 in days plus both."""
    m = PerformanceMonitor(REGISTRY, reference_days=7, reference_grace_days=0, settle_days=7)
    feed = Feed(m)
    lag = timedelta(days=2)
    for hour in range(24 * 40):
        at = T0 + timedelta(hours=hour)
        # A read-positive every 4 hours (all missed after day 20), read-negatives between.
        outcome = CaseOutcome.FN if hour >= 24 * 20 else CaseOutcome.TP
        feed(case(hour, outcome if hour % 4 == 0 else CaseOutcome.TN, at, labelled_after=lag))
    signals = [a for a in feed.alerts if a.kind == "cusum_signal"]
    assert signals, "no CUSUM signal"
    design = m.chart_design(TOOL, "2.4.0", "sensitivity")
    assert design is not None
    details = signals[0].details
    assert details["report_lag_days"] == 2.0 and details["settle_days"] == 7
    assert details["expected_detection_days"] == pytest.approx(design.arl1_days + 7 + 2.0)
    assert f"{design.arl1_days + 9:.0f} days (chart {design.arl1_days:.0f}, settling 7, " \
        "report lag 2.0)" in signals[0].summary
    # The tuned drop (further below the acceptance limit) is detected sooner, and the
    # alert says so beside the acceptance-limit delay.
    assert details["tuned_drop_level"] < 1.0 - design.p_detect
    assert details["tuned_drop_detection_days"] < details["expected_detection_days"]
    assert f"the drop the chart is tuned for: {details['tuned_drop_detection_days']:.0f} days" \
        in signals[0].summary
    assert details["family"] == "cusum"
    assert details["family_false_alarms_per_year"] == DEFAULT_BUDGET.per_year("cusum")


def test_an_alert_of_a_tool_at_forty_sites_with_long_names_is_raised() -> None:
    """Forty sites named as hospitals name them: the all-sites CUSUM alert lists the five
    lowest sites, and its text stays within the Alert contract's 1,000 characters (listing
    every site raised a ValidationError inside the monitor)."""
    m = PerformanceMonitor(REGISTRY, reference_days=7, reference_grace_days=0, settle_days=7)
    feed = Feed(m)
    sites = [f"Main Campus Outpatient Imaging Center Building {i:02d}" for i in range(40)]
    for hour in range(24 * 40):
        at = T0 + timedelta(hours=hour)
        outcome = CaseOutcome.FN if hour >= 24 * 20 else CaseOutcome.TP
        feed(case(hour, outcome if hour % 4 == 0 else CaseOutcome.TN, at,
                  site=sites[hour % 40]))
    signals = [a for a in feed.alerts if a.kind == "cusum_signal"]
    assert signals, "no CUSUM signal"
    assert "; by site, the 5 lowest of 40: " in signals[0].summary
    assert signals[0].summary.count("Main Campus Outpatient Imaging Center Building") == 5
    assert all(len(a.summary) <= 1000 for a in feed.alerts)
