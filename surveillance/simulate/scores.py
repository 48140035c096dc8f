"""Class-conditional AI scores calibrated to a tool's operating point.

Scores of read-positive studies follow Beta(a, b_pos) and of read-negative studies
Beta(a_neg, b); `a` and `b` are solved (Brent's method on the exact beta CDF) so that

    P(score >= threshold | positive) = sensitivity
    P(score <  threshold | negative) = specificity

The fixed shape parameters (`ScoreShape`) set how spread the scores are without moving the
operating point, which is how a vendor update that keeps the cleared operating point but
changes the score distribution is simulated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import optimize, stats

#: Scores are rounded like a vendor's JSON payload; the positive call uses the rounded value.
SCORE_DECIMALS = 4

_LOW, _HIGH = 1e-3, 1e4


@dataclass(frozen=True, slots=True)
class ScoreShape:
    positive_b: float = 2.0
    negative_a: float = 1.5


#: The shape a vendor's update ships with: more confident scores, same operating point.
UPDATED_SHAPE = ScoreShape(positive_b=1.0, negative_a=0.8)


@dataclass(frozen=True, slots=True)
class ScoreModel:
    positive_a: float
    positive_b: float
    negative_a: float
    negative_b: float

    def scores(
        self, uniform: NDArray[np.float64], truth: NDArray[np.bool_]
    ) -> NDArray[np.float64]:
        """Rounded scores by inverse CDF of `uniform` draws; `truth` True where present.

        Inverse-CDF sampling lets one uniform draw per study serve whichever model applies
        to it, so a scenario switching models changes no other study's score.
        """
        pos = stats.beta.ppf(uniform, self.positive_a, self.positive_b)
        neg = stats.beta.ppf(uniform, self.negative_a, self.negative_b)
        return np.asarray(np.round(np.where(truth, pos, neg), SCORE_DECIMALS), dtype=np.float64)


def solve_score_model(
    sensitivity: float, specificity: float, threshold: float, shape: ScoreShape = ScoreShape()
) -> ScoreModel:
    """Beta parameters putting `sensitivity` / `specificity` exactly at `threshold`."""
    for name, value in (("sensitivity", sensitivity), ("specificity", specificity),
                        ("threshold", threshold)):
        if not 0.0 < value < 1.0:
            raise ValueError(f"{name} must be strictly between 0 and 1, got {value}")
    b_pos = shape.positive_b
    a_neg = shape.negative_a
    # The survival function at the threshold rises monotonically with `a`; the CDF with `b`.
    a_pos = optimize.brentq(
        lambda a: float(stats.beta.sf(threshold, a, b_pos)) - sensitivity, _LOW, _HIGH,
        xtol=1e-12,
    )
    b_neg = optimize.brentq(
        lambda b: float(stats.beta.cdf(threshold, a_neg, b)) - specificity, _LOW, _HIGH,
        xtol=1e-12,
    )
    return ScoreModel(float(a_pos), b_pos, a_neg, float(b_neg))
