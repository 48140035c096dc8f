"""Jensen-Shannon distance between a reference and a current distribution.

    JS(p, q) = sqrt( (KL(p || m) + KL(q || m)) / 2 ),   m = (p + q) / 2

with natural logarithms unless `base` is given (base 2 bounds the distance by 1). Inputs
are counts or proportions along the last axis; each row is normalised to sum 1, as
`scipy.spatial.distance.jensenshannon` does, so the two agree. Empty categories need no
smoothing: 0 * ln(0) = 0 and m > 0 wherever either side is non-zero. Align categories
first with `surveillance.stats.psi.align_counts`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from surveillance.stats.psi import FloatArray, check_count_pair, proportions


def _kl_terms(p: FloatArray, m: FloatArray) -> FloatArray:
    """p * ln(p / m) where p > 0 (there m > 0 too), else 0; the logarithm taken only
    where it is used (calibration: millions of terms)."""
    used = np.broadcast_to(p > 0, m.shape)
    terms: FloatArray = np.divide(p, m, out=np.ones(m.shape), where=used)
    np.log(terms, out=terms)
    terms *= p
    return terms


def jensen_shannon_rows(
    reference: npt.ArrayLike, current: npt.ArrayLike, base: float | None = None
) -> FloatArray:
    """JS distance of each row pair (last axis = categories); rows broadcast."""
    return jensen_shannon_of_proportions(proportions(reference), proportions(current), base)


def jensen_shannon_of_proportions(
    p: FloatArray, q: FloatArray, base: float | None = None
) -> FloatArray:
    """`jensen_shannon_rows` of rows already made `proportions`."""
    m = (p + q) / 2.0
    divergence = (_kl_terms(p, m).sum(axis=-1) + _kl_terms(q, m).sum(axis=-1)) / 2.0
    if base is not None:
        divergence = divergence / math.log(base)
    result: FloatArray = np.sqrt(np.maximum(divergence, 0.0))
    return result


def jensen_shannon_distance(
    reference: Sequence[float], current: Sequence[float], base: float | None = None
) -> float:
    """JS distance between two count (or proportion) vectors over the same categories.

    Plain Python for one window (same formula as `jensen_shannon_rows`).

    >>> round(jensen_shannon_distance([1, 0], [0, 1], base=2), 12)
    1.0
    """
    check_count_pair(reference, current, "jensen_shannon_distance")
    if base is not None and (base <= 0 or base == 1):
        raise ValueError(f"base must be positive and not 1, got {base}")
    n_p, n_q = float(sum(reference)), float(sum(current))
    divergence = 0.0
    for a, b in zip(reference, current, strict=True):
        p, q = a / n_p, b / n_q
        m = (p + q) / 2
        if p > 0:
            divergence += p * math.log(p / m)
        if q > 0:
            divergence += q * math.log(q / m)
    divergence /= 2
    if base is not None:
        divergence /= math.log(base)
    return math.sqrt(max(divergence, 0.0))
