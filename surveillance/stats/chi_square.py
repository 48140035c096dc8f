"""Chi-square test of homogeneity between reference and current category counts.

Why homogeneity (the 2 x k contingency test, as `scipy.stats.chi2_contingency` with
`correction=False`) and not goodness of fit (`scipy.stats.chisquare` with expected
frequencies from the reference, which Evidently uses): the reference period is itself a
finite sample. Goodness of fit treats its proportions as exact, which inflates the
statistic and the false-alarm rate when the reference is not much larger than the window,
and it is undefined for a category never seen in the reference (expected count 0).
Homogeneity pools both samples for the expected counts, so a category seen on one side
only is an ordinary column with positive expected counts on both rows.

Categories with count 0 on both sides are dropped (their expected counts would be 0);
degrees of freedom = (number of remaining categories - 1). With fewer than two remaining
categories there is nothing to compare: statistic 0, p-value 1, dof 0. No Yates
continuity correction: thresholds are calibrated on simulated stable streams anyway, and
the uncorrected statistic is the one whose distribution is the same for every dof.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special

from surveillance.stats.psi import FloatArray


@dataclass(frozen=True)
class ChiSquareResult:
    statistic: float
    p_value: float
    dof: int


def _pearson_terms(
    observed: FloatArray, expected: FloatArray, used: npt.NDArray[np.bool_]
) -> FloatArray:
    ok = used & (expected > 0)
    safe = np.where(ok, expected, 1.0)
    terms: FloatArray = np.where(ok, (observed - expected) ** 2 / safe, 0.0)
    return terms


def _every_term(
    observed: FloatArray, col: FloatArray, n: FloatArray, total: FloatArray
) -> FloatArray:
    """(observed - expected)^2 / expected, expected = col * n / total, all positive."""
    expected = col * n
    expected /= total
    terms: FloatArray = observed - expected
    np.square(terms, out=terms)
    terms /= expected
    return terms


def chi_square_rows(
    reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.int64]]:
    """Statistic, p-value and dof of each row pair (last axis = categories)."""
    ref, cur = np.broadcast_arrays(
        np.asarray(reference_counts, dtype=np.float64),
        np.asarray(current_counts, dtype=np.float64),
    )
    if np.any(ref < 0) or np.any(cur < 0):
        raise ValueError("chi-square needs non-negative counts")
    col = ref + cur
    n_ref = ref.sum(axis=-1, keepdims=True)
    n_cur = cur.sum(axis=-1, keepdims=True)
    total = n_ref + n_cur
    used = col > 0
    if used.all() and np.all(n_ref > 0) and np.all(n_cur > 0):
        # Every expected count positive (the calibration's simulated windows: the
        # reference's seen categories, windows of at least the minimum size): the same
        # arithmetic as below without its masks, in place.
        term_ref = _every_term(ref, col, n_ref, total)
        term_cur = _every_term(cur, col, n_cur, total)
    else:
        safe_total = np.where(total > 0, total, 1.0)
        exp_ref = col * n_ref / safe_total
        exp_cur = col * n_cur / safe_total
        term_ref = _pearson_terms(ref, exp_ref, used)
        term_cur = _pearson_terms(cur, exp_cur, used)
    dof = np.maximum(used.sum(axis=-1) - 1, 0).astype(np.int64)
    both_sides = (n_ref[..., 0] > 0) & (n_cur[..., 0] > 0)
    dof = np.where(both_sides, dof, 0)
    statistic = np.where(dof > 0, (term_ref + term_cur).sum(axis=-1), 0.0)
    p_value = np.where(dof > 0, special.chdtrc(np.maximum(dof, 1), statistic), 1.0)
    return statistic, p_value, dof


def chi_square_homogeneity(
    reference_counts: Sequence[float], current_counts: Sequence[float]
) -> ChiSquareResult:
    """Chi-square homogeneity test of two count vectors over the same categories.

    Plain Python for one window (same formula as `chi_square_rows`).

    >>> r = chi_square_homogeneity([30, 20], [10, 40])
    >>> round(r.statistic, 6), r.dof
    (16.666667, 1)
    """
    if len(reference_counts) != len(current_counts) or not reference_counts:
        raise ValueError("chi-square needs two count vectors of the same non-zero length")
    if min(reference_counts) < 0 or min(current_counts) < 0:
        raise ValueError("chi-square needs non-negative counts")
    n_ref, n_cur = float(sum(reference_counts)), float(sum(current_counts))
    used = [(r, c) for r, c in zip(reference_counts, current_counts, strict=True) if r + c > 0]
    if n_ref <= 0 or n_cur <= 0 or len(used) < 2:
        return ChiSquareResult(0.0, 1.0, 0)
    total = n_ref + n_cur
    statistic = 0.0
    for r, c in used:
        e_ref = (r + c) * n_ref / total
        e_cur = (r + c) * n_cur / total
        statistic += (r - e_ref) ** 2 / e_ref + (c - e_cur) ** 2 / e_cur
    dof = len(used) - 1
    return ChiSquareResult(statistic, float(special.chdtrc(dof, statistic)), dof)
