"""Alert burden: flags per day and shift, PPV beside prevalence, the fatigue trend.

Oracles: statsmodels (Wilson interval, OLS slope interval); the simulator's stable stream
(its PPV must match the registry's operating point and prevalence by Bayes' rule).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
import statsmodels.api as sm
from statsmodels.stats.proportion import proportion_confint

from surveillance.clinical.alert_burden import (
    Flag,
    burden,
    fatigue_trend,
    flags_and_prevalence,
    shift_of,
)
from surveillance.clinical.baselines import load_registry
from surveillance.contracts import AIResult, ReportFinal
from surveillance.simulate import simulate
from surveillance.simulate.profiles import TOOL_PROFILES
from surveillance.stats.intervals import StatsParameterError

REGISTRY = load_registry()
START = date(2026, 7, 6)  # a Monday


@pytest.mark.parametrize(("hour", "shift"), [(0, "night"), (6, "night"), (7, "day"),
                                             (14, "day"), (15, "evening"), (22, "evening"),
                                             (23, "night")])
def test_shift_boundaries(hour: int, shift: str) -> None:
    assert shift_of(datetime(2026, 7, 6, hour, 59, tzinfo=UTC)) == shift


def _rising_flags(seed: int, growth: float) -> list[Flag]:
    """Six weeks of flags at site-a: 3 true a day, false ones 2/day growing by `growth`/week."""
    rng = np.random.default_rng(seed)
    flags = []
    for day in range(42):
        t0 = datetime(2026, 7, 6, tzinfo=UTC) + timedelta(days=day)
        for present, rate in ((True, 3.0), (False, 2.0 + growth * day / 7)):
            for _ in range(int(rng.poisson(rate))):
                at = t0 + timedelta(hours=float(rng.uniform(0, 24)))
                flags.append(Flag("ich-triage", "site-a", at, present))
    return flags


def test_fatigue_trend_slope_and_interval_equal_ols() -> None:
    flags = _rising_flags(3, 1.0)
    trend = fatigue_trend(flags, "ich-triage", "site-a", START, 6)
    weekly = np.zeros(6)
    for f in flags:
        if f.present is False:
            weekly[(f.at.date() - START).days // 7] += 1
    fit = sm.OLS(weekly / 7, sm.add_constant(np.arange(6))).fit()
    low, high = fit.conf_int(0.05)[1]
    assert trend.slope == pytest.approx(fit.params[1], rel=1e-9)
    assert (trend.lower, trend.upper) == pytest.approx((low, high), rel=1e-9)
    assert trend.building


def test_no_fatigue_when_false_flags_are_steady() -> None:
    trend = fatigue_trend(_rising_flags(4, 0.0), "ich-triage", "site-a", START, 6)
    assert trend.lower < 0 < trend.upper and not trend.building
    with pytest.raises(StatsParameterError, match="3 weeks"):
        fatigue_trend([], "ich-triage", "site-a", START, 2)


def test_burden_counts_shifts_and_ppv_with_wilson_interval() -> None:
    flags = _rising_flags(5, 0.0)
    b = burden(flags, {("ich-triage", "site-a"): (30, 400)}, "ich-triage", "site-a", START,
               START + timedelta(days=42))
    true = sum(1 for f in flags if f.present)
    assert b.flags == len(flags) and b.flags_per_day == pytest.approx(len(flags) / 42)
    assert sum(b.flags_per_shift.values()) == pytest.approx(b.flags_per_day)
    assert b.ppv == pytest.approx(true / len(flags))
    assert (b.ppv_lower, b.ppv_upper) == pytest.approx(
        proportion_confint(true, len(flags), method="wilson"), rel=1e-9)
    assert b.false_positive_share == pytest.approx(1 - true / len(flags))
    assert b.prevalence == pytest.approx(30 / 400)


def test_simulated_ppv_matches_bayes_rule_at_the_operating_point() -> None:
    events, _ = simulate(days=60, tools=["ptx-triage"])
    results = [AIResult.model_validate_json(e.value) for e in events if e.topic == "ai.results"]
    reports = [ReportFinal.model_validate_json(e.value) for e in events
               if e.topic == "reports.final"]
    tool = REGISTRY["ptx-triage"]
    flags, prevalence = flags_and_prevalence(results, reports, {"ptx-triage": tool.finding_code})
    sens, spec = tool.baseline.sensitivity.value, tool.baseline.specificity.value
    prev = TOOL_PROFILES["ptx-triage"].prevalence
    expected = sens * prev / (sens * prev + (1 - spec) * (1 - prev))
    for site in ("site-a", "site-b", "site-c"):
        b = burden(flags, prevalence, "ptx-triage", site, date(2026, 7, 1), date(2026, 8, 30))
        print(f"{site}: {b.flags_per_day:.1f} flags/day, PPV {b.ppv:.3f} "
              f"[{b.ppv_lower:.3f}, {b.ppv_upper:.3f}] vs {expected:.3f}, "
              f"prevalence {b.prevalence:.3f}")
        assert b.ppv_lower <= expected <= b.ppv_upper
        trend = fatigue_trend(flags, "ptx-triage", site, date(2026, 7, 6), 7)
        assert not trend.building
