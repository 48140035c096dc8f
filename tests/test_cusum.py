"""Bernoulli CUSUM: run lengths against theory and simulation, detection delay, false alarms.

Run with `-s` to see measured run lengths printed next to the computed ones.
"""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from scipy.stats import poisson

from surveillance.stats import cusum
from surveillance.stats.cusum import (
    BernoulliCUSUM,
    average_run_length,
    cases_per_false_alarm,
    design_chart,
    lattice,
    threshold_for_arl,
)
from surveillance.stats.intervals import StatsParameterError

SENS_P0, SENS_P1 = 0.08, 0.18  # miss rate: sensitivity 0.92 in control, 0.82 after a drop
SPEC_P0, SPEC_P1 = 0.05, 0.10  # false-positive rate: specificity 0.95 -> 0.90
WEEKLY_POSITIVES, WEEKLY_NEGATIVES = 40, 360


def run_length(chart: BernoulliCUSUM, rng: np.random.Generator, p: float) -> int:
    """Feed the chart cases failing with probability p until it signals; cases used."""
    used = 0
    while True:
        for failure in (rng.random(2048) < p).tolist():
            used += 1
            if chart.update(failure).drift_detected:
                return used


# --- the Markov-chain ARL against exact theory ------------------------------------------


def test_threshold_within_one_failure_gives_geometric_run_length() -> None:
    # If one failure from zero crosses h, the run length is Geometric(p): ARL = 1/p.
    grid = lattice(SENS_P0, SENS_P1)
    h = grid.up * grid.step
    for p in (SENS_P0, SENS_P1, 0.5):
        assert average_run_length(SENS_P0, SENS_P1, h, p) == pytest.approx(1 / p, rel=1e-12)


@pytest.mark.parametrize(("steps", "expected"), [(2, 1.4 / 0.16), (3, 3.3 / 0.16)])
def test_symmetric_chart_is_a_reflected_random_walk_solved_by_hand(
    steps: int, expected: float
) -> None:
    # p0 = 0.4, p1 = 0.6 gives reference value exactly 1/2: a failure is +1 step, a success
    # -1 (floored at 0). With p = 0.4, q = 0.6, first-step equations give
    # H=2: L0 = (1+p)/p^2 = 1.4/0.16;  H=3: L0 = (1 + p + (1-pq)/p) / (1 - q - pq) = 3.3/0.16.
    grid = lattice(0.4, 0.6)
    assert (grid.up, grid.down) == (1, 1)
    arl = average_run_length(0.4, 0.6, steps * grid.step, 0.4)
    assert arl == pytest.approx(expected, rel=1e-12)


def test_threshold_for_arl_is_the_smallest_lattice_threshold_meeting_the_target() -> None:
    grid = lattice(SENS_P0, SENS_P1)
    h = threshold_for_arl(SENS_P0, SENS_P1, 1500)
    assert average_run_length(SENS_P0, SENS_P1, h, SENS_P0) >= 1500
    assert average_run_length(SENS_P0, SENS_P1, h - grid.step, SENS_P0) < 1500


# --- (a) in-control run lengths: Markov chain against simulation ---------------------------


def test_markov_arl0_against_brute_force_simulation_of_the_lattice_chart() -> None:
    # 20,000 independent in-control runs of S = max(0, S + up*x - down*(1-x)), vectorized.
    grid = lattice(SENS_P0, SENS_P1)
    h = threshold_for_arl(SENS_P0, SENS_P1, 200)
    limit = math.ceil(h / grid.step - 1e-9)
    markov = average_run_length(SENS_P0, SENS_P1, h, SENS_P0)
    rng = np.random.default_rng(20240601)
    runs = 20_000
    s = np.zeros(runs, dtype=np.int64)
    lengths = np.zeros(runs, dtype=np.int64)
    active = np.ones(runs, dtype=bool)
    t = 0
    while active.any():
        t += 1
        fail = rng.random(runs) < SENS_P0
        s = np.where(fail, s + grid.up, np.maximum(s - grid.down, 0))
        crossed = active & (s >= limit)
        lengths[crossed] = t
        active &= ~crossed
    mean = lengths.mean()
    se = lengths.std(ddof=1) / math.sqrt(runs)
    print(f"\nARL0 Markov {markov:.1f} cases; simulated {mean:.1f} +/- {se:.1f} (20000 runs)")
    assert abs(mean - markov) < 4 * se


