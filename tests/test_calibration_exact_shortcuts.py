"""The calibration's shortcuts give the very thresholds of the plain computation.

- Each simulated window's statistics are computed once per distinct window and gathered
  (`window_shortcuts.distinct_rows`); thresholds must equal, to the bit, those of the
  statistics computed on every window (the shortcut switched off).
- PSI is summed from a table of its terms per (category, window total, count)
  (`window_shortcuts.psi_by_terms`): equal to the bit to `psi_of_proportions`.
- Page-Hinkley's quarters run time-major in groups (`stream_calibration._maxima`); the
  threshold must equal, to the bit, the plain bootstrap's order statistic of the
  river-checked statistics (`page_hinkley_statistics`)."""

from __future__ import annotations

from unittest.mock import patch

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from surveillance.stats import stream_calibration, window_shortcuts
from surveillance.stats.drift_calibration import _statistics, calibrate_window_thresholds
from surveillance.stats.psi import proportions, psi_of_proportions
from surveillance.stats.stream_calibration import (
    bootstrap_picks,
    calibrate_page_hinkley,
    order_statistic_bound,
    page_hinkley_statistics,
)
from surveillance.stats.window_shortcuts import distinct_rows, psi_by_terms


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    categories=st.integers(1, 9),
    rows=st.integers(1, 400),
    largest=st.integers(0, 300),
)
def test_statistics_ofdistinct_rows_gathered_equal_every_row_to_the_bit(
    seed: int, categories: int, rows: int, largest: int
) -> None:
    rng = np.random.default_rng(seed)
    # Few distinct values per column so that rows repeat; empty rows and columns too.
    windows = rng.integers(0, largest + 1, size=(rows, categories)).astype(np.float64)
    windows[rng.random(rows) < 0.5] = windows[0]
    reference = rng.integers(0, 50, size=categories).astype(np.float64)
    reference[0] += 1  # a positive total
    distinct, back = distinct_rows(windows)
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
    distinct, back = distinct_rows(wide)
    assert distinct is wide and back.tolist() == [0, 1, 2, 3]
    varied = np.arange(20.0).reshape(10, 2)
    distinct, back = distinct_rows(varied)
    assert distinct is varied
    repeated = np.array([[3.0, 1.0], [1.0, 3.0], [3.0, 1.0], [3.0, 1.0]])
    distinct, back = distinct_rows(repeated)
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
    with patch.object(window_shortcuts, "DISTINCT_SHARE", -1.0):
        plain = calibrate_window_thresholds(reference, events_per_window, 1 / 13 / 91, **kwargs)  # type: ignore[arg-type]
    assert repr(fast) == repr(plain)


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    events_per_quarter=st.integers(30, 160),
    n_quarters=st.integers(300, 900),
    quarter_values=st.integers(1, 60_000),
    mode=st.sampled_from(["up", "down", "both"]),
    reference_size=st.sampled_from([2, 37, 70_000]),
)
# Groups of 10 quarters of 31 values, the last one partial.
@example(seed=1, events_per_quarter=31, n_quarters=305, quarter_values=310, mode="both",
         reference_size=37)
def test_page_hinkley_threshold_equals_the_plain_bootstrap_of_river_statistics(
    seed: int, events_per_quarter: int, n_quarters: int, quarter_values: int, mode: str,
    reference_size: int,
) -> None:
    """`calibrate_page_hinkley` (quarters held in groups, time-major maxima) against the
    plain computation: the same groups of bootstrap indices (`bootstrap_picks`), each
    quarter's statistics by the river-checked recursion, the maxima's order statistic.
    Group sizes are forced small so that there are several and the last is partial."""
    reference = np.random.default_rng(seed).lognormal(size=reference_size)
    rate = 0.01
    rng = np.random.default_rng(seed)
    group = max(1, quarter_values // events_per_quarter)
    maxima = []
    for start in range(0, n_quarters, group):
        picks = bootstrap_picks(rng, reference.size, events_per_quarter,
                                min(group, n_quarters - start))
        quarters = reference[picks.T.astype(np.intp)]
        maxima.append(page_hinkley_statistics(quarters, 30, 0.1, 1 - 0.0001, mode)  # type: ignore[arg-type]
                      .max(axis=-1))
    every = np.concatenate(maxima)
    k = order_statistic_bound(n_quarters, rate, 0.95)
    assert k is not None
    plain = max(float(np.partition(every, every.size - k)[every.size - k]), 1e-6)
    with patch.object(stream_calibration, "_QUARTER_VALUES", quarter_values):
        fast = calibrate_page_hinkley(reference, events_per_quarter, rate, seed=seed,
                                      n_quarters=n_quarters, delta=0.1, mode=mode)  # type: ignore[arg-type]
    assert repr(fast) == repr(plain)


def test_bootstrap_picks_are_uniform_over_the_reference() -> None:
    """The indices, 16-bit or 32-bit, against the uniform distribution (scipy's chi-square
    goodness of fit), each index within the reference."""
    rng = np.random.default_rng(3)
    for size in (37, 70_000):
        picks = bootstrap_picks(rng, size, 700, 1000)
        assert picks.shape == (700, 1000) and int(picks.max()) < size
        assert picks.dtype == (np.uint16 if size <= 1 << 16 else np.uint32)
        observed = np.bincount((picks.astype(np.int64).ravel() * 20) // size, minlength=20)
        # Each of 20 cells holds floor or ceil(size / 20) of the indices.
        expected = np.bincount((np.arange(size) * 20) // size, minlength=20) * picks.size / size
        assert chisquare(observed, expected).pvalue > 1e-4


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    categories=st.integers(1, 14),
    rows=st.integers(1, 3000),
    largest=st.sampled_from([1, 5, 40, 300, 2000, 9000]),
    reference_zeros=st.integers(0, 3),
)
def test_psi_from_a_table_of_terms_equals_psi_of_the_proportions_to_the_bit(
    seed: int, categories: int, rows: int, largest: int, reference_zeros: int
) -> None:
    """PSI of each window from its per-(category, total, count) terms against `psi`'s own
    computation; windows of totals near and over 1 / EMPTY_BIN_PROPORTION included (the
    table then declines)."""
    rng = np.random.default_rng(seed)
    windows = rng.integers(0, largest + 1, size=(rows, categories)).astype(np.float64)
    windows[:, 0] += 1  # positive totals
    reference = rng.integers(1, 500, size=categories).astype(np.float64)
    reference[: min(reference_zeros, categories - 1)] = 0.0
    ref_share = proportions(reference)
    direct = psi_of_proportions(ref_share, proportions(windows))
    by_terms = psi_by_terms(ref_share, windows)
    if windows.sum(axis=-1).max() >= 10_000:
        assert by_terms is None
    if by_terms is not None:
        np.testing.assert_array_equal(by_terms.view(np.int64), direct.view(np.int64))
