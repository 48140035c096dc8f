"""Difference of two medians with a percentile bootstrap interval.

Turnaround times are skewed (a few studies wait days), so the committee compares medians:
median(a) - median(b). The interval resamples each group independently (two-sample
percentile bootstrap, Efron & Tibshirani 1993, ch. 13) with a seeded generator, so the
same data give the same interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from surveillance.stats.intervals import StatsParameterError

#: Fewest values per group for an interval; below it the difference is reported alone.
MIN_GROUP = 5


@dataclass(frozen=True, slots=True)
class MedianDifference:
    n_a: int
    n_b: int
    median_a: float
    median_b: float
    difference: float
    lower: float | None
    upper: float | None


def median_difference(
    a: Sequence[float],
    b: Sequence[float],
    confidence: float = 0.95,
    resamples: int = 4000,
    seed: int = 0,
) -> MedianDifference:
    """median(a) - median(b) and its bootstrap interval (None below `MIN_GROUP` each)."""
    if not 0.0 < confidence < 1.0:
        raise StatsParameterError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 100:
        raise StatsParameterError(f"need at least 100 resamples, got {resamples}")
    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    if x.size == 0 or y.size == 0:
        raise StatsParameterError("both groups need at least one value")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise StatsParameterError("values must be finite numbers (no NaN or infinity)")
    mx, my = float(np.median(x)), float(np.median(y))
    if x.size < MIN_GROUP or y.size < MIN_GROUP:
        return MedianDifference(int(x.size), int(y.size), mx, my, mx - my, None, None)
    rng = np.random.default_rng(seed)
    boot_x = np.median(x[rng.integers(0, x.size, (resamples, x.size))], axis=1)
    boot_y = np.median(y[rng.integers(0, y.size, (resamples, y.size))], axis=1)
    alpha = 1.0 - confidence
    low, high = np.quantile(boot_x - boot_y, [alpha / 2.0, 1.0 - alpha / 2.0])
    return MedianDifference(int(x.size), int(y.size), mx, my, mx - my, float(low), float(high))
