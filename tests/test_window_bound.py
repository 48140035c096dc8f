"""The window calibration's exchangeability bound, against theory and an exact oracle.

- `expected_rate_bound` counts as its definition says (hand-sized examples).
- The expected false-alarm rate of calibrated thresholds is within the aim: three
  categories, the thresholds' exact rate on a fresh window of the calibration's own null
  (the posterior predictive: window size from the reference's sizes, counts
  Dirichlet-multinomial) by summing scipy's `dirichlet_multinomial` over every possible
  window, averaged over calibration seeds, at about the default tool's rate (the search
  reads the thresholds five windows into the tail). The spread between seeds is the
  order statistic's, checked against scipy's beta distribution.
- The same for a categorical feature's gated union (PSI, Jensen-Shannon, chi-square on one
  window, the detector's moved-mass gate), whose search spends the aim over three tests
  and whose bound counts up to three threshold windows. On this oracle the point estimate
  that searched before (100,000 windows, the union's simulated share within the aim) ran
  at 1.18x the aim (60 seeds, p = 0.001 that it was not above), the bound at 0.96x
  (0.87x with the fewest windows that can meet it, 63,309).
- The expected rate over calibration seeds of a single test (a numeric feature's PSI) on a
  near-discrete null (a kVp-like feature: two values and an empty bin, windows of ~90
  studies) is the order-statistic formula's, exactly: the search keeps the lowest
  simulated value with at most J - 1 simulated windows above it (J / (n + 1) <= aim, the
  bound), so a fresh window at a value v alarms when fewer than J of the n simulated
  windows are at or above v: E = sum over values v > floor of P(v) * P(Binomial(n, Q(v))
  <= J - 1), Q(v) = P(stat >= v) (scipy's beta-binomial and binomial). E is at most the
  integral J / (n + 1) (a decreasing function's right sum): ties only lower the rate.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import beta, betabinom, binom, dirichlet_multinomial, ttest_1samp

from surveillance.stats.drift_calibration import (
    GATED_AIM,
    MIN_DIVERGENCE_THRESHOLD,
    PRIOR_COUNT,
    calibrate_window_thresholds,
    resolution_floor,
    total_variation_rows,
    window_statistics,
)
from surveillance.stats.psi import psi_rows
from surveillance.stats.window_bound import (
    MAX_SIMULATED_WINDOWS,
    expected_rate_bound,
    windows_needed,
)


def test_the_bound_counts_alarms_and_one_window_at_each_threshold() -> None:
    psi = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    # 4 and 5 alarm; 3 is the threshold window: (2 + 1) / 6.
    assert expected_rate_bound({"psi": psi}, {"psi": 3.0}) == pytest.approx(3 / 6)
    # Tied at the threshold, neither of them can alarm: still m = 1 (the fresh window).
    tied = np.array([1.0, 3.0, 3.0, 4.0, 5.0])
    assert expected_rate_bound({"psi": tied}, {"psi": 3.0}) == pytest.approx(3 / 6)
    # Two tests: psi alarms on windows 3 and 4, JS on window 3; the threshold windows
    # (psi's 2, JS's 0) differ and neither alarms: m = 2.
    js = np.array([0.5, 0.1, 0.2, 0.9, 0.3])
    both = {"psi": psi, "jensen_shannon": js}
    thresholds = {"psi": 3.0, "jensen_shannon": 0.5}
    assert expected_rate_bound(both, thresholds) == pytest.approx((2 + 2) / 6)
    # A gated window neither alarms (4) nor counts at a threshold (0).
    gate = np.array([False, True, True, True, False])
    assert expected_rate_bound(both, thresholds, gate) == pytest.approx((1 + 1) / 6)
    # A threshold window that alarms on the other test is counted once, as an alarm.
    assert expected_rate_bound(both, {"psi": 4.0, "jensen_shannon": 0.5}) == (
        pytest.approx((2 + 1) / 6))


def test_windows_needed_reads_as_deep_as_before_and_can_spend_the_aim() -> None:
    # (aim, tests) -> windows at or beyond the thresholds: the default tool's numeric PSI,
    # categorical PSI and categorical union, a weekly rate, and a large one.
    for aim, tests, beyond in ((2.632548833780867e-05, 1, 2), (5.265097667561734e-05, 1, 5),
                               (0.9 * 5.265097667561734e-05, 3, 4), (1.8e-4, 3, 18),
                               (1e-3, 3, 50)):
        n = windows_needed(aim, tests)
        assert beyond / (n + 1) <= aim < beyond / n  # the fewest that spend the aim
        assert n <= MAX_SIMULATED_WINDOWS or beyond == tests
    # A rate too small for even the per-test maxima within 100,000 windows: more.
    assert windows_needed(1e-5, 3) == 299_999


REFERENCE = np.array([420.0, 250.0, 30.0])
SIZES = [22, 25, 28, 30, 33]
AIM = 5e-5


def _every_window() -> tuple[np.ndarray, np.ndarray]:
    """Every window of the calibration's null and its probability."""
    rows, probability = [], []
    alpha = REFERENCE + PRIOR_COUNT
    for n in SIZES:
        counts = np.array([(a, b, n - a - b) for a, b in itertools.product(range(n + 1), repeat=2)
                           if a + b <= n], dtype=np.float64)
        rows.append(counts)
        probability.append(dirichlet_multinomial.pmf(counts, alpha, n) / len(SIZES))
    return np.concatenate(rows), np.concatenate(probability)


