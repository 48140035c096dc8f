"""Calibration: thresholds chosen on simulated stable streams keep their promised rate
when checked on fresh, independently generated stable streams (numpy's own multinomial,
river's own detectors), and the vectorised Page-Hinkley recursion equals river."""

from __future__ import annotations

from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from river import drift
from scipy.stats import binom

from surveillance.stats import stream_calibration
from surveillance.stats.chi_square import chi_square_homogeneity
from surveillance.stats.drift_calibration import FalseAlarmBudget, calibrate_window_thresholds
from surveillance.stats.jensen_shannon import jensen_shannon_distance
from surveillance.stats.numeric_drift import AdwinDetector, DriftParameterError, PageHinkleyDetector
from surveillance.stats.psi import psi
from surveillance.stats.stream_calibration import (
    calibrate_page_hinkley,
    calibrate_stream_detector,
    page_hinkley_maxima,
    page_hinkley_statistics,
)


def test_budget_is_split_over_features_and_windows() -> None:
    daily = FalseAlarmBudget(n_features=13)
    assert daily.per_feature == pytest.approx(1 / 13)
    assert daily.windows_per_quarter == 91
    assert daily.per_window_rate(daily.per_feature) == pytest.approx(1 / 13 / 91)
    assert FalseAlarmBudget(n_features=13, window="weekly").windows_per_quarter == 13
    with pytest.raises(ValueError, match="n_features"):
        FalseAlarmBudget(n_features=0)


def test_window_thresholds_hold_their_rate_on_fresh_stable_windows() -> None:
    reference = np.array([500.0, 300.0, 150.0, 40.0, 10.0])
    rate = 1 / 13 / 91
    thresholds = calibrate_window_thresholds(reference, 40.0, rate, seed=1)
    again = calibrate_window_thresholds(reference, 40.0, rate, seed=1)
    assert thresholds == again  # reproducible
    assert thresholds.chi_square_p <= rate
    # Fresh windows from the reference's own proportions, judged against the reference
    # the thresholds were calibrated on (as the detector judges them). Judging them
    # against 200 other draws of a reference instead (as this test once did) is not what
    # the calibration promises: one reference's thresholds on other references alarm
    # ~1.5x the rate on average (main's calibration 1.59x over 12 seeds, on 600,000
    # windows; 9 of the 12 above this allowance), and the test passed by its seed.
    rng = np.random.default_rng(99)
    p = reference / reference.sum()
    n_windows, alarms = 60_000, 0
    ref = list(reference)
    for _ in range(n_windows):
        size = int(rng.poisson(40.0))
        if size < 20:
            continue
        cur = list(rng.multinomial(size, p))
        keep = [j for j in range(len(cur)) if cur[j] + ref[j] > 0]
        r, c = [ref[j] for j in keep], [cur[j] for j in keep]
        alarms += (
            psi(r, c) > thresholds.psi
            or jensen_shannon_distance(r, c) > thresholds.jensen_shannon
            or chi_square_homogeneity(r, c).p_value < thresholds.chi_square_p
        )
    allowance = int(binom.ppf(0.999, n_windows, rate))
    print(f"{alarms} alarms in {n_windows} stable windows; rate {rate:.2e}, allowed {allowance}")
    assert alarms <= allowance


@pytest.mark.parametrize("mode", ["up", "down", "both"])
def test_vectorised_page_hinkley_equals_river(mode: str) -> None:
    rng = np.random.default_rng(7)
    streams = rng.normal(size=(5, 1500))
    streams[:, 700:] += rng.choice([-0.7, 0.7], size=(5, 1))
    stats = page_hinkley_statistics(streams, 30, 0.05, 1 - 1e-4, mode)  # type: ignore[arg-type]
    for threshold in (5.0, 20.0, 60.0):
        for row, stat in zip(streams, stats, strict=True):
            det = drift.PageHinkley(min_instances=30, delta=0.05, threshold=threshold, mode=mode)
            river_first = next(
                (i for i, x in enumerate(row) if det.update(x) is None and det.drift_detected), None
            )
            crossed = np.flatnonzero(stat > threshold)
            assert river_first == (int(crossed[0]) if crossed.size else None)


