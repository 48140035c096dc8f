"""Population stability index (PSI) between a reference and a current distribution.

    PSI = sum_i (r_i - c_i) * ln(r_i / c_i)

over categories (or bins) i, with r and c the reference and current proportions.

Empty bins. ln(r/c) is undefined when a side has a zero proportion, so zeros are
replaced before the sum, on each side separately, by Evidently's rule (evidently 0.7.x,
`legacy/calculations/stattests/utils.py::get_binned_data`, `feel_zeroes=True`): a zero
proportion becomes EMPTY_BIN_PROPORTION (1e-4), or, when the smallest non-zero proportion
on that side is itself <= 1e-4, that smallest proportion / 1e6. Proportions are not
renormalised afterwards (Evidently does not either). With the same bins our PSI therefore
equals Evidently's exactly. The rule caps one empty bin's contribution: a category with
share c in the current window and none in the reference adds (c - 1e-4) * ln(c / 1e-4).

Categories are aligned explicitly by `align_counts`: the union of both sides, a category
unseen on one side gets count 0 there (and then the empty-bin rule above). Numeric
features are compared on bins cut at reference quantiles (`quantile_edges`,
`bin_counts`), with one extra bin for missing values so that a feature that stops being
sent is a shift too.

All functions take counts along the last axis and broadcast over leading axes, so the
calibration can evaluate thousands of simulated windows at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

#: Replacement for an empty bin's proportion (Evidently's constant).
EMPTY_BIN_PROPORTION = 1e-4
#: When the smallest non-zero proportion is below EMPTY_BIN_PROPORTION, empty bins get
#: that proportion divided by this (Evidently's constant).
EMPTY_BIN_DIVISOR = 1e6


def proportions(counts: npt.ArrayLike) -> FloatArray:
    """Counts -> proportions along the last axis; an all-zero row stays all zero."""
    arr = np.asarray(counts, dtype=np.float64)
    if np.any(arr < 0):
        raise ValueError("counts must be non-negative")
    total = arr.sum(axis=-1, keepdims=True)
    result: FloatArray = np.divide(arr, total, out=np.zeros_like(arr), where=total > 0)
    return result


def fill_empty_bins(props: npt.ArrayLike) -> FloatArray:
    """Replace zero proportions by Evidently's floor (see module docstring), per row."""
    p = np.array(props, dtype=np.float64)
    nonzero = p > 0
    smallest = np.min(np.where(nonzero, p, np.inf), axis=-1, keepdims=True)
    floor = np.where(
        smallest <= EMPTY_BIN_PROPORTION, smallest / EMPTY_BIN_DIVISOR, EMPTY_BIN_PROPORTION
    )
    return np.where(nonzero, p, floor)


def psi_rows(reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike) -> FloatArray:
    """PSI of each row pair (last axis = categories); rows broadcast."""
    return psi_of_proportions(proportions(reference_counts), proportions(current_counts))


def psi_of_proportions(reference: FloatArray, current: FloatArray) -> FloatArray:
    """`psi_rows` of rows already made `proportions` (the calibration computes a window's
    proportions once for all its statistics)."""
    ref = fill_empty_bins(reference)
    cur = fill_empty_bins(current)
    result: FloatArray = np.sum((ref - cur) * np.log(ref / cur), axis=-1)
    return result


def _filled(props: list[float]) -> list[float]:
    smallest = min((p for p in props if p > 0), default=EMPTY_BIN_PROPORTION)
    floor = (
        smallest / EMPTY_BIN_DIVISOR if smallest <= EMPTY_BIN_PROPORTION else EMPTY_BIN_PROPORTION
    )
    return [p if p > 0 else floor for p in props]


def check_count_pair(reference: Sequence[float], current: Sequence[float], what: str) -> None:
    if len(reference) != len(current) or not reference:
        raise ValueError(f"{what} needs two count vectors of the same non-zero length")
    if min(reference) < 0 or min(current) < 0:
        raise ValueError(f"{what} needs non-negative counts")
    if sum(reference) <= 0 or sum(current) <= 0:
        raise ValueError(f"{what} needs at least one count on each side")


def psi(reference_counts: Sequence[float], current_counts: Sequence[float]) -> float:
    """PSI between two count (or proportion) vectors over the same categories.

    Plain Python: one window at a time is too small for numpy to pay off (same formula
    as `psi_rows`, which the calibration uses on many windows at once).

    >>> round(psi([50, 30, 20], [30, 30, 40]), 6)
    0.240795
    """
    check_count_pair(reference_counts, current_counts, "psi")
    n_ref, n_cur = float(sum(reference_counts)), float(sum(current_counts))
    ref = _filled([x / n_ref for x in reference_counts])
    cur = _filled([x / n_cur for x in current_counts])
    return sum((r - c) * math.log(r / c) for r, c in zip(ref, cur, strict=True))


def align_counts(
    reference: Mapping[str, int], current: Mapping[str, int]
) -> tuple[list[str], FloatArray, FloatArray]:
    """Put two category->count maps on one axis: reference order first, then new ones.

    A category present on one side only gets count 0 on the other; a category with count
    0 on both sides is dropped (it carries no information and would make tests undefined).
    """
    keys = [k for k in reference if reference[k] > 0 or current.get(k, 0) > 0]
    keys += sorted(k for k in current if k not in reference and current[k] > 0)
    ref = np.array([reference.get(k, 0) for k in keys], dtype=np.float64)
    cur = np.array([current.get(k, 0) for k in keys], dtype=np.float64)
    return keys, ref, cur


def quantile_edges(reference_values: Sequence[float] | FloatArray, n_bins: int) -> FloatArray:
    """Interior bin edges at the reference's 1/n, ..., (n-1)/n quantiles, duplicates removed.

    Discrete features (slice thickness takes a handful of values) give fewer, unequal
    bins; that is intended: each distinct value then has its own bin.
    """
    if n_bins < 2:
        raise ValueError(f"n_bins must be at least 2, got {n_bins}")
    values = np.asarray(reference_values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if values.size == 0:
        raise ValueError("quantile_edges needs at least one non-missing reference value")
    qs = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    edges: FloatArray = np.unique(np.quantile(values, qs))
    return edges


def bin_counts(values: Sequence[float] | FloatArray, edges: FloatArray) -> FloatArray:
    """Counts in bins (-inf, e1), [e1, e2), ..., [ek, inf), then one bin of missing (NaN)."""
    arr = np.asarray(values, dtype=np.float64)
    missing = np.isnan(arr)
    idx = np.searchsorted(edges, arr[~missing], side="right")
    counts = np.bincount(idx, minlength=edges.size + 1).astype(np.float64)
    return np.append(counts, float(missing.sum()))
