"""The calibration's shortcuts give the very thresholds of the plain computation.

Each simulated window's statistics are computed once per distinct window and gathered
(`drift_calibration._distinct_rows`); thresholds must equal, to the bit, those of the
statistics computed on every window (the shortcut switched off)."""

from __future__ import annotations

from unittest.mock import patch

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from surveillance.stats import drift_calibration
from surveillance.stats.drift_calibration import (
    _distinct_rows,
    _statistics,
    calibrate_window_thresholds,
)
from surveillance.stats.psi import proportions


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    categories=st.integers(1, 9),
    rows=st.integers(1, 400),
    largest=st.integers(0, 300),
)
def test_statistics_of_distinct_rows_gathered_equal_every_row_to_the_bit(
    seed: int, categories: int, rows: int, largest: int
) -> None:
    rng = np.random.default_rng(seed)
    # Few distinct values per column so that rows repeat; empty rows and columns too.
    windows = rng.integers(0, largest + 1, size=(rows, categories)).astype(np.float64)
    windows[rng.random(rows) < 0.5] = windows[0]
    reference = rng.integers(0, 50, size=categories).astype(np.float64)
    reference[0] += 1  # a positive total
    distinct, back = _distinct_rows(windows)
    np.testing.assert_array_equal(distinct[back], windows)
    ref_share = proportions(reference)
    every = _statistics(reference, windows, ref_share, proportions(windows),
                        ("psi", "jensen_shannon", "chi_square"))
    once = _statistics(reference, distinct, ref_share, proportions(distinct),
                       ("psi", "jensen_shannon", "chi_square"))
    for test, values in every.items():
        # Bit patterns (NaN-safe, and -0.0 differs from 0.0).
        np.testing.assert_array_equal(once[test][back].view(np.int64), values.view(np.int64))


def test_rows_too_wide_for_one_key_or_mostly_distinct_are_kept_as_they_are() -> None:
    wide = np.full((4, 13), 200.0)
    distinct, back = _distinct_rows(wide)
    assert distinct is wide and back.tolist() == [0, 1, 2, 3]
    varied = np.arange(20.0).reshape(10, 2)
    distinct, back = _distinct_rows(varied)
    assert distinct is varied
    repeated = np.array([[3.0, 1.0], [1.0, 3.0], [3.0, 1.0], [3.0, 1.0]])
    distinct, back = _distinct_rows(repeated)
    assert distinct.tolist() == [[1.0, 3.0], [3.0, 1.0]]
    assert back.tolist() == [1, 0, 1, 1]


@settings(max_examples=6, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    reference=st.lists(st.integers(0, 3000), min_size=2, max_size=8).filter(
        lambda r: sum(r) > 0),
    events_per_window=st.floats(3.0, 150.0),
    gate=st.sampled_from([0.0, 0.05]),
)
def test_window_thresholds_equal_those_computed_on_every_window(
    seed: int, reference: list[int], events_per_window: float, gate: float
) -> None:
    """The calibration as it runs against the same calibration with the shortcut off
    (no window is ever "few enough distinct" when the share is 0)."""
    kwargs = dict(seed=seed, min_window_events=20, min_total_variation=gate,
                  window_sizes=[int(events_per_window)] * 5 + [20, 40])
    fast = calibrate_window_thresholds(reference, events_per_window, 1 / 13 / 91, **kwargs)  # type: ignore[arg-type]
    with patch.object(drift_calibration, "DISTINCT_SHARE", -1.0):
        plain = calibrate_window_thresholds(reference, events_per_window, 1 / 13 / 91, **kwargs)  # type: ignore[arg-type]
    assert repr(fast) == repr(plain)
