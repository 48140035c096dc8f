"""The drift calibrations as main af19bc4 computed them: the "before" that
`benchmarks/drift_bank.py` times beside today's on the same inputs in the same run.

A benchmark reference only (never imported by `surveillance/`):
- Page-Hinkley: a point estimate, the (1 - r) empirical quantile of the maxima of
  max(400, ceil(10 / r)) bootstrapped quarters (`rng.choice`), each quarter's maximum by
  the two-filter recursion;
- windows: the reference broadcast to one row per simulated window, counts by one
  binomial per category (`_multinomial_rows_each`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy.signal import lfilter

from surveillance.stats.categorical_drift import WindowTestName, WindowThresholds
from surveillance.stats.chi_square import chi_square_rows
from surveillance.stats.drift_calibration import (
    MIN_DIVERGENCE_THRESHOLD,
    PRIOR_COUNT,
    resolution_floor,
)
from surveillance.stats.jensen_shannon import jensen_shannon_rows
from surveillance.stats.psi import FloatArray, psi_rows
from surveillance.stats.window_bound import _thresholds_at, _union_rate

#: af19bc4's window counts: ~EXCEEDANCES simulated windows beyond the threshold.
EXCEEDANCES = 50
MIN_SIMULATED_WINDOWS = 20_000
MAX_SIMULATED_WINDOWS = 100_000


def page_hinkley_maxima(
    x: FloatArray, min_instances: int, delta: float, alpha: float
) -> FloatArray:
    rows, length = x.shape
    t = np.arange(1, length + 1, dtype=np.float64)
    first = max(min_instances, 1) - 1
    a = [1.0, -alpha]
    out = np.full(rows, -np.inf)
    step = max(1, (1 << 17) // max(length, 1))
    for r in range(0, rows, step):
        block = x[r : r + step]
        dev = np.cumsum(block, axis=-1)
        dev /= t
        np.subtract(block, dev, out=dev)
        s = lfilter([1.0], a, dev - delta, axis=-1)
        s -= np.minimum.accumulate(s, axis=-1)
        best = s[:, first:].max(axis=-1)
        s = lfilter([1.0], a, dev + delta, axis=-1)
        peak = np.maximum.accumulate(np.maximum(s, -1.0), axis=-1)
        peak -= s
        out[r : r + step] = np.maximum(best, peak[:, first:].max(axis=-1))
    return out


def calibrate_page_hinkley(
    standardised: FloatArray, events_per_quarter: int, rate: float, *, seed: int,
    min_instances: int, delta: float, calibration_quarters: int = 400,
    alpha: float = 1 - 0.0001,
) -> float:
    n_quarters = max(calibration_quarters, math.ceil(10 / rate))
    maxima = []
    chunk = max(1, 2_000_000 // events_per_quarter)
    for start in range(0, n_quarters, chunk):
        size = min(chunk, n_quarters - start)
        rng = np.random.default_rng(seed + start)
        quarters = rng.choice(standardised, size=(size, events_per_quarter))
        maxima.append(page_hinkley_maxima(quarters, min_instances, delta, alpha))
    threshold = float(np.quantile(np.concatenate(maxima), 1 - rate, method="higher"))
    return max(threshold, MIN_DIVERGENCE_THRESHOLD)


def _multinomial_rows_each(
    rng: np.random.Generator, sizes: npt.NDArray[np.int64], p: FloatArray
) -> FloatArray:
    out = np.zeros(p.shape, dtype=np.float64)
    remaining = sizes.astype(np.int64)
    mass_left = np.ones(sizes.size)
    for j in range(p.shape[1] - 1):
        share = np.clip(np.divide(p[:, j], mass_left, out=np.zeros(sizes.size),
                                  where=mass_left > 0), 0.0, 1.0)
        draw = rng.binomial(remaining, share)
        out[:, j] = draw
        remaining = remaining - draw
        mass_left = mass_left - p[:, j]
    out[:, -1] = remaining
    return out


def calibrate_window_thresholds(
    reference_counts: FloatArray, events_per_window: float, per_window_rate: float, *,
    seed: int, tests: Sequence[WindowTestName], min_window_events: int,
    window_sizes: Sequence[int] | None,
) -> WindowThresholds:
    ref = np.asarray(reference_counts, dtype=np.float64)
    n_windows = int(min(max(math.ceil(EXCEEDANCES / per_window_rate), MIN_SIMULATED_WINDOWS),
                        MAX_SIMULATED_WINDOWS))
    rng = np.random.default_rng(seed)
    if window_sizes is not None and len(window_sizes) > 0:
        sizes = rng.choice(np.asarray(window_sizes, dtype=np.int64), size=n_windows)
    else:
        sizes = rng.poisson(events_per_window, size=n_windows)
    sizes = np.maximum(sizes, min_window_events)
    p_windows = rng.gamma(np.broadcast_to(ref + PRIOR_COUNT, (n_windows, ref.size)))
    p_windows /= p_windows.sum(axis=1, keepdims=True)
    windows = _multinomial_rows_each(rng, sizes, p_windows)
    paired = np.broadcast_to(ref, windows.shape)
    stats: dict[WindowTestName, FloatArray] = {}
    if "psi" in tests:
        stats["psi"] = psi_rows(paired, windows)
    if "jensen_shannon" in tests:
        stats["jensen_shannon"] = jensen_shannon_rows(paired, windows)
    if "chi_square" in tests:
        stats["chi_square"] = chi_square_rows(paired, windows)[1]
    ordered = {t: np.sort(v) for t, v in stats.items()}
    low, high = 0.0, per_window_rate
    for _ in range(30):
        mid = (low + high) / 2
        if _union_rate(stats, _thresholds_at(ordered, mid)) <= per_window_rate:
            low = mid
        else:
            high = mid
    chosen = _thresholds_at(ordered, low)
    typical = max(float(np.median(window_sizes)) if window_sizes else events_per_window,
                  float(min_window_events))
    return WindowThresholds(
        psi=max(chosen.get("psi", math.inf), resolution_floor(ref, typical, "psi"),
                MIN_DIVERGENCE_THRESHOLD),
        jensen_shannon=min(max(chosen.get("jensen_shannon", 1.0),
                               resolution_floor(ref, typical, "jensen_shannon"),
                               MIN_DIVERGENCE_THRESHOLD), 1.0),
        chi_square_p=min(max(chosen.get("chi_square", 1e-300), 1e-300), per_window_rate),
    )
