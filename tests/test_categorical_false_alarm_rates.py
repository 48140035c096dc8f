"""A categorical feature's window thresholds keep its false-alarm budget across shapes.

What is promised: over a fleet of stable tools, each calibrated on its own reference, the
expected share of daily windows that the detector raises on is at most the feature's
per-window rate. The detector's rules count: windows under `min_window_events` are not
tested, and a window whose moved mass (total variation) is below `min_total_variation`
does not cross.

Oracles (independent of the calibration's sampler and seeds):
- Monte Carlo across shapes (2, 3, 5, 10, 20 categories, unequal, rare): many references,
  each calibrated as the bank does (with the never-seen pseudo-category), judged on
  fresh windows drawn from the truth with another generator. The windows of one
  reference share its luck (at these sizes one reference's own rate ranges ~0.1-1.6x the
  budget), so they are not independent trials and a binomial test over pooled windows
  overstates the evidence; the per-reference shares are the independent trials, and a
  one-sided t-test (scipy.stats.ttest_1samp) checks that their mean is not above budget.
- Exact, two categories: the fleet's rate as a sum over every reference count and every
  window (size, count) with scipy's binomial and Poisson probabilities; no sampling noise
  beyond the calibration's own.

About 15 s of CPU in all (44 s of wall time under a load average of 12).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom, chi2_contingency, poisson, ttest_1samp

from surveillance.stats.categorical_drift import WindowedDistributionTest, WindowThresholds
from surveillance.stats.drift_calibration import (
    calibrate_window_thresholds,
    total_variation_rows,
    window_statistics,
)
from surveillance.stats.drift_features import DriftBankConfig
from surveillance.stats.psi import FloatArray

CONFIG = DriftBankConfig()
#: A daily window's per-feature rate at the default budget with two features.
RATE = 1 / 2 / 91
PER_WINDOW = 60.0
REFERENCE_EVENTS = 1800  # 30 days at 60 a day
SHAPES = {
    "two, 93/7": [0.93, 0.07],
    "two, even": [0.5, 0.5],
    "three": [1 / 3] * 3,
    "five": [0.2] * 5,
    "ten": [0.1] * 10,
    "twenty": [0.05] * 20,
    "unequal": [0.5, 0.2, 0.1, 0.08, 0.05, 0.04, 0.02, 0.01],
    "rare": [0.62, 0.25, 0.1, 0.025, 0.005],
}


def _raised(reference: FloatArray, windows: FloatArray, t: WindowThresholds) -> FloatArray:
    """1.0 where the detector would cross on the window (rows), else 0.0."""
    stats = window_statistics(reference, windows)
    crossed = (
        (stats["psi"] > t.psi)
        | (stats["jensen_shannon"] > t.jensen_shannon)
        | (stats["chi_square"] < t.chi_square_p)
    )
    tested = windows.sum(axis=1) >= CONFIG.min_window_events
    moved = total_variation_rows(reference, windows) >= CONFIG.min_total_variation
    raised: FloatArray = (crossed & tested & moved).astype(np.float64)
    return raised


def _calibrate(reference: FloatArray, seed: int) -> WindowThresholds:
    # As `drift_categorical_feature` does: one pseudo-category the reference never saw.
    return calibrate_window_thresholds(
        np.append(reference, 0.0), PER_WINDOW, RATE, seed=seed,
        min_window_events=CONFIG.min_window_events,
        min_total_variation=CONFIG.min_total_variation,
    )


@pytest.mark.parametrize("shape", list(SHAPES))
def test_categorical_thresholds_keep_the_budget_over_a_fleet_of_references(shape: str) -> None:
    p = np.array(SHAPES[shape])
    rng = np.random.default_rng(20261201)
    shares = []
    for i in range(25):
        reference = rng.multinomial(REFERENCE_EVENTS, p).astype(np.float64)
        thresholds = _calibrate(reference, seed=i)
        fresh = rng.multinomial(rng.poisson(PER_WINDOW, 3000), p).astype(np.float64)
        # The reference's label set as the detector sees it (no pseudo-category: the
        # truth never sends one, and an all-zero column changes no statistic).
        shares.append(_raised(reference, fresh, thresholds).mean())
    mean = float(np.mean(shares))
    above = ttest_1samp(shares, RATE, alternative="greater").pvalue
    print(f"{shape}: {mean:.5f} of fresh stable windows raised, budget {RATE:.5f} "
          f"({mean / RATE:.2f}x), p(above budget) = {above:.3g}")
    assert above >= 0.001, f"{shape}: false-alarm rate above its budget"
    # Not grossly conservative: the budget is there to be spent on detection.
    assert mean >= RATE / 2


def test_two_categories_keep_the_budget_exactly() -> None:
    """Two categories, 93/7: the fleet's expected share of raised windows, summed over
    every reference count (Binomial(1800, 0.07)) and every window (size Poisson(60),
    count Binomial(size, 0.07)) with scipy's probabilities."""
    p, n_ref = 0.07, REFERENCE_EVENTS
    ref_counts = np.arange(int(binom.ppf(1e-7, n_ref, p)), int(binom.isf(1e-7, n_ref, p)) + 1)
    sizes = np.arange(int(poisson.ppf(1e-9, PER_WINDOW)), int(poisson.isf(1e-9, PER_WINDOW)) + 1)
    grid_n = np.repeat(sizes, sizes + 1)
    grid_x = np.concatenate([np.arange(n + 1) for n in sizes])
    weights = poisson.pmf(grid_n, PER_WINDOW) * binom.pmf(grid_x, grid_n, p)
    windows = np.stack([grid_n - grid_x, grid_x], axis=1).astype(np.float64)
    fleet = 0.0
    for k in ref_counts:
        reference = np.array([n_ref - k, k], dtype=np.float64)
        # The bank's seed is the same for every tool (config.seed).
        rate = float(weights @ _raised(reference, windows, _calibrate(reference, CONFIG.seed)))
        fleet += binom.pmf(k, n_ref, p) * rate
    print(f"two categories, exact: {fleet:.5f} per window, budget {RATE:.5f} "
          f"({fleet / RATE:.2f}x)")
    assert RATE / 2 <= fleet <= RATE


def test_chi_square_reads_the_reference_categories_and_psi_still_sees_a_new_one() -> None:
    """One study of a never-seen category leaves chi-square as scipy computes it on the
    reference's categories (it would otherwise read p ~ 1e-7 from an expected count near
    0); PSI and the total variation still weigh it."""
    thresholds = WindowThresholds(psi=10.0, jensen_shannon=1.0, chi_square_p=1e-9)
    test = WindowedDistributionTest(["A", "B", "C"], [900, 600, 300], thresholds)
    without = test.close([25, 20, 15])
    with_new = test.close([25, 20, 15], {"NEW": 1})
    assert without is not None and with_new is not None
    expected = chi2_contingency([[900, 600, 300], [25, 20, 15]], correction=False)
    assert with_new.p_value == pytest.approx(expected.pvalue, rel=1e-9)
    assert with_new.p_value == without.p_value
    assert with_new.psi > without.psi + 0.05
    assert with_new.labels == ("A", "B", "C", "NEW")
