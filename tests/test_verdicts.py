"""The one-sided exact test against scipy and by hand; verdicts against the real registry."""

from __future__ import annotations

from fractions import Fraction
from math import comb

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest

from surveillance.clinical.baselines import load_registry
from surveillance.clinical.verdicts import (
    VerdictKind,
    chart_designs,
    chart_observation,
    judge,
    judge_metric,
)
from surveillance.contracts import CaseOutcome
from surveillance.stats.agreement import Confusion
from surveillance.stats.binomial_test import below_reference, lower_tail_p_value
from surveillance.stats.cusum import cases_per_false_alarm
from surveillance.stats.intervals import StatsParameterError

PTX = load_registry()["ptx-triage"]  # sensitivity 0.927 - 0.05, specificity 0.973 - 0.03


# --- the exact binomial test ----------------------------------------------------------------


def test_lower_tail_by_hand() -> None:
    # P(X <= 7 | n=10, p=9/10) = 1 - sum_{k=8..10} C(10,k) 0.9^k 0.1^(10-k), in exact fractions.
    p = Fraction(9, 10)
    upper = sum(comb(10, k) * p**k * (1 - p) ** (10 - k) for k in range(8, 11))
    assert lower_tail_p_value(7, 10, 0.9) == pytest.approx(float(1 - upper), rel=1e-12)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(
    st.integers(min_value=1, max_value=5_000).flatmap(
        lambda n: st.tuples(st.integers(min_value=0, max_value=n), st.just(n))
    ),
    st.floats(min_value=0.0, max_value=1.0),
    st.floats(min_value=0.0, max_value=1.0),
)
def test_p_value_agrees_with_scipy_binomtest_less(
    xn: tuple[int, int], baseline: float, tolerance_share: float
) -> None:
    x, n = xn
    tolerance = baseline * tolerance_share
    result = below_reference(x, n, baseline, tolerance)
    expected = binomtest(x, n, p=result.reference, alternative="less").pvalue
    assert result.p_value == pytest.approx(expected, rel=1e-9, abs=1e-300)
    assert result.reference == baseline - tolerance


def test_no_cases_is_no_evidence() -> None:
    assert lower_tail_p_value(0, 0, 0.9) == 1.0


@pytest.mark.parametrize(("baseline", "tolerance"), [(1.2, 0.0), (0.9, -0.01), (0.05, 0.06)])
def test_impossible_baseline_or_tolerance_raises(baseline: float, tolerance: float) -> None:
    with pytest.raises(StatsParameterError):
        below_reference(5, 10, baseline, tolerance)


# --- verdicts ------------------------------------------------------------------------------


def test_too_few_positives_says_how_many_more_are_needed() -> None:
    verdict = judge_metric(Confusion(tp=20, fn=2, tn=300, fp=5), PTX, "sensitivity")
    assert verdict.kind is VerdictKind.INSUFFICIENT_DATA
    assert (verdict.n, verdict.min_n, verdict.more_needed, verdict.p_value) == (22, 25, 3, None)
    assert verdict.value == 20 / 22  # still reported, with its interval
    assert verdict.interval is not None


def test_sensitivity_below_baseline_and_specificity_within() -> None:
    verdicts = judge(Confusion(tp=80, fn=20, tn=900, fp=20), PTX)
    sens, spec = verdicts["sensitivity"], verdicts["specificity"]
    assert sens.kind is VerdictKind.BELOW_BASELINE
    assert sens.p_value == pytest.approx(
        binomtest(80, 100, p=0.927 - 0.05, alternative="less").pvalue, rel=1e-9
    )
    assert (sens.baseline, sens.tolerance, sens.n, sens.successes) == (0.927, 0.05, 100, 80)
    assert sens.reference == pytest.approx(0.877, abs=1e-15)
    assert spec.kind is VerdictKind.WITHIN_BASELINE
    assert spec.value == 900 / 920


@pytest.mark.parametrize("caught", range(78, 92))
def test_verdict_switches_exactly_where_scipy_p_value_crosses_alpha(caught: int) -> None:
    verdict = judge_metric(Confusion(tp=caught, fn=100 - caught), PTX, "sensitivity")
    p = binomtest(caught, 100, p=0.877, alternative="less").pvalue
    expected = VerdictKind.BELOW_BASELINE if p < 0.05 else VerdictKind.WITHIN_BASELINE
    assert verdict.kind is expected


def test_clopper_pearson_interval_on_request() -> None:
    verdict = judge_metric(Confusion(tp=80, fn=20), PTX, "sensitivity", method="clopper_pearson")
    ci = binomtest(80, 100).proportion_ci(confidence_level=0.95, method="exact")
    assert verdict.interval == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_bad_metric_or_alpha_raises() -> None:
    with pytest.raises(StatsParameterError):
        judge_metric(Confusion(tp=1), PTX, "ppv")  # type: ignore[arg-type]
    with pytest.raises(StatsParameterError):
        judge_metric(Confusion(tp=1), PTX, "sensitivity", alpha=0.0)


# --- CUSUM charts of a tool ----------------------------------------------------------------


def test_chart_designs_follow_the_registry_and_the_yearly_budget() -> None:
    designs = chart_designs(PTX, weekly_positives=40, weekly_negatives=360,
                            false_alarms_per_year=1.0)
    sens, spec = designs["sensitivity"], designs["specificity"]
    # In control halfway into the tolerance, tuned as far beyond the acceptance limit.
    assert (sens.p0, sens.p1) == pytest.approx((1 - 0.902, 1 - 0.852), abs=1e-12)
    assert (spec.p0, spec.p1) == pytest.approx((1 - 0.958, 1 - 0.928), abs=1e-12)
    assert sens.p_detect == pytest.approx(1 - 0.877, abs=1e-12)  # delay quoted at the limit
    assert sens.arl0_cases >= cases_per_false_alarm(40)  # two years of positives each,
    assert spec.arl0_cases >= cases_per_false_alarm(360)  # so one false alarm a tool-year
    assert sens.arl1_cases < sens.arl0_cases


@pytest.mark.parametrize(
    ("previous", "new", "expected"),
    [
        (None, CaseOutcome.TP, ("sensitivity", False)),
        (None, CaseOutcome.FN, ("sensitivity", True)),
        (CaseOutcome.PENDING, CaseOutcome.TN, ("specificity", False)),
        (CaseOutcome.UNLABELLED, CaseOutcome.FP, ("specificity", True)),
        (CaseOutcome.INDETERMINATE, CaseOutcome.FN, ("sensitivity", True)),
        (CaseOutcome.FN, CaseOutcome.TP, None),  # a correction: the chart already has it
        (None, CaseOutcome.PENDING, None),
        (CaseOutcome.TP, CaseOutcome.INDETERMINATE, None),
    ],
)
def test_chart_observation_feeds_each_case_once(
    previous: CaseOutcome | None, new: CaseOutcome, expected: object
) -> None:
    assert chart_observation(previous, new) == expected
