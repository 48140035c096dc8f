"""`stats.fisher_exact.fisher_two_sided` against scipy's `fisher_exact`: the same float,
bit for bit (the daily label-free test's p-value goes into alerts and snapshots)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import fisher_exact

from surveillance.stats.fisher_exact import fisher_two_sided


def _scipy(a: int, b: int, c: int, d: int) -> float:
    return float(fisher_exact([[a, b], [c, d]], alternative="two-sided").pvalue)


def _same(ours: float, theirs: float) -> bool:
    return ours == theirs or (math.isnan(ours) and math.isnan(theirs))


counts = st.integers(min_value=0, max_value=3_000)


@settings(max_examples=400, deadline=None)
@given(counts, counts, counts, counts)
def test_any_table_gives_scipys_p_value(a: int, b: int, c: int, d: int) -> None:
    assert _same(fisher_two_sided(a, b, c, d), _scipy(a, b, c, d))


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 60), st.integers(0, 60), st.integers(1, 40))
def test_proportional_tables_tie_at_the_mode_as_scipy(a: int, b: int, k: int) -> None:
    # The second row a multiple of the first: the observed table is (near) the mode,
    # where the 1e-14 tolerance and the search's edges decide.
    assert _same(fisher_two_sided(a, b, a * k, b * k), _scipy(a, b, a * k, b * k))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 40), st.integers(0, 40), st.integers(200, 30_000),
       st.integers(200, 30_000))
def test_a_small_recent_week_against_a_large_reference(a: int, b: int, c: int, d: int
                                                       ) -> None:
    # The label-free test's shape: a week of calls against the reference period's.
    assert _same(fisher_two_sided(a, b, c, d), _scipy(a, b, c, d))


@pytest.mark.parametrize("table", [
    (0, 0, 0, 0), (0, 0, 5, 7), (3, 0, 4, 0), (1, 0, 0, 1), (0, 1, 1, 0), (10, 0, 0, 10),
    (0, 12, 9, 0), (500, 500, 500, 500), (1, 1000, 1000, 1),
])
def test_edges_give_scipys_p_value(table: tuple[int, int, int, int]) -> None:
    assert _same(fisher_two_sided(*table), _scipy(*table))


def test_a_negative_count_is_refused() -> None:
    with pytest.raises(ValueError, match="counts >= 0"):
        fisher_two_sided(1, -1, 2, 3)


def test_a_textbook_value() -> None:
    # Fisher's tea-tasting table [[3, 1], [1, 3]]: two-sided p = 34/70.
    assert fisher_two_sided(3, 1, 1, 3) == pytest.approx(34 / 70, rel=1e-12)
