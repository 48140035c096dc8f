"""Bland-Altman agreement of two measurement methods: bias and limits of agreement.

For paired measurements (AI, reference) the differences d_i = ai_i - reference_i give the
bias (mean difference) and the 95% limits of agreement bias -/+ z * s, with s the sample
standard deviation of the differences (Bland & Altman 1986, Lancet i:307-310).

Intervals:
- bias: the t interval of a mean, d_bar -/+ t(n-1) * s / sqrt(n).
- each limit of agreement: exact, from the noncentral t distribution (Carkeet 2015,
  Optom Vis Sci 92:e71-e80). With Z = sqrt(n)(d_bar - mu)/sigma and s/sigma independent,
  Q = sqrt(n)(mu + z sigma - d_bar)/s has a noncentral t distribution with n - 1 degrees of
  freedom and noncentrality z sqrt(n); the interval for mu + z sigma is
  d_bar + s * q / sqrt(n) for q the two tail quantiles of Q. Bland & Altman's own
  approximation (standard error sqrt(3 s^2 / n)) is too narrow at small n; the exact
  interval costs nothing here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import nct
from scipy.stats import t as student_t

from surveillance.stats.intervals import StatsParameterError, two_sided_z


@dataclass(frozen=True, slots=True)
class Limit:
    """One estimate with its two-sided confidence interval."""

    value: float
    lower: float
    upper: float


@dataclass(frozen=True, slots=True)
class BlandAltman:
    n: int
    bias: Limit
    sd: float
    lower_loa: Limit
    upper_loa: Limit


def differences(ai: Sequence[float], reference: Sequence[float]) -> np.ndarray:
    """ai - reference, after checking the pairs are usable."""
    a = np.asarray(ai, dtype=float)
    r = np.asarray(reference, dtype=float)
    if a.shape != r.shape or a.ndim != 1:
        raise StatsParameterError(
            f"need two equally long 1-D sequences, got shapes {a.shape} and {r.shape}"
        )
    if not (np.isfinite(a).all() and np.isfinite(r).all()):
        raise StatsParameterError("measurements must be finite numbers (no NaN or infinity)")
    diff: np.ndarray = a - r
    return diff


def bland_altman(
    ai: Sequence[float],
    reference: Sequence[float],
    confidence: float = 0.95,
    loa_coverage: float = 0.95,
) -> BlandAltman:
    """Bias and limits of agreement of `ai` against `reference`, with their intervals.

    `loa_coverage` sets the limits' multiplier (0.95 gives 1.96 s); `confidence` the level
    of every interval. Needs at least 3 pairs.
    """
    d = differences(ai, reference)
    n = int(d.size)
    if n < 3:
        raise StatsParameterError(f"Bland-Altman needs at least 3 pairs, got {n}")
    if not 0.0 < confidence < 1.0:
        raise StatsParameterError(f"confidence must be in (0, 1), got {confidence}")
    z_loa = two_sided_z(loa_coverage)
    alpha = 1.0 - confidence
    mean = float(d.mean())
    sd = float(d.std(ddof=1))
    root_n = math.sqrt(n)
    t_crit = float(student_t.isf(alpha / 2.0, n - 1))
    half = t_crit * sd / root_n
    bias = Limit(mean, mean - half, mean + half)
    q_low, q_high = (float(q) for q in nct.ppf([alpha / 2.0, 1.0 - alpha / 2.0],
                                                n - 1, z_loa * root_n))
    upper = Limit(mean + z_loa * sd, mean + sd * q_low / root_n, mean + sd * q_high / root_n)
    # The lower limit mirrors the upper one: mu - z sigma = -((-mu) + z sigma).
    lower = Limit(mean - z_loa * sd, mean - sd * q_high / root_n, mean - sd * q_low / root_n)
    return BlandAltman(n, bias, sd, lower, upper)

