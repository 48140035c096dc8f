"""Has a window of measurements moved away from a reference sample? Two-sample KS test.

The Kolmogorov-Smirnov statistic is the largest gap between the two empirical CDFs; it
sees a shift, a change of spread or a new mode of the measured values alike, and needs no
model of their distribution (hemorrhage volumes are skewed, ejection fractions bounded).
The p-value is scipy's exact one for small samples and asymptotic beyond.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import ks_2samp

from surveillance.stats.intervals import StatsParameterError

#: Fewest values on each side for a test: below this a window is "not enough data".
MIN_SAMPLE = 20


@dataclass(frozen=True, slots=True)
class ShiftTest:
    n_reference: int
    n_window: int
    statistic: float
    p_value: float
    shifted: bool


def distribution_shift(
    reference: Sequence[float], window: Sequence[float], alpha: float
) -> ShiftTest | None:
    """KS test of `window` against `reference` at level `alpha`; None when either side has
    fewer than `MIN_SAMPLE` values."""
    if not 0.0 < alpha < 1.0:
        raise StatsParameterError(f"alpha must be in (0, 1), got {alpha}")
    ref = np.asarray(reference, dtype=float)
    win = np.asarray(window, dtype=float)
    if not (np.isfinite(ref).all() and np.isfinite(win).all()):
        raise StatsParameterError("measurements must be finite numbers (no NaN or infinity)")
    if ref.size < MIN_SAMPLE or win.size < MIN_SAMPLE:
        return None
    result = ks_2samp(ref, win)
    p_value = float(result.pvalue)
    return ShiftTest(int(ref.size), int(win.size), float(result.statistic), p_value,
                     p_value < alpha)
