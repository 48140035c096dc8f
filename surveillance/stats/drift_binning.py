"""Bin edges for a numeric drift feature that leave no change unseen.

Plain reference-quantile bins have a blind spot: when one value holds most of the
reference (kVp 120 on 90% of head CTs, slice thickness 5 mm), the quantiles coincide,
the duplicate edges collapse, and every value above the common one shares its bin, so a
move 120 -> 140 kV leaves the bin counts unchanged. Here:

- discrete features (at most `n_bins` distinct reference values) get one bin per value,
  cut at the midpoints between neighbouring values, plus an empty bin below the smallest
  and one above the largest value: a new value on either side is a shift;
- continuous features get the quantile bins, and each atom (a value holding at least
  1/`n_bins` of the reference: a near-constant feature's common value) gets a bin of its
  own, so that the values just above and below it are told apart; both tails beyond the
  reference's range get their own (empty) bins too.

Edges go with `psi.bin_counts` (bins [e_i, e_i+1), one more bin for missing values). The
empty tail bins make the drift calibration's null depend on how often a value outside the
reference appears; `drift_calibration` simulates that from the reference itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from surveillance.stats.psi import FloatArray, quantile_edges


def _just_above(value: float) -> float:
    """An edge right above `value` that float noise in a repeated value does not cross."""
    return value + 1e-9 * max(1.0, abs(value))


def is_discrete(reference_values: Sequence[float] | FloatArray, n_bins: int) -> bool:
    """At most `n_bins` distinct non-missing reference values."""
    values = np.asarray(reference_values, dtype=np.float64)
    return int(np.unique(values[~np.isnan(values)]).size) <= n_bins


def drift_edges(reference_values: Sequence[float] | FloatArray, n_bins: int) -> FloatArray:
    """Interior bin edges of a numeric feature (see the module docstring)."""
    if n_bins < 2:
        raise ValueError(f"n_bins must be at least 2, got {n_bins}")
    values = np.asarray(reference_values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if values.size == 0:
        raise ValueError("drift_edges needs at least one non-missing reference value")
    distinct, counts = np.unique(values, return_counts=True)
    low, high = float(distinct[0]), _just_above(float(distinct[-1]))
    if distinct.size <= n_bins:
        mids = (distinct[:-1] + distinct[1:]) / 2
        edges: FloatArray = np.concatenate([[low], mids, [high]])
        return edges
    atoms = distinct[counts >= values.size / n_bins]
    around_atoms = [edge for a in atoms for edge in (float(a), _just_above(float(a)))]
    inner = quantile_edges(values, n_bins)
    inner = inner[(inner > low) & (inner < high)]
    merged: FloatArray = np.unique(np.concatenate([[low], inner, around_atoms, [high]]))
    return merged