def test_chart_class_in_control_run_length_is_within_15_percent_of_markov_arl0() -> None:
    h = threshold_for_arl(SENS_P0, SENS_P1, 1000)
    markov = average_run_length(SENS_P0, SENS_P1, h, SENS_P0)
    chart = BernoulliCUSUM(SENS_P0, SENS_P1, h)
    rng = np.random.default_rng(7)
    lengths = [run_length(chart, rng, SENS_P0) for _ in range(500)]
    mean = float(np.mean(lengths))
    print(f"\nARL0 Markov {markov:.1f} cases; BernoulliCUSUM mean over 500 runs {mean:.1f}")
    assert abs(mean - markov) <= 0.15 * markov


def test_chart_statistic_is_the_log_likelihood_ratio_cusum() -> None:
    # The lattice chart tracks the textbook recursion with exact LLR weights. They differ
    # only by the rounded reference value: each case's weight is off by |g - a/m| * D, and
    # max(0, .) does not widen a gap, so after t cases they are at most t times that apart.
    chart = BernoulliCUSUM(SENS_P0, SENS_P1, h=1e9)
    w1, w0 = math.log(SENS_P1 / SENS_P0), math.log((1 - SENS_P1) / (1 - SENS_P0))
    grid = lattice(SENS_P0, SENS_P1)
    per_case = abs(-w0 / (w1 - w0) - grid.down / (grid.up + grid.down)) * (w1 - w0)
    assert per_case < 1e-5
    rng = np.random.default_rng(3)
    s = 0.0
    for t, failure in enumerate((rng.random(5000) < SENS_P0).tolist(), start=1):
        s = max(0.0, s + (w1 if failure else w0))
        assert abs(chart.update(failure).statistic - s) <= t * per_case + 1e-9
    assert chart.n_cases == 5000


# --- (b) detection delay of a sensitivity drop 0.92 -> 0.82 at 40 positives a week --------


def test_sensitivity_drop_is_flagged_within_computed_delay() -> None:
    design = design_chart(SENS_P0, SENS_P1, weekly_volume=WEEKLY_POSITIVES)
    rng = np.random.default_rng(11)
    zero_start, after_warm_up = [], []
    for _ in range(500):
        chart = BernoulliCUSUM(SENS_P0, SENS_P1, design.h)
        zero_start.append(run_length(chart, rng, SENS_P1))
        chart = BernoulliCUSUM(SENS_P0, SENS_P1, design.h)
        for failure in (rng.random(500) < SENS_P0).tolist():  # 500 in-control cases first
            chart.update(failure)
        after_warm_up.append(run_length(chart, rng, SENS_P1))
    zero_mean, warm_mean = float(np.mean(zero_start)), float(np.mean(after_warm_up))
    print(
        f"\nthreshold h={design.h:.3f}; ARL0 {design.arl0_cases:.0f} cases "
        f"({design.arl0_days:.0f} days); computed ARL1 {design.arl1_cases:.1f} cases "
        f"({design.arl1_days:.1f} days); measured delay from zero {zero_mean:.1f}, "
        f"after 500 in-control cases {warm_mean:.1f} (500 runs each)"
    )
    assert warm_mean <= 1.5 * design.arl1_cases
    assert abs(zero_mean - design.arl1_cases) <= 0.15 * design.arl1_cases
    assert design.arl1_days == pytest.approx(design.arl1_cases / (WEEKLY_POSITIVES / 7))


# --- (c) 20 stable tool-years, and the same streams with a silent drop ---------------------


