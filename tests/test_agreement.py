"""Confusion-matrix metrics: exact fractions, statsmodels' kappa, undefined metrics as None."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm
from statsmodels.stats.inter_rater import cohens_kappa
from statsmodels.stats.proportion import proportion_confint

from surveillance.stats.agreement import Confusion, KappaEstimate
from surveillance.stats.intervals import StatsParameterError


def test_metrics_of_a_worked_table() -> None:
    # 45 read-positive cases (40 caught), 55 read-negative (45 correctly negative).
    c = Confusion(tp=40, fp=10, tn=45, fn=5)
    assert (c.n, c.positives, c.negatives) == (100, 45, 55)
    assert c.sensitivity().value == 40 / 45
    assert c.specificity().value == 45 / 55
    assert c.ppv().value == 40 / 50
    assert c.npv().value == 45 / 50
    assert c.prevalence().value == 45 / 100
    assert c.accuracy().value == 85 / 100
    # Wilson by default, Clopper-Pearson on request, both as statsmodels computes them.
    assert c.sensitivity().interval == pytest.approx(
        proportion_confint(40, 45, method="wilson"), abs=1e-12
    )
    assert c.specificity("clopper_pearson").interval == pytest.approx(
        proportion_confint(45, 55, method="beta"), abs=1e-12
    )
    assert (c.sensitivity().numerator, c.sensitivity().denominator) == (40, 45)


def test_kappa_of_a_worked_table_by_hand() -> None:
    # po = 0.85; pe = 0.50*0.45 + 0.50*0.55 = 0.5; kappa = (0.85-0.5)/(1-0.5) = 0.7.
    k = Confusion(tp=40, fp=10, tn=45, fn=5).kappa()
    assert k.value == pytest.approx(0.7, abs=1e-15)


def test_predictive_values_carry_the_window_prevalence() -> None:
    c = Confusion(tp=9, fp=30, tn=60, fn=1)
    ppv, npv = c.ppv(), c.npv()
    assert ppv.prevalence.value == 10 / 100
    assert npv.prevalence == c.prevalence()
    assert ppv.prevalence.interval == pytest.approx(
        proportion_confint(10, 100, method="wilson"), abs=1e-12
    )


def test_undefined_metrics_are_none_not_errors() -> None:
    empty = Confusion()
    for metric in (
        empty.sensitivity(),
        empty.specificity(),
        empty.ppv(),
        empty.npv(),
        empty.prevalence(),
        empty.accuracy(),
    ):
        assert (metric.value, metric.interval, metric.denominator) == (None, None, 0)
    assert empty.kappa().value is None
    negatives_only = Confusion(tn=7, fp=1)
    assert negatives_only.sensitivity().value is None
    assert negatives_only.ppv().value == 0.0  # one AI-positive call, wrong
    assert negatives_only.npv().value == 1.0
    assert negatives_only.specificity().value == 7 / 8
    # All cases in one cell: chance agreement is 1, kappa is 0/0.
    assert Confusion(tp=5).kappa() == KappaEstimate(None, None, None, 5)
    assert Confusion(tn=3).kappa() == KappaEstimate(None, None, None, 3)


def test_perfect_agreement_has_kappa_one_and_zero_se() -> None:
    k = Confusion(tp=3, tn=5).kappa()
    assert (k.value, k.se, k.interval) == (1.0, 0.0, (1.0, 1.0))


def _both_raters_vary(t: tuple[int, int, int, int]) -> bool:
    tp, fp, tn, fn = t
    return min(tp + fp, fn + tn, tp + fn, fp + tn) > 0


cells = st.tuples(*(st.integers(min_value=0, max_value=2_000) for _ in range(4)))
tables = cells.filter(_both_raters_vary)
one_rater_constant = cells.filter(lambda t: sum(t) > 0 and not _both_raters_vary(t))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(one_rater_constant)
def test_kappa_with_a_rater_using_one_category_is_undefined(
    cells: tuple[int, int, int, int],
) -> None:
    tp, fp, tn, fn = cells
    # statsmodels (the oracle) gives such a table kappa 0 or nan with variance 0 whatever
    # the other rater does: the figure measures nothing, so ours is undefined, not 0 [0, 0].
    theirs = cohens_kappa(np.array([[tp, fp], [fn, tn]]))
    assert np.isnan(theirs.kappa) or theirs.kappa == pytest.approx(0.0, abs=1e-12)
    assert Confusion(tp=tp, fp=fp, tn=tn, fn=fn).kappa() == KappaEstimate(
        None, None, None, tp + fp + tn + fn
    )


# statsmodels warns dividing by a zero null-hypothesis SE (z for kappa = 0) we do not use.
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(tables, st.floats(min_value=0.5, max_value=0.999))
def test_kappa_and_its_se_agree_with_statsmodels(
    cells: tuple[int, int, int, int], confidence: float
) -> None:
    tp, fp, tn, fn = cells
    ours = Confusion(tp=tp, fp=fp, tn=tn, fn=fn).kappa(confidence)
    theirs = cohens_kappa(np.array([[tp, fp], [fn, tn]]))
    assert ours.value == pytest.approx(theirs.kappa, abs=1e-9)
    # statsmodels' rounding can leave -1e-17 where a variance is 0, whose square root is
    # nan. Compare variances, which are defined in both.
    assert ours.se is not None
    assert ours.se**2 == pytest.approx(theirs.var_kappa, abs=1e-12)
    their_se = np.sqrt(max(theirs.var_kappa, 0.0))
    assert ours.se == pytest.approx(their_se, abs=1e-9)
    # statsmodels' own interval is at 95%; at other levels rebuild its Wald form.
    z = norm.isf((1 - confidence) / 2)
    lo, hi = theirs.kappa - z * their_se, theirs.kappa + z * their_se
    assert ours.interval == pytest.approx((max(-1.0, lo), min(1.0, hi)), abs=1e-9)


def test_kappa_interval_at_95_percent_is_statsmodels_interval() -> None:
    theirs = cohens_kappa(np.array([[40, 10], [5, 45]]))
    ours = Confusion(tp=40, fp=10, tn=45, fn=5).kappa()
    assert ours.interval == pytest.approx((theirs.kappa_low, theirs.kappa_upp), abs=1e-12)


def test_kappa_is_the_same_whichever_rater_is_rows() -> None:
    a = Confusion(tp=20, fp=7, tn=50, fn=3).kappa()
    b = Confusion(tp=20, fp=3, tn=50, fn=7).kappa()
    assert a.value == pytest.approx(b.value, abs=1e-15)
    assert a.se == pytest.approx(b.se, abs=1e-15)


def test_confusions_add_cellwise() -> None:
    assert Confusion(1, 2, 3, 4) + Confusion(10, 20, 30, 40) == Confusion(11, 22, 33, 44)


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_bad_counts_raise(bad: object) -> None:
    with pytest.raises(StatsParameterError):
        Confusion(tp=bad)  # type: ignore[arg-type]


def test_unknown_interval_method_raises() -> None:
    with pytest.raises(StatsParameterError):
        Confusion(tp=1, fn=1).sensitivity("wald")  # type: ignore[arg-type]
