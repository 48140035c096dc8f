"""Intraclass correlation of two measurement methods: ICC(A,1), absolute agreement.

Two-way random effects, absolute agreement, single measurement (McGraw & Wong 1996,
Psychol Methods 1:30-46, case 2A; Shrout & Fleiss 1979 ICC(2,1)): the share of the total
variance that lies between subjects, counting a systematic offset between the methods as
disagreement. That is the question for an AI measurement against the radiologist's: a
tool that reads every volume 5 mL high must score below one that does not.

From the n x k table (subjects x methods) of mean squares for subjects (MSR), methods
(MSC) and error (MSE):

    ICC = (MSR - MSE) / (MSR + (k - 1) MSE + k (MSC - MSE) / n)

The interval is McGraw & Wong's, with Satterthwaite's degrees of freedom for the mixed
denominator.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import f as f_dist

from surveillance.stats.bland_altman import Limit, differences
from surveillance.stats.intervals import StatsParameterError


def icc_absolute_agreement(
    ai: Sequence[float], reference: Sequence[float], confidence: float = 0.95
) -> Limit:
    """ICC(A,1) of the two methods with its two-sided interval; needs 3+ pairs."""
    differences(ai, reference)  # shape and finiteness checks
    if not 0.0 < confidence < 1.0:
        raise StatsParameterError(f"confidence must be in (0, 1), got {confidence}")
    y = np.column_stack([np.asarray(ai, dtype=float), np.asarray(reference, dtype=float)])
    n, k = y.shape
    if n < 3:
        raise StatsParameterError(f"the ICC needs at least 3 pairs, got {n}")
    grand = y.mean()
    ss_rows = k * float(((y.mean(axis=1) - grand) ** 2).sum())
    ss_cols = n * float(((y.mean(axis=0) - grand) ** 2).sum())
    ss_err = float(((y - grand) ** 2).sum()) - ss_rows - ss_cols
    msr = ss_rows / (n - 1)
    msc = ss_cols / (k - 1)
    mse = ss_err / ((n - 1) * (k - 1))
    if msr + (k - 1) * mse + k * (msc - mse) / n <= 0.0:
        raise StatsParameterError("the ICC is undefined: every measurement is the same")
    icc = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
    if icc >= 1.0:
        return Limit(1.0, 1.0, 1.0)  # the methods agree exactly on every subject
    alpha = 1.0 - confidence
    a = k * icc / (n * (1.0 - icc))
    b = 1.0 + k * icc * (n - 1) / (n * (1.0 - icc))
    df = (a * msc + b * mse) ** 2 / (
        (a * msc) ** 2 / (k - 1) + (b * mse) ** 2 / ((n - 1) * (k - 1))
    )
    f_low = float(f_dist.isf(alpha / 2.0, n - 1, df))
    f_high = float(f_dist.isf(alpha / 2.0, df, n - 1))
    spread = k * msc + (k * n - k - n) * mse
    lower = n * (msr - f_low * mse) / (f_low * spread + n * msr)
    upper = n * (f_high * msr - mse) / (spread + n * f_high * msr)
    return Limit(float(icc), float(lower), float(upper))
