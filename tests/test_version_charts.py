"""The CUSUM pair of one version: report-time reference period, settling, one signal per episode."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from surveillance.clinical.baselines import load_registry
from surveillance.clinical.version_charts import VersionCharts
from surveillance.contracts import CaseOutcome
from surveillance.stats.cusum import threshold_for_arl

PTX = load_registry()["ptx-triage"]
T0 = datetime(2026, 3, 2, tzinfo=UTC)
TP, FN, TN = CaseOutcome.TP, CaseOutcome.FN, CaseOutcome.TN


def charts(settle: int = 0, grace: int = 0) -> VersionCharts:
    return VersionCharts(PTX, reference_days=7, grace_days=grace, settle_days=settle,
                         false_alarms_per_year=1.0)


def test_reference_volume_counts_late_reports_of_its_period_in_any_arrival_order() -> None:
    c = charts(grace=2)
    # 14 read-positives and 70 read-negatives reported over days 0..6, fed newest first
    # (a scrambled replay); one report from day 8 arrived before all of them.
    c.update("late", None, TP, T0 + timedelta(days=8))
    for i in reversed(range(84)):
        c.update(f"c{i}", None, TP if i < 14 else TN, T0 + timedelta(hours=2 * i))
    assert c.charts is None  # the period ended on day 7; the grace runs to day 9
    c.update("trigger", None, TN, T0 + timedelta(days=9))
    assert c.reference_start == T0
    assert c.reference_counts == {"sensitivity": 14, "specificity": 70}
    assert c.charts is not None
    design = c.charts["sensitivity"].design
    assert design.weekly_volume == 14.0
    # Its threshold is the one a 2-chart, 1-per-year budget gives at 14 positives a week,
    # in control at baseline - tolerance/2 and tuned for baseline - 3 tolerance/2.
    target = 14 * 365.25 / 7 * 2
    assert design.h == threshold_for_arl(1 - (0.927 - 0.025), 1 - (0.927 - 0.075), target)
    # The day-8 and day-9 reports were fed after the design, in report-time order.
    assert c.charts["sensitivity"].cusum.n_cases == 1
    assert c.charts["specificity"].cusum.n_cases == 1


def _designed(settle: int) -> VersionCharts:
    c = charts(settle=settle)
    for i in range(7 * 24):
        c.update(f"r{i}", None, TP if i % 4 == 0 else TN, T0 + timedelta(hours=i))
    # The charts are designed when a report from the period's end has settled.
    c.update("end", None, TN, T0 + timedelta(days=7))
    c.update("tick", None, TN, T0 + timedelta(days=7 + settle))
    assert c.charts is not None
    return c


def test_a_misread_corrected_while_settling_feeds_its_corrected_label() -> None:
    c = _designed(settle=3)
    at = T0 + timedelta(days=8)
    c.update("x", None, FN, at)  # original report: finding present, AI negative: a miss
    c.update("x", FN, TN, at + timedelta(days=1))  # corrected: no finding
    chart = c.charts["sensitivity"] if c.charts else None
    assert chart is not None and chart.cusum.n_cases == 0
    c.update("y", None, TN, at + timedelta(days=3, hours=1))  # clock passes x's settling
    assert chart.cusum.n_cases == 0  # x now counts as a read-negative, not a miss
    assert c.charts is not None and c.charts["specificity"].cusum.n_cases >= 1
    # A correction after release changes nothing here.
    c.update("x", TN, FN, at + timedelta(days=5))
    assert chart.cusum.n_cases == 0


def test_one_signal_per_episode_and_a_restart_after_close() -> None:
    c = _designed(settle=0)
    assert c.charts is not None
    chart = c.charts["sensitivity"]
    step = math.log(chart.design.p1 / chart.design.p0)
    needed = math.ceil(chart.design.h / step)
    start = T0 + timedelta(days=8)
    signals = []
    for i in range(needed + 20):
        signals += c.update(f"m{i}", None, FN, start + timedelta(hours=i))
    assert len(signals) == 1
    (signal,) = signals
    assert signal.since == start and signal.at == start + timedelta(hours=needed - 1)
    assert chart.signalled_at == signal.at and chart.signals == 1
    c.close("sensitivity")
    assert chart.signalled_at is None and chart.cusum.n_cases == 0
    again = []
    for i in range(needed):
        again += c.update(f"n{i}", None, FN, start + timedelta(days=2, hours=i))
    assert [s.chart.signals for s in again] == [2]