def test_expected_rate_of_calibrated_thresholds_is_within_the_aim() -> None:
    windows, probability = _every_window()
    assert probability.sum() == pytest.approx(1.0)
    psi = psi_rows(REFERENCE, windows)
    rates = []
    for seed in range(60):
        threshold = calibrate_window_thresholds(
            REFERENCE, 28.0, AIM, seed=seed, tests=("psi",), window_sizes=SIZES).psi
        rates.append(float(probability[psi > threshold].sum()))
    n = windows_needed(AIM, 1)
    j = round(AIM * (n + 1))  # the threshold is the j-th largest of n
    mean = float(np.mean(rates))
    above = ttest_1samp(rates, AIM, alternative="greater").pvalue
    # The j-th largest of n is exceeded with probability Beta(j, n + 1 - j) (a continuous
    # statistic; this one is discrete, so at most that): its 95th percentile bounds most.
    high = beta.ppf(0.95, j, n + 1 - j)
    print(f"exact rate of calibrated thresholds: mean {mean:.2e} over {len(rates)} seeds "
          f"(aim {AIM:.1e}, Beta({j}, {n + 1 - j}) mean {j / (n + 1):.2e}), "
          f"p(above aim) = {above:.3g}; "
          f"{sum(r > high for r in rates)} seeds above its 95th percentile {high:.2e}")
    assert above >= 0.001
    assert sum(r > high for r in rates) <= 9  # 3 expected of 60; P(>= 10) < 0.002
    assert mean >= AIM / 10  # not vacuous: the thresholds spend the budget


def test_expected_rate_of_a_gated_union_is_within_the_aim() -> None:
    windows, probability = _every_window()
    stats = window_statistics(REFERENCE, windows)
    gate = 0.05
    moved = total_variation_rows(REFERENCE, windows) >= gate
    rate = 5.265e-5  # a categorical feature's per-window rate at the default budget
    aim = rate * GATED_AIM
    rates = []
    for seed in range(60):
        t = calibrate_window_thresholds(REFERENCE, 28.0, rate, seed=seed, window_sizes=SIZES,
                                        min_total_variation=gate)
        alarm = ((stats["psi"] > t.psi) | (stats["jensen_shannon"] > t.jensen_shannon)
                 | (stats["chi_square"] < t.chi_square_p)) & moved
        rates.append(float(probability[alarm].sum()))
    mean = float(np.mean(rates))
    above = ttest_1samp(rates, aim, alternative="greater").pvalue
    print(f"exact rate of a gated union's thresholds: mean {mean:.2e} over {len(rates)} seeds "
          f"(aim {aim:.2e}), p(above aim) = {above:.3g}")
    assert above >= 0.001
    assert mean >= aim / 10  # not vacuous


def test_expected_rate_on_a_near_discrete_null_is_the_order_statistics() -> None:
    # kVp-like: two values (one bin each) and a bin the reference never saw, daily
    # windows of 80-95 studies, a numeric feature's per-window rate (J = 2 of 75,971).
    reference = np.array([2300.0, 325.0, 0.0])
    sizes = [80, 87, 95]
    rate = 2.632548833780867e-05
    rows, probability = [], []
    for size in sizes:
        # Every window: counts (a, b, size - a - b). Dirichlet-multinomial = the first bin
        # beta-binomial, then the second beta-binomial of what is left.
        for a in range(size + 1):
            b = np.arange(size - a + 1)
            rows.append(np.column_stack([np.full(b.size, a), b, size - a - b]))
            first = betabinom.pmf(a, size, reference[0] + PRIOR_COUNT,
                                  reference[1:].sum() + 2 * PRIOR_COUNT)
            second = betabinom.pmf(b, size - a, reference[1] + PRIOR_COUNT,
                                   reference[2] + PRIOR_COUNT)
            probability.append(first * second / len(sizes))
    windows = np.concatenate(rows).astype(np.float64)
    p = np.concatenate(probability)
    assert p.sum() == pytest.approx(1.0)
    psi = psi_rows(reference, windows)
    # The order-statistic formula over the statistic's distinct values, largest first.
    n = windows_needed(rate, 1)
    j = max(k for k in range(1, 100) if k / (n + 1) <= rate)
    values, where = np.unique(psi, return_inverse=True)
    mass = np.bincount(where, weights=p)[::-1]
    at_or_above = np.cumsum(mass)
    floor = max(resolution_floor(reference, float(np.median(sizes)), "psi"),
                MIN_DIVERGENCE_THRESHOLD)
    beyond = values[::-1] > floor
    expected = float((mass * binom.cdf(j - 1, n, at_or_above))[beyond].sum())
    assert expected <= j / (n + 1) <= rate
    rates = []
    for seed in range(80):
        threshold = calibrate_window_thresholds(
            reference, 87.0, rate, seed=seed, tests=("psi",), window_sizes=sizes).psi
        rates.append(float(p[psi > threshold].sum()))
    test = ttest_1samp(rates, expected)
    low, high = test.confidence_interval(0.999)
    print(f"near-discrete null: exact expected rate {expected / rate:.3f}x the aim "
          f"(continuous: {j / (n + 1) / rate:.3f}x); calibrated over {len(rates)} seeds "
          f"{np.mean(rates) / rate:.3f}x (99.9% CI {low / rate:.3f}-{high / rate:.3f})")
    assert low <= expected <= high
    assert expected >= rate / 2  # not vacuous: the ties cost at most half the aim here