def test_twenty_tool_years_false_alarms_and_injected_drops() -> None:
    sens = design_chart(SENS_P0, SENS_P1, WEEKLY_POSITIVES)  # budget: 1 alarm/tool/year,
    spec = design_chart(SPEC_P0, SPEC_P1, WEEKLY_NEGATIVES)  # shared by the two charts
    positives_per_year = round(WEEKLY_POSITIVES * 365.25 / 7)
    negatives_per_year = round(WEEKLY_NEGATIVES * 365.25 / 7)
    drop_at = positives_per_year // 2  # the drop starts mid-year, unannounced
    rng = np.random.default_rng(2024)
    false_alarms = 0
    flagged_after_drop = 0
    for _ in range(20):
        u_pos = rng.random(positives_per_year).tolist()
        u_neg = rng.random(negatives_per_year).tolist()
        stable_sens = BernoulliCUSUM(SENS_P0, SENS_P1, sens.h)
        stable_spec = BernoulliCUSUM(SPEC_P0, SPEC_P1, spec.h)
        false_alarms += sum(stable_sens.update(u < SENS_P0).drift_detected for u in u_pos)
        false_alarms += sum(stable_spec.update(u < SPEC_P0).drift_detected for u in u_neg)
        dropped = BernoulliCUSUM(SENS_P0, SENS_P1, sens.h)
        signals = [
            i
            for i, u in enumerate(u_pos)
            if dropped.update(u < (SENS_P0 if i < drop_at else SENS_P1)).drift_detected
        ]
        flagged_after_drop += any(i >= drop_at for i in signals)
    # Each chart restarts after an alarm, so its alarms are a renewal process with mean gap
    # ARL0; the CUSUM run length is close to geometric, so the count in 20 tool-years is
    # close to Poisson with mean 20 * (positives/ARL0_sens + negatives/ARL0_spec) <= 20
    # (each ARL0 is at least two years of that chart's cases). Allowed: the 99.9% Poisson
    # quantile of that mean. The lower bound guards against a threshold set needlessly high.
    expected = 20 * (positives_per_year / sens.arl0_cases + negatives_per_year / spec.arl0_cases)
    allowed = int(poisson.ppf(0.999, expected))
    print(
        f"\n20 tool-years: {false_alarms} false alarms (expected {expected:.1f}, allowed "
        f"{allowed}); drop flagged in {flagged_after_drop}/20 streams; sensitivity ARL1 "
        f"{sens.arl1_cases:.0f} cases ({sens.arl1_days:.0f} days)"
    )
    assert expected <= 20.0
    assert false_alarms <= allowed
    assert false_alarms >= poisson.ppf(0.001, expected)
    assert flagged_after_drop == 20


# --- calendar targets and (d) bad parameters ----------------------------------------------


def test_calendar_target_shares_the_yearly_budget_between_the_charts() -> None:
    assert cases_per_false_alarm(40) == pytest.approx(40 * 365.25 / 7 * 2)
    assert cases_per_false_alarm(40, false_alarms_per_year=4, charts_per_tool=1) == (
        pytest.approx(40 * 365.25 / 7 / 4)
    )


def test_chart_restarts_after_a_signal() -> None:
    grid = lattice(SENS_P0, SENS_P1)
    chart = BernoulliCUSUM(SENS_P0, SENS_P1, h=grid.up * grid.step)  # one miss signals
    assert chart.update(True).drift_detected
    assert not chart.update(False).drift_detected
    assert (chart.n_cases, chart.statistic) == (1, 0.0)


@pytest.mark.parametrize(
    "call",
    [
        lambda: BernoulliCUSUM(0.18, 0.08, 3.0),
        lambda: BernoulliCUSUM(0.0, 0.08, 3.0),
        lambda: BernoulliCUSUM(0.08, 1.0, 3.0),
        lambda: BernoulliCUSUM(0.08, 0.18, 0.0),
        lambda: BernoulliCUSUM(0.08, 0.18, 3.0, max_denominator=1),
        lambda: BernoulliCUSUM(1e-6, 2e-6, 3.0),  # lattice too coarse for this rate
        lambda: threshold_for_arl(0.08, 0.18, 1.0),
        lambda: average_run_length(0.08, 0.18, 3.0, 1.0),
        lambda: average_run_length(0.08, 0.18, -1.0, 0.08),
        lambda: cases_per_false_alarm(0),
        lambda: cases_per_false_alarm(40, false_alarms_per_year=0),
        lambda: cases_per_false_alarm(40, charts_per_tool=0),
    ],
)
def test_bad_parameters_raise_value_error(call: object) -> None:
    assert callable(call)
    with pytest.raises(ValueError):
        call()
    with pytest.raises(StatsParameterError):
        call()


def test_docstring_example_pins_the_detection_index() -> None:
    result = doctest.testmod(cusum)
    assert result.attempted == 5
    assert result.failed == 0
