"""Cost per study and per true-positive flag, and reading time brought forward."""

from __future__ import annotations

import pytest

from surveillance.clinical.baselines import load_registry
from surveillance.clinical.tool_value import tool_value
from surveillance.stats.intervals import StatsParameterError
from surveillance.stats.median_difference import MedianDifference


def test_figures_follow_from_the_counts() -> None:
    # 91 days of a 36 525-per-year tool cost exactly 9 100.
    turnaround = MedianDifference(500, 20, 120.0, 240.0, -120.0, -200.0, -30.0)
    v = tool_value(36_525.0, "USD", 91, 4_550, 455, turnaround)
    assert v.period_cost == pytest.approx(9_100.0)
    assert v.cost_per_study == pytest.approx(2.0)
    assert v.cost_per_true_positive == pytest.approx(20.0)
    assert v.hours_brought_forward == pytest.approx(120.0 * 455 / 60)
    assert (v.hours_lower, v.hours_upper) == pytest.approx((30.0 * 455 / 60, 200.0 * 455 / 60))


def test_no_studies_or_no_turnaround_give_none_not_a_division_by_zero() -> None:
    v = tool_value(10_000.0, "EUR", 30, 0, 0, None)
    assert (v.cost_per_study, v.cost_per_true_positive, v.hours_brought_forward) == (
        None, None, None)
    assert v.currency == "EUR"
    with pytest.raises(StatsParameterError, match="positive cost"):
        tool_value(0.0, "USD", 30, 10, 1, None)


def test_every_simulated_triage_tool_has_a_configured_cost() -> None:
    registry = load_registry()
    assert all(t.annual_cost is not None and t.annual_cost > 0 for t in registry.values())
