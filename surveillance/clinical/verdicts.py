"""Verdicts: does a window's sensitivity/specificity still meet the tool's clearance baseline?

Per metric, one of
- `insufficient_data`: fewer read-positive (sensitivity) or read-negative (specificity)
  cases than the registry's `min_counts`; says how many more are needed;
- `below_baseline`: the one-sided exact binomial test of H0 p >= baseline - tolerance
  rejects at `alpha` (default 0.05);
- `within_baseline`: otherwise.

`locate_deviation` names the subgroup where a shortfall concentrates, and `chart_designs` /
`chart_observation` connect the same baselines to the two CUSUM charts of a tool.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from surveillance.clinical.baselines import ToolBaseline
from surveillance.contracts import CaseOutcome
from surveillance.stats.agreement import Confusion, Estimate, IntervalMethod
from surveillance.stats.binomial_test import below_reference
from surveillance.stats.cusum import ChartDesign, design_chart
from surveillance.stats.intervals import StatsParameterError

Metric = Literal["sensitivity", "specificity"]
METRICS: tuple[Metric, Metric] = ("sensitivity", "specificity")


class VerdictKind(StrEnum):
    INSUFFICIENT_DATA = "insufficient_data"
    WITHIN_BASELINE = "within_baseline"
    BELOW_BASELINE = "below_baseline"


@dataclass(frozen=True, slots=True)
class MetricVerdict:
    """One metric of one window against the clearance baseline."""

    metric: Metric
    kind: VerdictKind
    value: float | None
    interval: tuple[float, float] | None
    baseline: float
    tolerance: float
    reference: float  # baseline - tolerance, the H0 boundary
    successes: int
    n: int
    min_n: int
    more_needed: int
    p_value: float | None  # None when there is not enough data to test


def _estimate(confusion: Confusion, metric: Metric, method: IntervalMethod) -> Estimate:
    if metric == "sensitivity":
        return confusion.sensitivity(method)
    return confusion.specificity(method)


def _min_n(tool: ToolBaseline, metric: Metric) -> int:
    if metric == "sensitivity":
        return tool.min_counts.positives
    return tool.min_counts.negatives


def judge_metric(
    confusion: Confusion,
    tool: ToolBaseline,
    metric: Metric,
    alpha: float = 0.05,
    method: IntervalMethod = "wilson",
) -> MetricVerdict:
    """Verdict for `metric` ("sensitivity" or "specificity") of one window."""
    if not 0.0 < alpha < 1.0:
        raise StatsParameterError(f"alpha must be in (0, 1), got {alpha}")
    if metric not in METRICS:
        raise StatsParameterError(f"unknown metric {metric!r}: use one of {METRICS}")
    estimate = _estimate(confusion, metric, method)
    baseline = getattr(tool.baseline, metric).value
    tolerance = getattr(tool.tolerance, metric)
    min_n = _min_n(tool, metric)
    n = estimate.denominator
    p_value: float | None = None
    reference = baseline - tolerance
    kind = VerdictKind.INSUFFICIENT_DATA
    if n >= min_n:
        test = below_reference(estimate.numerator, n, baseline, tolerance)
        p_value, reference = test.p_value, test.reference
        kind = VerdictKind.BELOW_BASELINE if p_value < alpha else VerdictKind.WITHIN_BASELINE
    return MetricVerdict(
        metric=metric,
        kind=kind,
        value=estimate.value,
        interval=estimate.interval,
        baseline=baseline,
        tolerance=tolerance,
        reference=reference,
        successes=estimate.numerator,
        n=n,
        min_n=min_n,
        more_needed=max(0, min_n - n),
        p_value=p_value,
    )


def judge(
    confusion: Confusion,
    tool: ToolBaseline,
    alpha: float = 0.05,
    method: IntervalMethod = "wilson",
) -> dict[Metric, MetricVerdict]:
    """Sensitivity and specificity verdicts of one window."""
    return {metric: judge_metric(confusion, tool, metric, alpha, method) for metric in METRICS}


@dataclass(frozen=True, slots=True)
class SubgroupDeviation:
    """The subgroup holding the most failures beyond what the pooled rate predicts."""

    dimension: str
    subgroup: str
    metric: Metric
    value: float
    pooled_value: float
    successes: int
    n: int
    excess_failures: float  # n * pooled_value - successes
    p_value: float  # the subgroup's own one-sided test against baseline - tolerance


def locate_deviation(
    by_dimension: Mapping[str, Mapping[str, Confusion]],
    tool: ToolBaseline,
    metric: Metric,
    min_n: int = 1,
) -> SubgroupDeviation | None:
    """Name the subgroup where a shortfall of `metric` concentrates, or None.

    `by_dimension` maps a dimension ("scanner_manufacturer", "sex", "age_band") to the
    confusion of each of its subgroups over the same window. Within a dimension, a
    subgroup's excess failures are n_g * pooled - successes_g, where pooled is the metric
    over all subgroups of that dimension: the failures it has beyond what its size alone
    explains. A drop shared evenly by all subgroups gives every subgroup about zero; a
    drop confined to one scanner gives that scanner nearly all of it. We pick the largest
    excess over all dimensions, among subgroups with at least `min_n` cases in the
    metric's denominator, and return None when no subgroup has a positive excess. (The
    lowest subgroup value is not used: it is usually a small subgroup's noise.)
    """
    if metric not in METRICS:
        raise StatsParameterError(f"unknown metric {metric!r}: use one of {METRICS}")
    baseline = getattr(tool.baseline, metric).value
    tolerance = getattr(tool.tolerance, metric)
    best: SubgroupDeviation | None = None
    for dimension, subgroups in by_dimension.items():
        estimates = {name: _estimate(c, metric, "wilson") for name, c in subgroups.items()}
        total = sum(e.denominator for e in estimates.values())
        if total == 0:
            continue
        pooled = sum(e.numerator for e in estimates.values()) / total
        for name, est in estimates.items():
            if est.denominator < max(min_n, 1) or est.value is None:
                continue
            excess = est.denominator * pooled - est.numerator
            if excess <= 0 or (best is not None and excess <= best.excess_failures):
                continue
            test = below_reference(est.numerator, est.denominator, baseline, tolerance)
            best = SubgroupDeviation(
                dimension=dimension,
                subgroup=name,
                metric=metric,
                value=est.value,
                pooled_value=pooled,
                successes=est.numerator,
                n=est.denominator,
                excess_failures=excess,
                p_value=test.p_value,
            )
    return best


def chart_designs(
    tool: ToolBaseline,
    weekly_positives: float,
    weekly_negatives: float,
    false_alarms_per_year: float = 1.0,
) -> dict[Metric, ChartDesign]:
    """The tool's two CUSUM charts, sharing one false-alarm budget per year.

    Sensitivity chart: failure = a miss among read-positive cases, in control at
    1 - baseline, tuned for 1 - (baseline - tolerance). Specificity chart: the same with
    false positives among read-negative cases. Volumes are the tool's observed weekly
    counts of read-positive and read-negative cases.
    """
    designs: dict[Metric, ChartDesign] = {}
    volumes: tuple[tuple[Metric, float], ...] = (
        ("sensitivity", weekly_positives),
        ("specificity", weekly_negatives),
    )
    for metric, volume in volumes:
        baseline = getattr(tool.baseline, metric).value
        tolerance = getattr(tool.tolerance, metric)
        designs[metric] = design_chart(
            p0=1.0 - baseline,
            p1=1.0 - (baseline - tolerance),
            weekly_volume=volume,
            false_alarms_per_year=false_alarms_per_year,
            charts_per_tool=2,
        )
    return designs


_CHART_INPUT: dict[CaseOutcome, tuple[Metric, bool]] = {
    CaseOutcome.TP: ("sensitivity", False),
    CaseOutcome.FN: ("sensitivity", True),
    CaseOutcome.TN: ("specificity", False),
    CaseOutcome.FP: ("specificity", True),
}


def chart_observation(previous: CaseOutcome | None, new: CaseOutcome) -> tuple[Metric, bool] | None:
    """Which chart a case update feeds and whether it is a failure, or None.

    A CUSUM is sequential and cannot retract, so a case feeds a chart once: when it first
    enters the confusion matrix. Later corrections change the windows and verdicts, not
    the charts.
    """
    if previous in _CHART_INPUT:
        return None
    return _CHART_INPUT.get(new)
