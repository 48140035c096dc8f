"""Exact shortcuts of the window calibration (`stats.drift_calibration`): the same floats
as the plain computation, for less work on 100,000 simulated windows: pure.

- `distinct_rows`: simulated windows of a few categories and tens of events repeat; their
  statistics are computed once per distinct row and gathered back.
- `psi_by_terms`: a window's PSI from a table of its terms per (category, total, count).

Both are checked to the bit against the plain computation
(`tests/test_calibration_exact_shortcuts.py`).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from surveillance.stats.psi import EMPTY_BIN_PROPORTION, FloatArray, fill_empty_bins

#: Distinct windows above this share of all are not worth gathering (`distinct_rows`),
#: judged first on this many windows.
DISTINCT_SHARE = 0.5
SAMPLE_ROWS = 2000


def distinct_rows(windows: FloatArray) -> tuple[FloatArray, npt.NDArray[np.intp]]:
    """The distinct rows of `windows` (integer counts) and, for each window, its row there.

    A row's statistics depend on that row alone (the calibration works row by row), so
    computing them on the distinct rows and gathering gives every window the same floats.
    Rows are told apart by one integer key (the counts as digits in base max + 1), and
    the distinct rows are decoded from the distinct keys. When the key would not fit in
    63 bits, or most windows are distinct (judged on the first SAMPLE_ROWS), `windows`
    itself is returned with the identity gather.
    """
    n, k = windows.shape
    identity = np.arange(n)
    base = int(windows.max(initial=0)) + 1
    if n == 0 or k * math.log2(base) >= 62:
        return windows, identity
    counts = windows.astype(np.int64)
    keys = counts[:, 0].copy()
    for j in range(1, k):
        keys *= base
        keys += counts[:, j]
    sample = keys[:SAMPLE_ROWS]
    if np.unique(sample).size > DISTINCT_SHARE * sample.size:
        return windows, identity
    distinct, back = np.unique(keys, return_inverse=True)
    if distinct.size > DISTINCT_SHARE * n:
        return windows, identity
    rows = np.empty((distinct.size, k))
    for j in range(k - 1, -1, -1):
        distinct, rows[:, j] = np.divmod(distinct, base)
    return rows, back


def psi_by_terms(ref_share: FloatArray, windows: FloatArray) -> FloatArray | None:
    """`psi_of_proportions(ref_share, proportions(windows))` from a table of its terms.

    A window's PSI term for category j depends only on j, the window's count there and
    its total (the empty-bin floor is EMPTY_BIN_PROPORTION for every window under
    1 / EMPTY_BIN_PROPORTION events: its smallest non-zero share, >= 1 / total, is above
    it). Each term is computed once per (j, total, count) by the same operations on the
    same floats, gathered into the windows' rows and summed along the same axis: the
    same PSI to the bit. None (compute it directly) for windows it does not fit: totals
    of 0 or over the floor's limit, or a table larger than the windows.
    """
    n, k = windows.shape
    totals = windows.sum(axis=-1)
    if n == 0 or totals.min() <= 0 or totals.max() * EMPTY_BIN_PROPORTION >= 1:
        return None
    top = int(windows.max())
    present = np.bincount(totals.astype(np.int64))
    sizes = np.flatnonzero(present)
    if k * sizes.size * (top + 1) > n * k:
        return None
    size_index = np.cumsum(present > 0)[totals.astype(np.int64)] - 1
    count = np.arange(top + 1, dtype=np.float64)
    share = np.where(count > 0, count / sizes[:, None].astype(np.float64),
                     EMPTY_BIN_PROPORTION)
    ref = fill_empty_bins(ref_share)[:, None, None]
    terms = (ref - share) * np.log(ref / share)
    at = (np.arange(k) * sizes.size + size_index[:, None]) * (top + 1)
    at += windows.astype(np.int64)
    result: FloatArray = terms.ravel()[at].sum(axis=-1)
    return result
