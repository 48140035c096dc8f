"""One-sided exact binomial test: is the true proportion below baseline - tolerance?

H0: p >= p0, H1: p < p0, with p0 = baseline - tolerance. The p-value is the lower tail
P(X <= successes | n, p0), computed through the regularized incomplete beta function,
P(X <= k) = I_{1-p0}(n - k, k + 1), which is exact (no normal approximation) at every n.
"""

from __future__ import annotations

from dataclasses import dataclass

from scipy.special import betainc

from surveillance.stats.intervals import StatsParameterError, check_counts


@dataclass(frozen=True, slots=True)
class BinomialTestResult:
    successes: int
    n: int
    reference: float
    p_value: float


def lower_tail_p_value(successes: int, n: int, reference: float) -> float:
    """P(X <= successes) for X ~ Binomial(n, reference); 1.0 when n == 0 (no evidence)."""
    check_counts(successes, n)
    if not 0.0 <= reference <= 1.0:
        raise StatsParameterError(f"reference proportion must be in [0, 1], got {reference}")
    if successes == n:
        return 1.0
    return float(betainc(n - successes, successes + 1, 1.0 - reference))


def below_reference(
    successes: int, n: int, baseline: float, tolerance: float
) -> BinomialTestResult:
    """Test `successes`/`n` against p0 = baseline - tolerance, one-sided (H1: p < p0)."""
    if not 0.0 <= baseline <= 1.0:
        raise StatsParameterError(f"baseline must be in [0, 1], got {baseline}")
    if not 0.0 <= tolerance <= baseline:
        raise StatsParameterError(f"tolerance must be in [0, baseline={baseline}], got {tolerance}")
    reference = baseline - tolerance
    return BinomialTestResult(successes, n, reference, lower_tail_p_value(successes, n, reference))
