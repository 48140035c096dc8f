"""Fisher's exact test of a 2x2 table, two-sided: scipy's p-value, bit for bit, at a
fraction of its cost.

`scipy.stats.fisher_exact` spends most of a call in `hypergeom`'s generic machinery
(argument parsing, broadcasting and support masks on arrays, for one number at a time):
about a millisecond per table, paid by every daily label-free test of every version.
This makes the same steps on scalars and calls the same special functions
(`scipy.special._ufuncs._hypergeom_pmf/_cdf/_sf`, what `hypergeom._pmf/_cdf/_sf` call),
clipped to [0, 1] and zero or one outside the support as `rv_discrete` does, so the
result is the same float (`tests/test_fisher_exact.py` holds it equal to scipy's on
generated tables).

The two-sided p-value is the probability of every table at most as likely as the one
observed (a relative tolerance of 1e-14 counts ties): the tail on the observed side of
the mode, plus the tail on the other side from the first table as unlikely.
"""

from __future__ import annotations

from collections.abc import Callable

from scipy.special import _ufuncs

_PMF = _ufuncs._hypergeom_pmf
_CDF = _ufuncs._hypergeom_cdf
_SF = _ufuncs._hypergeom_sf
_EPSILON = 1e-14
_GAMMA = 1 + _EPSILON


class _Hypergeom:
    """Draws of `draws` from `total` of which `good` are good, with scipy's support."""

    def __init__(self, total: int, good: int, draws: int) -> None:
        self.total, self.good, self.draws = total, good, draws
        self.low, self.high = max(draws - (total - good), 0), min(good, draws)

    def pmf(self, k: int) -> float:
        if not self.low <= k <= self.high:
            return 0.0
        return min(max(float(_PMF(k, self.good, self.draws, self.total)), 0.0), 1.0)

    def cdf(self, k: int) -> float:
        if k < self.low:
            return 0.0
        if k >= self.high:
            return 1.0
        return min(max(float(_CDF(k, self.good, self.draws, self.total)), 0.0), 1.0)

    def sf(self, k: int) -> float:
        if k < self.low:
            return 1.0
        if k >= self.high:
            return 0.0
        return min(max(float(_SF(k, self.good, self.draws, self.total)), 0.0), 1.0)


def _last_at_most(value: Callable[[int], float], target: float, lo: int, hi: int) -> int:
    """Bisection for the `k` in [lo, hi] where `value(k) <= target < value(k + 1)`,
    `value` ascending there: the same steps, and so the same `k` at the edges and on
    ties, as scipy's search for the other tail's start."""
    while lo < hi:
        mid = lo + (hi - lo) // 2
        found = value(mid)
        if found < target:
            lo = mid + 1
        elif found > target:
            hi = mid - 1
        else:
            return mid
    return lo if value(lo) <= target else lo - 1


def fisher_two_sided(a: int, b: int, c: int, d: int) -> float:
    """The two-sided p-value of the table [[a, b], [c, d]] (counts >= 0), as
    `scipy.stats.fisher_exact([[a, b], [c, d]]).pvalue`."""
    if min(a, b, c, d) < 0:
        raise ValueError(f"a 2x2 table of counts >= 0, got {[[a, b], [c, d]]}")
    if 0 in (a + c, b + d, a + b, c + d):
        return 1.0  # a row or a column empty: every table is the observed one
    row, other, column = a + b, c + d, a + c
    dist = _Hypergeom(row + other, row, column)
    mode = int((column + 1) * (row + 1) / (row + other + 2))
    observed = dist.pmf(a)
    at_mode = dist.pmf(mode)
    larger = max(observed, at_mode)
    # Both zero (underflow): scipy's 0/0 is NaN, which is not within the tolerance.
    if larger > 0 and abs(observed - at_mode) / larger <= _EPSILON:
        return 1.0
    if a < mode:
        lower = dist.cdf(a)
        if dist.pmf(column) > observed * _GAMMA:
            return lower
        start = _last_at_most(lambda k: -dist.pmf(k), -observed * _GAMMA, mode, column)
        p = lower + dist.sf(start)
    else:
        upper = dist.sf(a - 1)
        if dist.pmf(0) > observed * _GAMMA:
            return upper
        start = _last_at_most(dist.pmf, observed * _GAMMA, 0, mode)
        p = upper + dist.cdf(start)
    return min(p, 1.0)
