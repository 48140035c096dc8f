"""Two-sided CUSUM on a mean: run lengths against the published table and simulation.

Oracle: Montgomery, Introduction to Statistical Quality Control (6th ed., Table 9.3),
two-sided tabular CUSUM with k = 1/2: ARL 168 (h = 4) and 465 (h = 5) in control, 8.38
and 10.4 for a one-sigma shift.
"""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

from surveillance.stats import mean_cusum
from surveillance.stats.intervals import StatsParameterError
from surveillance.stats.mean_cusum import MeanShiftCUSUM, threshold_for_arl, two_sided_arl


@pytest.mark.parametrize(
    ("h", "shift", "published"), [(4, 0.0, 168), (5, 0.0, 465), (4, 1.0, 8.38), (5, 1.0, 10.4)]
)
def test_arl_matches_montgomerys_table(h: float, shift: float, published: float) -> None:
    assert two_sided_arl(h, 0.5, shift) == pytest.approx(published, rel=0.02)


def test_threshold_inverts_the_arl() -> None:
    h = threshold_for_arl(465.0)
    assert two_sided_arl(h, 0.5) == pytest.approx(465.0, rel=1e-9)
    assert h == pytest.approx(5.0, abs=0.02)


def _run_lengths(h: float, shift: float, reps: int, seed: int) -> np.ndarray:
    """Run lengths of the chart itself on standard normal data with mean `shift`."""
    rng = np.random.default_rng(seed)
    lengths = np.empty(reps)
    for r in range(reps):
        chart = MeanShiftCUSUM(mean=0.0, sd=1.0, h=h)
        n = 0
        while True:
            for x in rng.normal(shift, 1.0, 256).tolist():
                n += 1
                if chart.update(x).drift_detected:
                    break
            else:
                continue
            break
        lengths[r] = n
    return lengths


def test_simulated_in_control_run_length_matches_the_table() -> None:
    lengths = _run_lengths(4.0, 0.0, 600, seed=1)
    mean, se = lengths.mean(), lengths.std(ddof=1) / math.sqrt(lengths.size)
    print(f"simulated ARL0 {mean:.1f} +/- {se:.1f} (table 168)")
    assert abs(mean - 168.0) < 4 * se


def test_simulated_detection_delay_matches_the_table() -> None:
    lengths = _run_lengths(4.0, 1.0, 2000, seed=2)
    mean, se = lengths.mean(), lengths.std(ddof=1) / math.sqrt(lengths.size)
    assert abs(mean - 8.38) < 4 * se


def test_chart_reports_direction_and_restarts_after_a_signal() -> None:
    chart = MeanShiftCUSUM(mean=10.0, sd=2.0, h=3.0)
    for _ in range(5):
        chart.update(10.0)
    assert chart.statistic == 0.0
    chart.update(6.0).update(6.0)  # z = -2 twice: 1.5, then 3.0 on the lower chart
    assert chart.drift_detected
    assert chart.direction == "down"
    assert chart.change_point == 5
    chart.update(10.0)
    assert not chart.drift_detected
    assert chart.n_cases == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mean": 0.0, "sd": 0.0, "h": 4.0}, "sd > 0"),
        ({"mean": math.nan, "sd": 1.0, "h": 4.0}, "finite"),
        ({"mean": 0.0, "sd": 1.0, "h": 0.0}, "h must be > 0"),
        ({"mean": 0.0, "sd": 1.0, "h": 4.0, "k": -1.0}, "k must be > 0"),
    ],
)
def test_bad_parameters_raise(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(StatsParameterError, match=message):
        MeanShiftCUSUM(**kwargs)


def test_non_finite_observation_raises() -> None:
    with pytest.raises(StatsParameterError, match="finite"):
        MeanShiftCUSUM(mean=0.0, sd=1.0, h=4.0).update(math.inf)
    with pytest.raises(StatsParameterError, match="target ARL"):
        threshold_for_arl(1.0)


def test_doctest() -> None:
    assert doctest.testmod(mean_cusum).failed == 0