def test_page_hinkley_threshold_holds_its_rate_with_river() -> None:
    rng = np.random.default_rng(11)
    reference = rng.gamma(2.0, 1.0, 3000)
    standardised = (reference - reference.mean()) / reference.std(ddof=1)
    rate, per_quarter = 0.1, 1500
    threshold = calibrate_page_hinkley(
        standardised, per_quarter, rate, seed=3, n_quarters=400, delta=0.1
    )
    fresh = np.random.default_rng(12).choice(standardised, size=(300, per_quarter))
    alarmed = 0
    for quarter in fresh:
        det = PageHinkleyDetector(delta=0.1, threshold=threshold)
        alarmed += any(det.update(float(x)).drift_detected for x in quarter)
    allowance = int(binom.ppf(0.999, 300, rate))
    print(
        f"PH threshold {threshold:.2f}: {alarmed}/300 stable quarters alarmed, allowed {allowance}"
    )
    assert alarmed <= allowance
    with pytest.raises(DriftParameterError, match="too few"):
        calibrate_page_hinkley(standardised, per_quarter, 0.01, seed=3, n_quarters=100)


def test_adwin_delta_calibration_picks_most_sensitive_within_budget() -> None:
    rng = np.random.default_rng(5)
    reference = rng.normal(size=2000)
    candidates = [0.5, 0.2, 0.05, 0.002]
    chosen = calibrate_stream_detector(
        lambda d: AdwinDetector(delta=d), candidates, reference, 1000, 0.2, seed=1, n_quarters=40
    )
    assert chosen.parameter in candidates and chosen.alarms_per_quarter <= 0.2
    earlier = candidates[: candidates.index(chosen.parameter)]
    for delta in earlier:  # every more sensitive candidate really broke the budget
        with pytest.raises(DriftParameterError, match="no candidate"):
            calibrate_stream_detector(
                lambda d: AdwinDetector(delta=d),
                [delta],
                reference,
                1000,
                0.2,
                seed=1,
                n_quarters=40,
            )
    print(f"ADWIN delta chosen {chosen.parameter}, {chosen.alarms_per_quarter} alarms/quarter")
    with pytest.raises(DriftParameterError, match="no candidate"):
        calibrate_stream_detector(
            lambda d: AdwinDetector(delta=d), [0.9], reference, 1000, 1e-6, seed=1, n_quarters=40
        )
    with pytest.raises(DriftParameterError, match="at least one candidate"):
        calibrate_stream_detector(
            lambda d: AdwinDetector(delta=d), [], reference, 1000, 0.2, seed=1, n_quarters=40
        )


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    rows=st.integers(1, 40),
    length=st.integers(1, 400),
    min_instances=st.integers(1, 60),
    mode=st.sampled_from(["up", "down", "both"]),
    scale=st.floats(1e-3, 1e3),
    seed=st.integers(0, 2**32 - 1),
)
def test_page_hinkley_maxima_equal_the_full_statistics_to_the_bit(
    rows: int, length: int, min_instances: int, mode: str, scale: float, seed: int
) -> None:
    """Calibration takes each simulated quarter's largest statistic from the blocked,
    in-place `page_hinkley_maxima`; it must be exactly the maximum of the river-checked
    `page_hinkley_statistics` (blocks smaller than the array are forced here)."""
    values = np.random.default_rng(seed).standard_normal((rows, length)) * scale
    full = page_hinkley_statistics(values, min_instances, 0.005, 1 - 0.0001, mode)  # type: ignore[arg-type]
    with patch.object(stream_calibration, "_MAXIMA_BLOCK", max(1, rows * length // 3)):
        fast = page_hinkley_maxima(values, min_instances, 0.005, 1 - 0.0001, mode)  # type: ignore[arg-type]
    np.testing.assert_array_equal(fast, full.max(axis=-1))
