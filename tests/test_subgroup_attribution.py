"""Subgroup attribution: Fisher exact tests against scipy, Holm against statsmodels, and
the family-wise error on even drops by Monte Carlo."""

from __future__ import annotations

from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest, fisher_exact
from statsmodels.stats.multitest import multipletests

from surveillance.clinical.subgroup_attribution import attribute_subgroup, holm_adjusted
from surveillance.stats.agreement import Confusion
from surveillance.stats.intervals import StatsParameterError


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=30))
def test_holm_adjusted_p_values_are_statsmodels(p_values: list[float]) -> None:
    # statsmodels' Holm branch runs `gc.collect()` on every call: a full collection of
    # the whole suite's heap (this test took 220 s late in a full run), not arithmetic.
    with patch("gc.collect"):
        theirs = multipletests(p_values, alpha=0.05, method="holm")[1]
    assert holm_adjusted(p_values) == pytest.approx(list(theirs), abs=1e-12)


def test_holm_on_a_worked_example() -> None:
    # m = 4 at 0.05: 0.005 <= 0.05/4 and 0.01 <= 0.05/3 are rejected, 0.03 > 0.05/2 stops.
    adjusted = holm_adjusted([0.01, 0.04, 0.03, 0.005])
    assert [a <= 0.05 for a in adjusted] == [True, False, False, True]


def test_a_drop_confined_to_one_scanner_names_it_with_scipys_fisher_p() -> None:
    by_dimension = {
        "scanner_manufacturer": {"GE": Confusion(tp=60, fn=40), "Siemens": Confusion(tp=95, fn=5)},
        "sex": {"F": Confusion(tp=78, fn=22), "M": Confusion(tp=77, fn=23)},
    }
    found = attribute_subgroup(by_dimension, "sensitivity")
    assert found is not None
    assert (found.dimension, found.subgroup, found.successes, found.n) == (
        "scanner_manufacturer", "GE", 60, 100,
    )
    p = fisher_exact([[40, 60], [5, 95]], alternative="greater").pvalue
    assert found.p_value == pytest.approx(p, rel=1e-12)
    assert found.tests == 4
    others = [
        fisher_exact(t, alternative="greater").pvalue
        for t in ([[40, 60], [5, 95]], [[5, 95], [40, 60]], [[22, 78], [23, 77]],
                  [[23, 77], [22, 78]])
    ]
    assert found.adjusted_p_value == pytest.approx(
        multipletests(others, method="holm")[1][0], rel=1e-12
    )
    assert (found.value, found.rest_value) == (0.60, 0.95)


def test_specificity_uses_false_positives_among_negatives() -> None:
    by_dimension = {"site": {"a": Confusion(tn=150, fp=50), "b": Confusion(tn=195, fp=5)}}
    found = attribute_subgroup(by_dimension, "specificity")
    assert found is not None and found.subgroup == "a"


def test_an_even_drop_names_no_subgroup() -> None:
    even = {"scanner_manufacturer": {"GE": Confusion(tp=80, fn=20), "X": Confusion(tp=40, fn=10)}}
    assert attribute_subgroup(even, "sensitivity") is None


def test_small_subgroups_and_single_subgroup_dimensions_are_not_tested() -> None:
    by_dimension = {
        "age_band": {"80+": Confusion(tp=0, fn=9), "40-64": Confusion(tp=90, fn=10)},
        "sex": {"F": Confusion(tp=10, fn=90)},
    }
    assert attribute_subgroup(by_dimension, "sensitivity", min_n=10) is None
    found = attribute_subgroup(by_dimension, "sensitivity", min_n=5)
    assert found is not None and found.subgroup == "80+"


def test_bad_arguments_raise() -> None:
    with pytest.raises(StatsParameterError):
        attribute_subgroup({}, "ppv")  # type: ignore[arg-type]
    with pytest.raises(StatsParameterError):
        attribute_subgroup({}, "sensitivity", alpha=1.0)


def test_even_drops_name_a_subgroup_at_most_alpha_of_the_time() -> None:
    """Monte Carlo: sensitivity 0.82 everywhere over 3 sites, 2 scanners, 2 sexes and 4 age
    bands (the monitor's dimensions): the chance of naming any subgroup is <= 0.05."""
    rng = np.random.default_rng(16)
    dims = {"site": [0.4, 0.35, 0.25], "scanner_manufacturer": [0.6, 0.4],
            "sex": [0.5, 0.5], "age_band": [0.1, 0.3, 0.4, 0.2]}
    runs, named = 400, 0
    for _ in range(runs):
        n = 200
        hit = rng.random(n) < 0.82
        by_dimension = {}
        for dim, weights in dims.items():
            group = rng.choice(len(weights), size=n, p=weights)
            by_dimension[dim] = {
                str(g): Confusion(tp=int((hit & (group == g)).sum()),
                                  fn=int((~hit & (group == g)).sum()))
                for g in range(len(weights))
            }
        named += attribute_subgroup(by_dimension, "sensitivity") is not None
    # Exact binomial test of "rate <= 0.05" does not reject at 1%.
    assert binomtest(named, runs, 0.05, alternative="greater").pvalue > 0.01
