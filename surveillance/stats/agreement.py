"""Agreement between an AI tool's call and the radiologist's read, with 95% intervals.

`Confusion(tp, fp, tn, fn)` is immutable; rows are the AI call, columns the read:

                     read present   read absent
    AI positive          tp             fp
    AI negative          fn             tn

Each metric comes back as an `Estimate` (value, interval, numerator, denominator). A metric
whose denominator is zero (no positives yet, no AI-positive calls yet) has value and
interval `None`: nothing is divided by zero and nothing is invented. PPV and NPV carry the
window's prevalence with them, because a PPV means little without it.

Cohen's kappa uses the large-sample variance of Fleiss, Cohen & Everitt (1969), "Large
sample standard errors of kappa and weighted kappa", Psychol Bull 72:323-327 (Fleiss,
Levin & Paik, Statistical Methods for Rates and Proportions, 3rd ed., eq. 18.13), and a
Wald interval kappa +/- z*SE, clipped to kappa's range [-1, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from surveillance.stats.intervals import (
    StatsParameterError,
    clopper_pearson,
    two_sided_z,
    wilson,
)

IntervalMethod = Literal["wilson", "clopper_pearson"]


@dataclass(frozen=True, slots=True)
class Estimate:
    """A proportion numerator/denominator with its interval; `None` when undefined."""

    value: float | None
    interval: tuple[float, float] | None
    numerator: int
    denominator: int


@dataclass(frozen=True, slots=True)
class PredictiveValue(Estimate):
    """PPV or NPV, reported with the prevalence of the window it was measured in."""

    prevalence: Estimate


@dataclass(frozen=True, slots=True)
class KappaEstimate:
    """Cohen's kappa, its asymptotic standard error and Wald interval; `None` if undefined."""

    value: float | None
    se: float | None
    interval: tuple[float, float] | None
    n: int


def proportion(
    numerator: int,
    denominator: int,
    method: IntervalMethod = "wilson",
    confidence: float = 0.95,
) -> Estimate:
    """`numerator / denominator` with its interval, or value `None` when denominator is 0."""
    if denominator == 0:
        return Estimate(None, None, numerator, denominator)
    if method == "wilson":
        interval = wilson(numerator, denominator, confidence)
    elif method == "clopper_pearson":
        interval = clopper_pearson(numerator, denominator, confidence)
    else:
        raise StatsParameterError(
            f"unknown interval method {method!r}: use 'wilson' or 'clopper_pearson'"
        )
    return Estimate(numerator / denominator, interval, numerator, denominator)


@dataclass(frozen=True, slots=True)
class Confusion:
    """Counts of one window: AI call (rows) against the radiologist's read (columns)."""

    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0

    def __post_init__(self) -> None:
        for name in ("tp", "fp", "tn", "fn"):
            count = getattr(self, name)
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                raise StatsParameterError(
                    f"confusion count {name} must be a non-negative int, got {count!r}"
                )

    def __add__(self, other: Confusion) -> Confusion:
        return Confusion(
            self.tp + other.tp, self.fp + other.fp, self.tn + other.tn, self.fn + other.fn
        )

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    @property
    def positives(self) -> int:
        """Cases the read calls present: the sensitivity denominator."""
        return self.tp + self.fn

    @property
    def negatives(self) -> int:
        """Cases the read calls absent: the specificity denominator."""
        return self.tn + self.fp

    def sensitivity(self, method: IntervalMethod = "wilson", confidence: float = 0.95) -> Estimate:
        return proportion(self.tp, self.positives, method, confidence)

    def specificity(self, method: IntervalMethod = "wilson", confidence: float = 0.95) -> Estimate:
        return proportion(self.tn, self.negatives, method, confidence)

    def prevalence(self, method: IntervalMethod = "wilson", confidence: float = 0.95) -> Estimate:
        return proportion(self.positives, self.n, method, confidence)

    def accuracy(self, method: IntervalMethod = "wilson", confidence: float = 0.95) -> Estimate:
        return proportion(self.tp + self.tn, self.n, method, confidence)

    def ppv(self, method: IntervalMethod = "wilson", confidence: float = 0.95) -> PredictiveValue:
        est = proportion(self.tp, self.tp + self.fp, method, confidence)
        return PredictiveValue(
            est.value,
            est.interval,
            est.numerator,
            est.denominator,
            prevalence=self.prevalence(method, confidence),
        )

    def npv(self, method: IntervalMethod = "wilson", confidence: float = 0.95) -> PredictiveValue:
        est = proportion(self.tn, self.tn + self.fn, method, confidence)
        return PredictiveValue(
            est.value,
            est.interval,
            est.numerator,
            est.denominator,
            prevalence=self.prevalence(method, confidence),
        )

    def kappa(self, confidence: float = 0.95) -> KappaEstimate:
        """Cohen's kappa; undefined (None) with no cases or when a rater uses one category."""
        n = self.n
        if n == 0:
            return KappaEstimate(None, None, None, 0)
        z = two_sided_z(confidence)
        # Cell proportions p_ij (i = AI call, j = read) and the margins.
        p11, p12, p21, p22 = self.tp / n, self.fp / n, self.fn / n, self.tn / n
        row1, row2 = p11 + p12, p21 + p22
        col1, col2 = p11 + p21, p12 + p22
        observed = p11 + p22
        expected = row1 * col1 + row2 * col2
        if 0 in (self.tp + self.fp, self.fn + self.tn, self.tp + self.fn, self.fp + self.tn):
            # A rater put every case in one category. With both in the same one, chance
            # agreement is 1 and kappa is 0/0; with only one rater constant, observed and
            # chance agreement are equal whatever the other rater does, so kappa is 0 with
            # standard error 0 by construction: a number that measures nothing, reported
            # as undefined rather than as "no agreement, interval [0, 0]". Tested on the
            # integers, where it is exact.
            return KappaEstimate(None, None, None, n)
        kappa = (observed - expected) / (1.0 - expected)
        # Fleiss, Cohen & Everitt (1969): diagonal term, off-diagonal term, correction.
        diagonal = (
            p11 * (1.0 - (row1 + col1) * (1.0 - kappa)) ** 2
            + p22 * (1.0 - (row2 + col2) * (1.0 - kappa)) ** 2
        )
        off_diagonal = (1.0 - kappa) ** 2 * (p12 * (col1 + row2) ** 2 + p21 * (col2 + row1) ** 2)
        correction = (kappa - expected * (1.0 - kappa)) ** 2
        variance = (diagonal + off_diagonal - correction) / ((1.0 - expected) ** 2 * n)
        # Rounding can leave -1e-17 where the variance is exactly 0 (perfect agreement).
        se = math.sqrt(max(variance, 0.0))
        interval = (max(-1.0, kappa - z * se), min(1.0, kappa + z * se))
        return KappaEstimate(kappa, se, interval, n)
