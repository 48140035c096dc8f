"""Binomial intervals against a published worked example, statsmodels, and exact coverage."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom
from statsmodels.stats.proportion import proportion_confint

from surveillance.errors import SurveillanceError
from surveillance.stats import intervals
from surveillance.stats.intervals import StatsParameterError, clopper_pearson, wilson

# Newcombe RG. Two-sided confidence intervals for the single proportion: comparison of seven
# methods. Stat Med 1998;17:857-872, Table I (95% intervals, four decimals): method 3 is
# the Wilson score interval without continuity correction, method 5 the exact
# Clopper-Pearson interval.
NEWCOMBE_1998_TABLE_I = [
    # (r, n, (method 3 lower, upper), (method 5 lower, upper))
    (81, 263, (0.2553, 0.3662), (0.2527, 0.3676)),
    (15, 148, (0.0624, 0.1605), (0.0578, 0.1617)),
    (0, 20, (0.0000, 0.1611), (0.0000, 0.1684)),
    (1, 29, (0.0061, 0.1718), (0.0009, 0.1776)),
]


@pytest.mark.parametrize(("r", "n", "score", "exact"), NEWCOMBE_1998_TABLE_I)
def test_matches_newcombe_1998_table_i_at_published_precision(
    r: int, n: int, score: tuple[float, float], exact: tuple[float, float]
) -> None:
    assert tuple(round(bound, 4) for bound in wilson(r, n)) == score
    assert tuple(round(bound, 4) for bound in clopper_pearson(r, n)) == exact


counts = st.integers(min_value=1, max_value=100_000).flatmap(
    lambda n: st.tuples(st.integers(min_value=0, max_value=n), st.just(n))
)
confidences = st.floats(min_value=0.5, max_value=0.999)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(counts, confidences)
def test_wilson_agrees_with_statsmodels(xn: tuple[int, int], confidence: float) -> None:
    x, n = xn
    expected = proportion_confint(x, n, alpha=1 - confidence, method="wilson")
    assert wilson(x, n, confidence) == pytest.approx(expected, abs=1e-9)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(counts, confidences)
def test_clopper_pearson_agrees_with_statsmodels(xn: tuple[int, int], confidence: float) -> None:
    x, n = xn
    expected = proportion_confint(x, n, alpha=1 - confidence, method="beta")
    assert clopper_pearson(x, n, confidence) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("n", [10, 37])
def test_clopper_pearson_covers_at_least_nominal_for_every_true_proportion(n: int) -> None:
    # Exact coverage: sum of Binomial(n, p) probabilities of the counts whose interval holds p.
    bounds = [clopper_pearson(x, n) for x in range(n + 1)]
    for i in range(1, 200):
        p = i / 200
        coverage = sum(binom.pmf(x, n, p) for x, (lo, hi) in enumerate(bounds) if lo <= p <= hi)
        assert coverage >= 0.95 - 1e-12, (n, p, coverage)


@pytest.mark.parametrize("method", [wilson, clopper_pearson])
def test_no_cases_gives_the_whole_unit_interval(method: object) -> None:
    assert callable(method)
    assert method(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize("method", [wilson, clopper_pearson])
def test_all_or_nothing_counts_reach_the_ends_exactly(method: object) -> None:
    assert callable(method)
    assert method(0, 12)[0] == 0.0
    assert method(12, 12)[1] == 1.0
    assert method(12, 12)[0] < 1.0


@pytest.mark.parametrize(
    ("x", "n", "confidence"),
    [(-1, 5, 0.95), (6, 5, 0.95), (0, -1, 0.95), (1, 5, 0.0), (1, 5, 1.0)],
)
def test_impossible_parameters_raise(x: int, n: int, confidence: float) -> None:
    for method in (wilson, clopper_pearson):
        with pytest.raises(StatsParameterError):
            method(x, n, confidence)
    assert issubclass(StatsParameterError, SurveillanceError)
    assert issubclass(StatsParameterError, ValueError)


def test_docstring_examples_run() -> None:
    result = doctest.testmod(intervals)
    assert result.attempted == 2
    assert result.failed == 0
