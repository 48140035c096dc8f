"""Local validation of a tool version before it goes live: acceptance against the registry.

`validate(tool, cases, version)` judges adjudicated local cases against the registry's
`acceptance:` block of `tool`:

- ``min_positives`` / ``min_negatives``: enough read-positive and read-negative cases;
- ``sensitivity_lower_bound`` / ``specificity_lower_bound``: the LOWER bound of the
  two-sided Wilson interval (95% by default, `stats.intervals.wilson`) is at or above the
  criterion, so the tool meets it with 97.5% one-sided confidence, not just on average;
- ``subgroup_floor``: the point estimate of sensitivity and specificity in every subgroup
  (site, scanner manufacturer, sex, age band) is at or above the floor. A subgroup with fewer
  than `min_subgroup_n` cases in the metric's denominator is reported as ``insufficient``
  and does not decide the verdict (one missed case among three is not evidence).

Only TP/FP/TN/FN cases count; a case re-emitted with a higher revision replaces the earlier
one (the highest revision per `case_id` wins). The version passes when every criterion that
could be evaluated passes and none of the four overall criteria is insufficient.

Sample size (``SampleSize``): when the counts are short, how many more positives (negatives)
are needed. The required n is the larger of the registry minimum and the smallest n for
which, if the tool performs at its clearance baseline proportion p, the Wilson lower bound
of floor(p * n) successes out of n reaches the criterion. It is the count needed if the tool
performs as cleared; a tool performing worse needs more, or cannot pass. When p does not
exceed the criterion no n suffices and `required` is None. The search stops at 10,000.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict

from surveillance.clinical.baselines import Acceptance, ToolBaseline
from surveillance.contracts import AdjudicatedCase, CaseOutcome
from surveillance.stats.agreement import Confusion, Estimate
from surveillance.stats.intervals import wilson
from surveillance.stats.windows import age_band

Metric = Literal["sensitivity", "specificity"]
Dimension = Literal["site", "scanner_manufacturer", "sex", "age_band"]
DIMENSIONS: tuple[Dimension, ...] = ("site", "scanner_manufacturer", "sex", "age_band")
MAX_SAMPLE_SIZE = 10_000
_DECIDED = frozenset({CaseOutcome.TP, CaseOutcome.FP, CaseOutcome.TN, CaseOutcome.FN})


class Status(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INSUFFICIENT = "insufficient"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Proportion(_Frozen):
    successes: int
    n: int
    value: float | None
    lower: float | None
    upper: float | None


class Criterion(_Frozen):
    name: Literal[
        "min_positives",
        "min_negatives",
        "sensitivity_lower_bound",
        "specificity_lower_bound",
        "subgroup_floor",
    ]
    metric: Metric | None = None
    subgroup: dict[str, str] | None = None
    observed: float | None
    threshold: float
    status: Status
    detail: str


class SubgroupCounts(_Frozen):
    dimension: Dimension
    level: str
    tp: int
    fp: int
    tn: int
    fn: int
    sensitivity: Proportion
    specificity: Proportion


class SampleSize(_Frozen):
    metric: Metric
    expected: float
    criterion: float
    registry_minimum: int
    required: int | None
    have: int
    more_needed: int | None


class ValidationResult(_Frozen):
    tool_id: str
    software_version: str | None
    confidence: float
    acceptance: Acceptance
    tp: int
    fp: int
    tn: int
    fn: int
    cases_undecided: int
    sensitivity: Proportion
    specificity: Proportion
    criteria: list[Criterion]
    subgroups: list[SubgroupCounts]
    sample_size: list[SampleSize]
    passed: bool


def _proportion(estimate: Estimate) -> Proportion:
    lower, upper = estimate.interval if estimate.interval is not None else (None, None)
    return Proportion(
        successes=estimate.numerator,
        n=estimate.denominator,
        value=estimate.value,
        lower=lower,
        upper=upper,
    )


def _confusion(cases: Iterable[AdjudicatedCase]) -> Confusion:
    counts = {o: 0 for o in _DECIDED}
    for case in cases:
        counts[case.outcome] += 1
    return Confusion(
        tp=counts[CaseOutcome.TP],
        fp=counts[CaseOutcome.FP],
        tn=counts[CaseOutcome.TN],
        fn=counts[CaseOutcome.FN],
    )


def _level(case: AdjudicatedCase, dimension: Dimension) -> str:
    if dimension == "age_band":
        return age_band(case.age)
    if dimension == "sex":
        return str(case.sex)
    return str(getattr(case, dimension))


def required_n(expected: float, criterion: float, confidence: float = 0.95) -> int | None:
    """Smallest n whose Wilson lower bound at floor(expected * n) successes >= criterion."""
    if expected <= criterion:
        return None
    for n in range(1, MAX_SAMPLE_SIZE + 1):
        # 1e-9 keeps floor(0.962 * 1000) at 962 despite binary rounding.
        successes = math.floor(expected * n + 1e-9)
        if wilson(successes, n, confidence)[0] >= criterion:
            return n
    return None


def _sample_size(
    metric: Metric, expected: float, criterion: float, minimum: int, have: int, confidence: float
) -> SampleSize:
    needed = required_n(expected, criterion, confidence)
    required = None if needed is None else max(minimum, needed)
    return SampleSize(
        metric=metric,
        expected=expected,
        criterion=criterion,
        registry_minimum=minimum,
        required=required,
        have=have,
        more_needed=None if required is None else max(0, required - have),
    )


def _count_criterion(
    name: Literal["min_positives", "min_negatives"], have: int, need: int
) -> Criterion:
    kind = "positives" if name == "min_positives" else "negatives"
    return Criterion(
        name=name,
        observed=float(have),
        threshold=float(need),
        status=Status.PASS if have >= need else Status.FAIL,
        detail=f"{have} read-{kind} cases, {need} required",
    )


def _bound_criterion(metric: Metric, estimate: Proportion, criterion: float) -> Criterion:
    name: Literal["sensitivity_lower_bound", "specificity_lower_bound"] = (
        "sensitivity_lower_bound" if metric == "sensitivity" else "specificity_lower_bound"
    )
    if estimate.lower is None:
        return Criterion(
            name=name,
            metric=metric,
            observed=None,
            threshold=criterion,
            status=Status.INSUFFICIENT,
            detail=f"no cases in the {metric} denominator",
        )
    ok = estimate.lower >= criterion
    return Criterion(
        name=name,
        metric=metric,
        observed=estimate.lower,
        threshold=criterion,
        status=Status.PASS if ok else Status.FAIL,
        detail=(
            f"{metric} {estimate.successes}/{estimate.n}, lower bound {estimate.lower:.4f} "
            f"{'>=' if ok else '<'} {criterion}"
        ),
    )


def _floor_criteria(group: SubgroupCounts, floor: float, min_n: int) -> list[Criterion]:
    out = []
    pairs: tuple[tuple[Metric, Proportion], ...] = (
        ("sensitivity", group.sensitivity),
        ("specificity", group.specificity),
    )
    for metric, estimate in pairs:
        where = f"{group.dimension}={group.level}"
        if estimate.n < min_n or estimate.value is None:
            status = Status.INSUFFICIENT
            detail = f"{where}: {metric} on {estimate.n} cases, fewer than {min_n}"
        else:
            status = Status.PASS if estimate.value >= floor else Status.FAIL
            detail = (
                f"{where}: {metric} {estimate.successes}/{estimate.n} = {estimate.value:.4f} "
                f"{'>=' if status == Status.PASS else '<'} floor {floor}"
            )
        out.append(
            Criterion(
                name="subgroup_floor",
                metric=metric,
                subgroup={group.dimension: group.level},
                observed=estimate.value,
                threshold=floor,
                status=status,
                detail=detail,
            )
        )
    return out


def latest_revisions(cases: Iterable[AdjudicatedCase]) -> list[AdjudicatedCase]:
    """One case per case_id: the highest revision (first seen wins a tie)."""
    latest: dict[str, AdjudicatedCase] = {}
    for case in cases:
        kept = latest.get(case.case_id)
        if kept is None or case.revision > kept.revision:
            latest[case.case_id] = case
    return list(latest.values())


def validate(
    tool: ToolBaseline,
    cases: Iterable[AdjudicatedCase],
    version: str | None = None,
    confidence: float = 0.95,
    min_subgroup_n: int = 10,
) -> ValidationResult:
    """Judge the cases of `tool` (and `version`, when given) against its acceptance block."""
    acceptance = tool.acceptance
    mine = [
        c
        for c in latest_revisions(cases)
        if c.tool_id == tool.tool_id and (version is None or c.software_version == version)
    ]
    decided = [c for c in mine if c.outcome in _DECIDED]
    overall = _confusion(decided)
    sensitivity = _proportion(overall.sensitivity("wilson", confidence))
    specificity = _proportion(overall.specificity("wilson", confidence))

    subgroups = []
    for dimension in DIMENSIONS:
        levels = sorted({_level(c, dimension) for c in decided})
        for level in levels:
            confusion = _confusion(c for c in decided if _level(c, dimension) == level)
            subgroups.append(
                SubgroupCounts(
                    dimension=dimension,
                    level=level,
                    tp=confusion.tp,
                    fp=confusion.fp,
                    tn=confusion.tn,
                    fn=confusion.fn,
                    sensitivity=_proportion(confusion.sensitivity("wilson", confidence)),
                    specificity=_proportion(confusion.specificity("wilson", confidence)),
                )
            )

    core = [
        _count_criterion("min_positives", overall.positives, acceptance.min_positives),
        _count_criterion("min_negatives", overall.negatives, acceptance.min_negatives),
        _bound_criterion("sensitivity", sensitivity, acceptance.sensitivity),
        _bound_criterion("specificity", specificity, acceptance.specificity),
    ]
    floors = [
        c for g in subgroups for c in _floor_criteria(g, acceptance.subgroup_floor, min_subgroup_n)
    ]
    passed = all(c.status == Status.PASS for c in core) and all(
        c.status != Status.FAIL for c in floors
    )
    sample_size = [
        _sample_size(
            "sensitivity",
            tool.baseline.sensitivity.value,
            acceptance.sensitivity,
            acceptance.min_positives,
            overall.positives,
            confidence,
        ),
        _sample_size(
            "specificity",
            tool.baseline.specificity.value,
            acceptance.specificity,
            acceptance.min_negatives,
            overall.negatives,
            confidence,
        ),
    ]
    return ValidationResult(
        tool_id=tool.tool_id,
        software_version=version,
        confidence=confidence,
        acceptance=acceptance,
        tp=overall.tp,
        fp=overall.fp,
        tn=overall.tn,
        fn=overall.fn,
        cases_undecided=len(mine) - len(decided),
        sensitivity=sensitivity,
        specificity=specificity,
        criteria=core + floors,
        subgroups=subgroups,
        sample_size=sample_size,
        passed=passed,
    )
