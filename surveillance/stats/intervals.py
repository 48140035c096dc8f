"""Two-sided confidence intervals for a single binomial proportion.

`wilson` is the score interval (Wilson 1927; Newcombe 1998 method 3): good coverage at the
small counts a subgroup or a new tool version has, and never outside [0, 1].
`clopper_pearson` is the exact tail-area interval (Clopper & Pearson 1934; Newcombe 1998
method 5): conservative, coverage at least the nominal level for every true proportion;
use it where a regulator or committee asks for "exact".

Both return `(0.0, 1.0)` for `n == 0`: with no cases every proportion is compatible with
the data, and callers must not divide by zero to find that out.
"""

from __future__ import annotations

import math
from functools import lru_cache

from scipy.stats import beta, norm

from surveillance.errors import SurveillanceError


class StatsParameterError(SurveillanceError, ValueError):
    """A statistical routine was called with impossible parameters (counts, rates, targets)."""


def check_counts(successes: int, n: int) -> None:
    """Raise `StatsParameterError` unless 0 <= successes <= n."""
    if n < 0 or successes < 0 or successes > n:
        raise StatsParameterError(f"need 0 <= successes <= n, got successes={successes}, n={n}")


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise StatsParameterError(f"confidence must be in (0, 1), got {confidence}")


@lru_cache(maxsize=64)
def two_sided_z(confidence: float) -> float:
    """Standard normal quantile z with P(|Z| <= z) = confidence (1.959964 at 0.95)."""
    _check_confidence(confidence)
    # Cached: a scipy distribution call costs tens of microseconds, and the levels are few.
    return float(norm.isf((1.0 - confidence) / 2.0))


def wilson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for `successes` out of `n`.

    >>> tuple(round(b, 4) for b in wilson(81, 263))
    (0.2553, 0.3662)
    """
    check_counts(successes, n)
    z = two_sided_z(confidence)
    if n == 0:
        return (0.0, 1.0)
    z2 = z * z
    p = successes / n
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denom
    # At 0 or n successes the closed form is 0 (or 1) up to rounding; return it exactly.
    lower = 0.0 if successes == 0 else max(0.0, centre - half)
    upper = 1.0 if successes == n else min(1.0, centre + half)
    return (lower, upper)


def clopper_pearson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval from beta quantiles.

    >>> tuple(round(b, 4) for b in clopper_pearson(81, 263))
    (0.2527, 0.3676)
    """
    check_counts(successes, n)
    _check_confidence(confidence)
    if n == 0:
        return (0.0, 1.0)
    tail = (1.0 - confidence) / 2.0
    lower = 0.0 if successes == 0 else float(beta.ppf(tail, successes, n - successes + 1))
    upper = 1.0 if successes == n else float(beta.isf(tail, successes + 1, n - successes))
    return (lower, upper)
