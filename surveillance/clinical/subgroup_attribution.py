"""Does a shortfall concentrate in one site, scanner, sex or age band? Only if a test says so.

An alert that names a subgroup ("concentrated in scanner GE") sends people to that
scanner; naming one on a drop shared by all of them is a false lead. So a subgroup is
named only when a test with family-wise error control supports it:

- for every subgroup g of every dimension (site, scanner manufacturer, sex, age band),
  the one-sided Fisher exact test of "g fails more often than the rest of its dimension"
  on the 2x2 table (failures, successes) x (g, rest), scipy's `fisher_exact` with
  alternative="greater";
- Holm's step-down procedure (Holm 1979, Scand J Statist 6:65-70) over all those tests
  together, at family-wise level `alpha` (default 0.05): on a drop shared evenly by every
  subgroup, the chance of naming any subgroup is at most alpha whatever the number of
  dimensions and subgroups, and whatever their dependence.

Among the subgroups Holm rejects, the one with the smallest p-value is named; when none
is rejected the alert says that no subgroup stands out. Subgroups with fewer than `min_n`
cases in the metric's denominator are not tested (and so do not count in the correction).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from scipy.stats import fisher_exact

from surveillance.stats.agreement import Confusion
from surveillance.stats.intervals import StatsParameterError

Metric = Literal["sensitivity", "specificity"]
#: How the alert text names the test.
TEST_NAME = "one-sided Fisher exact tests of each subgroup against the rest, Holm-corrected"


@dataclass(frozen=True, slots=True)
class SubgroupFinding:
    """A subgroup that fails more often than the rest of its dimension, after Holm."""

    dimension: str
    subgroup: str
    metric: Metric
    value: float  # the metric in the subgroup
    rest_value: float  # the metric in the rest of its dimension
    successes: int
    n: int
    p_value: float  # the subgroup's own Fisher p-value
    adjusted_p_value: float  # Holm-adjusted
    tests: int  # subgroups tested (the size of the Holm family)


def holm_adjusted(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values, in the input order.

    The i-th smallest p (i from 0) is multiplied by m - i, then made non-decreasing along
    the ordering and capped at 1; a hypothesis is rejected at level alpha when its
    adjusted p is <= alpha.
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def _split(confusion: Confusion, metric: Metric) -> tuple[int, int]:
    """(failures, successes) of the metric in one confusion."""
    if metric == "sensitivity":
        return confusion.fn, confusion.tp
    return confusion.fp, confusion.tn


def attribute_subgroup(
    by_dimension: Mapping[str, Mapping[str, Confusion]],
    metric: Metric,
    alpha: float = 0.05,
    min_n: int = 10,
) -> SubgroupFinding | None:
    """The subgroup a shortfall of `metric` concentrates in, or None (see module doc)."""
    if metric not in ("sensitivity", "specificity"):
        raise StatsParameterError(f"unknown metric {metric!r}: use sensitivity or specificity")
    if not 0.0 < alpha < 1.0:
        raise StatsParameterError(f"alpha must be in (0, 1), got {alpha}")
    candidates: list[tuple[str, str, int, int, int, int, float]] = []
    for dimension, subgroups in by_dimension.items():
        if len(subgroups) < 2:
            continue  # one subgroup is the whole population: nothing to compare with
        split = {name: _split(c, metric) for name, c in subgroups.items()}
        fail_total = sum(f for f, _ in split.values())
        ok_total = sum(s for _, s in split.values())
        for name, (fail, ok) in split.items():
            rest_fail, rest_ok = fail_total - fail, ok_total - ok
            if fail + ok < max(min_n, 1) or rest_fail + rest_ok == 0:
                continue
            table = [[fail, ok], [rest_fail, rest_ok]]
            p = float(fisher_exact(table, alternative="greater").pvalue)
            candidates.append((dimension, name, fail, ok, rest_fail, rest_ok, p))
    if not candidates:
        return None
    adjusted = holm_adjusted([c[-1] for c in candidates])
    rejected = [(adj, c) for adj, c in zip(adjusted, candidates, strict=True) if adj <= alpha]
    if not rejected:
        return None
    adj, (dimension, name, fail, ok, rest_fail, rest_ok, p) = min(
        rejected, key=lambda r: (r[1][-1], r[1][0], r[1][1])
    )
    n, rest_n = fail + ok, rest_fail + rest_ok
    return SubgroupFinding(
        dimension=dimension,
        subgroup=name,
        metric=metric,
        value=ok / n,
        rest_value=rest_ok / rest_n,
        successes=ok,
        n=n,
        p_value=p,
        adjusted_p_value=adj,
        tests=len(candidates),
    )
