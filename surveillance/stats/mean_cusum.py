"""Two-sided tabular CUSUM for a shift of a mean, e.g. the bias of an AI measurement.

Each observation is standardized against the in-control mean and standard deviation,
z = (x - mu0) / sigma, and two one-sided charts run side by side (Page 1954; Montgomery,
Introduction to Statistical Quality Control, ch. 9):

    C+_t = max(0, C+_{t-1} + z_t - k),   C-_t = max(0, C-_{t-1} - z_t - k)

signalling when either reaches h. k is half the standardized shift the chart is tuned to
detect (k = 0.5 for a one-sigma shift).

Threshold from a run length, as for the Bernoulli charts: `threshold_for_arl` finds the h
whose two-sided in-control average run length (ARL0, in cases) equals a target. ARLs use
Siegmund's approximation for one chart (Siegmund 1985, Sequential Analysis; b = h + 1.166
corrects for overshoot),

    ARL(delta) = (exp(-2 D b) + 2 D b - 1) / (2 D^2),   D = delta - k  (b^2 when D = 0),

and 1/ARL = 1/ARL+ + 1/ARL- for the pair. At k = 0.5 this gives 169 and 469 cases for
h = 4 and 5, against 168 and 465 from the exact tables.
"""

from __future__ import annotations

import math
from typing import Literal, Self

from scipy.optimize import brentq

from surveillance.stats.intervals import StatsParameterError

_OVERSHOOT = 1.166


def one_sided_arl(h: float, k: float, shift: float) -> float:
    """Average run length of one upper chart when the standardized mean is `shift`."""
    _check_design(h, k)
    b = h + _OVERSHOOT
    d = shift - k
    if abs(d) < 1e-9:
        return b * b
    x = 2.0 * d * b
    if x < -700.0:  # exp overflows: the chart practically never signals
        return math.inf
    return (math.exp(-x) + x - 1.0) / (2.0 * d * d)


def two_sided_arl(h: float, k: float, shift: float = 0.0) -> float:
    """Average run length of the pair of charts for a standardized mean shift `shift`."""
    rate = 1.0 / one_sided_arl(h, k, shift) + 1.0 / one_sided_arl(h, k, -shift)
    return 1.0 / rate


def threshold_for_arl(target_arl_cases: float, k: float = 0.5) -> float:
    """The h at which the two-sided chart's in-control ARL equals `target_arl_cases`."""
    if not target_arl_cases > 2.0:
        raise StatsParameterError(f"target ARL must be > 2 cases, got {target_arl_cases}")
    if not 0.0 < k < 5.0:
        raise StatsParameterError(f"reference value k must be in (0, 5), got {k}")
    high = 1.0
    while two_sided_arl(high, k) < target_arl_cases:
        high *= 2.0
        if high > 1e4:
            raise StatsParameterError(f"no threshold reaches an ARL of {target_arl_cases} cases")
    return float(brentq(lambda h: two_sided_arl(h, k) - target_arl_cases, 1e-6, high,
                        xtol=1e-9))


def _check_design(h: float, k: float) -> None:
    if not h > 0.0:
        raise StatsParameterError(f"threshold h must be > 0, got {h}")
    if not k > 0.0:
        raise StatsParameterError(f"reference value k must be > 0, got {k}")


class MeanShiftCUSUM:
    """Two-sided CUSUM on standardized observations; restarts after each signal.

    Examples
    --------
    Bias 0 mL with SD 2 mL for 300 cases, then 2 mL (one SD) high:

    >>> import random
    >>> rng = random.Random(3)
    >>> chart = MeanShiftCUSUM(mean=0.0, sd=2.0, h=threshold_for_arl(1000.0))
    >>> for i in range(1000):
    ...     if chart.update(rng.gauss(0.0 if i < 300 else 2.0, 2.0)).drift_detected:
    ...         print(chart.direction, chart.n_cases, chart.change_point)
    ...         break
    up 307 300
    """

    def __init__(self, mean: float, sd: float, h: float, k: float = 0.5) -> None:
        _check_design(h, k)
        if not (math.isfinite(mean) and math.isfinite(sd) and sd > 0.0):
            raise StatsParameterError(f"need a finite mean and sd > 0, got {mean}, {sd}")
        self.mean = mean
        self.sd = sd
        self.h = h
        self.k = k
        self._reset()

    def _reset(self) -> None:
        self._up = 0.0
        self._down = 0.0
        self._n = 0
        self._last_zero_up = 0
        self._last_zero_down = 0
        self._direction: Literal["up", "down"] | None = None

    def update(self, x: float) -> Self:
        """Add one observation (a finite number; anything else raises)."""
        if not math.isfinite(x):
            raise StatsParameterError(f"observation must be finite, got {x}")
        if self._direction is not None:
            self._reset()
        self._n += 1
        z = (x - self.mean) / self.sd
        self._up = max(0.0, self._up + z - self.k)
        self._down = max(0.0, self._down - z - self.k)
        if self._up == 0.0:
            self._last_zero_up = self._n
        if self._down == 0.0:
            self._last_zero_down = self._n
        if self._up >= self.h:
            self._direction = "up"
        elif self._down >= self.h:
            self._direction = "down"
        return self

    @property
    def drift_detected(self) -> bool:
        """True on the update at which either chart crossed its threshold."""
        return self._direction is not None

    @property
    def direction(self) -> Literal["up", "down"] | None:
        """Which way the mean moved, on the update that signalled."""
        return self._direction

    @property
    def statistic(self) -> float:
        """The larger of the two chart values, in standardized units."""
        return max(self._up, self._down)

    @property
    def n_cases(self) -> int:
        """Observations since the chart last (re)started."""
        return self._n

    @property
    def change_point(self) -> int:
        """Observations up to the last time the signalling chart was 0 (shift began after)."""
        return self._last_zero_down if self._direction == "down" else self._last_zero_up
