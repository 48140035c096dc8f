"""Verdicts: does a window's sensitivity/specificity still meet the tool's clearance baseline?

Per metric, one of
- `insufficient_data`: fewer read-positive (sensitivity) or read-negative (specificity)
  cases than the registry's `min_counts`; says how many more are needed;
- `below_baseline`: the one-sided exact binomial test of H0 p >= baseline - tolerance
  rejects at `alpha` (default 0.05);
- `within_baseline`: otherwise.

`chart_designs` / `chart_observation` connect the same baselines to the two CUSUM charts of
a tool (`clinical.subgroup_attribution` says where a shortfall concentrates).
"""

from __future__ import annotations

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


#: Where between the clearance baseline and the acceptance limit (baseline - tolerance) the
#: charts are in control, as a fraction of the tolerance: a tool performing at
#: baseline - tolerance / 2 is "in control" and stays within the false-alarm budget.
IN_CONTROL_FRACTION = 0.5


def chart_rates(tool: ToolBaseline, metric: Metric) -> tuple[float, float]:
    """(in-control, out-of-control) failure rates of a metric's chart.

    In control at baseline - tolerance/2 (`IN_CONTROL_FRACTION`), a point inside the
    tolerance, so a tool that the baseline test accepts does not use up the budget; tuned
    for baseline - 3 tolerance/2, the point as far beyond the acceptance limit as the
    in-control point is inside it. The chart's reference value (its drift per case
    switches sign there) is then close to the acceptance limit itself: the statistic
    drifts down while the metric is above baseline - tolerance and up below it.
    """
    baseline = getattr(tool.baseline, metric).value
    tolerance = getattr(tool.tolerance, metric)
    in_control = baseline - IN_CONTROL_FRACTION * tolerance
    out_of_control = max(baseline - (2.0 - IN_CONTROL_FRACTION) * tolerance, 1e-3)
    return 1.0 - in_control, 1.0 - out_of_control


def chart_design(
    tool: ToolBaseline, metric: Metric, weekly_volume: float, false_alarms_per_year: float
) -> ChartDesign:
    """One chart at `weekly_volume` cases of its kind, with its share of the budget.

    The reported detection delay is for a drop to the acceptance limit, baseline -
    tolerance.
    """
    p0, p1 = chart_rates(tool, metric)
    limit = getattr(tool.baseline, metric).value - getattr(tool.tolerance, metric)
    return design_chart(
        p0=p0,
        p1=p1,
        weekly_volume=weekly_volume,
        false_alarms_per_year=false_alarms_per_year,
        charts_per_tool=len(METRICS),
        p_detect=min(max(1.0 - limit, p0 + 1e-6), 1.0 - 1e-6),
    )


def chart_designs(
    tool: ToolBaseline,
    weekly_positives: float,
    weekly_negatives: float,
    false_alarms_per_year: float = 0.5,
) -> dict[Metric, ChartDesign]:
    """The tool's two CUSUM charts, sharing the charts' false-alarm budget per year.

    Sensitivity chart: failure = a miss among read-positive cases; specificity chart:
    a false positive among read-negative cases (rates from `chart_rates`). Volumes are the
    tool's observed weekly counts of read-positive and read-negative cases;
    `false_alarms_per_year` is the CUSUM family's share of the tool's budget.
    """
    return {
        "sensitivity": chart_design(tool, "sensitivity", weekly_positives, false_alarms_per_year),
        "specificity": chart_design(tool, "specificity", weekly_negatives, false_alarms_per_year),
    }


#: The chart a case feeds when it enters the confusion matrix, and whether it is a failure.
CHART_INPUT: dict[CaseOutcome, tuple[Metric, bool]] = {
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
    if previous in CHART_INPUT:
        return None
    return CHART_INPUT.get(new)
