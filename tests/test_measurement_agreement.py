"""Agreement of two measurement methods: Bland-Altman, ICC(A,1), Lin's concordance.

Oracles: the published worked example of Bland & Altman 1986 (Lancet i:307-310, Table 1:
peak expiratory flow, Wright vs mini Wright meter, first readings of 17 subjects), scipy's
t interval of a mean, pingouin's intraclass correlation, and theory (interval coverage
on simulated data, the population value of Lin's coefficient).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pingouin as pg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ttest_1samp

from surveillance.stats.bland_altman import bland_altman
from surveillance.stats.icc import icc_absolute_agreement
from surveillance.stats.intervals import StatsParameterError
from surveillance.stats.lin_concordance import lin_ccc

# Bland & Altman 1986, Table 1 (l/min), first reading with each meter.
WRIGHT = [494, 395, 516, 434, 476, 557, 413, 442, 650, 433, 417, 656, 267, 478, 178, 423, 427]
MINI = [512, 430, 520, 428, 500, 600, 364, 380, 658, 445, 432, 626, 260, 477, 259, 350, 451]


def test_bland_altman_reproduces_the_published_example() -> None:
    # The paper: mean difference -2.1, SD 38.8, limits -2.1 -/+ 2 x 38.8 = -79.7 and 75.5.
    ba = bland_altman(WRIGHT, MINI, loa_coverage=math.erf(2 / math.sqrt(2)))
    assert round(ba.bias.value, 1) == -2.1
    assert round(ba.sd, 1) == 38.8
    assert ba.lower_loa.value == pytest.approx(-79.7, abs=0.1)
    assert ba.upper_loa.value == pytest.approx(75.5, abs=0.1)


def test_bias_interval_is_the_t_interval_of_the_differences() -> None:
    diffs = np.subtract(WRIGHT, MINI)
    expected = ttest_1samp(diffs, 0.0).confidence_interval(0.95)
    ba = bland_altman(WRIGHT, MINI)
    assert ba.bias.lower == pytest.approx(expected.low, rel=1e-12)
    assert ba.bias.upper == pytest.approx(expected.high, rel=1e-12)
    # The paper's own (approximate) interval: -2.1 -/+ 2.12 x 9.4.
    assert ba.bias.lower == pytest.approx(-2.1 - 2.12 * 9.4, abs=0.2)


def test_limit_interval_is_wider_than_bland_altmans_approximation_at_small_n() -> None:
    # Their approximation sqrt(3 s^2 / n) is known to be too narrow (Carkeet 2015).
    ba = bland_altman(WRIGHT, MINI)
    approx_half = 2.12 * math.sqrt(3 * ba.sd**2 / 17)
    assert ba.upper_loa.upper - ba.upper_loa.lower > 2 * approx_half


def test_limit_intervals_cover_the_true_limits_at_the_nominal_rate() -> None:
    rng = np.random.default_rng(20)
    n, reps, mu, sigma = 15, 1000, 1.0, 2.0
    true_upper = mu + 1.959964 * sigma
    true_lower = mu - 1.959964 * sigma
    covered_upper = covered_lower = 0
    for _ in range(reps):
        d = rng.normal(mu, sigma, n)
        ba = bland_altman(d.tolist(), [0.0] * n)
        covered_upper += ba.upper_loa.lower <= true_upper <= ba.upper_loa.upper
        covered_lower += ba.lower_loa.lower <= true_lower <= ba.lower_loa.upper
    # 0.95 -/+ 3 binomial SDs (0.0069) of 1000 replications.
    assert 0.929 <= covered_upper / reps <= 0.971
    assert 0.929 <= covered_lower / reps <= 0.971


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=3, max_size=40),
    st.floats(-100, 100, allow_nan=False),
    st.integers(0, 2**32 - 1),
)
def test_bland_altman_moves_with_a_constant_offset_and_flips_with_the_sign(
    reference: list[float], offset: float, seed: int
) -> None:
    noise = np.random.default_rng(seed).normal(0.0, 1.0, len(reference))
    ai = (np.asarray(reference) + noise).tolist()
    base = bland_altman(ai, reference)
    moved = bland_altman([a + offset for a in ai], reference)
    flipped = bland_altman(reference, ai)
    assert moved.bias.value == pytest.approx(base.bias.value + offset, abs=1e-6)
    assert moved.upper_loa.upper - moved.upper_loa.lower == pytest.approx(
        base.upper_loa.upper - base.upper_loa.lower, abs=1e-6)
    assert flipped.upper_loa.value == pytest.approx(-base.lower_loa.value, abs=1e-6)
    assert flipped.upper_loa.lower == pytest.approx(-base.lower_loa.upper, abs=1e-6)
    assert base.lower_loa.lower <= base.lower_loa.value <= base.lower_loa.upper


def _pingouin_icc_a1(ai: list[float], reference: list[float]) -> tuple[float, list[float]]:
    n = len(ai)
    frame = pd.DataFrame({"subject": list(range(n)) * 2, "method": ["ai"] * n + ["ref"] * n,
                          "value": list(ai) + list(reference)})
    table = pg.intraclass_corr(frame, "subject", "method", "value").set_index("Type")
    row = table.loc["ICC(A,1)"] if "ICC(A,1)" in table.index else table.loc["ICC2"]
    return float(row["ICC"]), [float(c) for c in row["CI95"]]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_icc_equals_pingouin(seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth = rng.lognormal(2.7, 0.8, 40)
    reference = (truth + rng.normal(0, 2, 40)).tolist()
    ai = (truth + 1.5 + rng.normal(0, 2, 40)).tolist()
    expected, (low, high) = _pingouin_icc_a1(ai, reference)
    got = icc_absolute_agreement(ai, reference)
    assert got.value == pytest.approx(expected, abs=1e-9)
    # pingouin rounds its interval to two decimals.
    assert got.lower == pytest.approx(low, abs=0.005 + 1e-9)
    assert got.upper == pytest.approx(high, abs=0.005 + 1e-9)


def test_icc_of_the_published_example_equals_pingouin() -> None:
    expected, (low, high) = _pingouin_icc_a1(WRIGHT, MINI)
    got = icc_absolute_agreement(WRIGHT, MINI)
    assert got.value == pytest.approx(expected, abs=1e-9)
    assert (round(got.lower, 2), round(got.upper, 2)) == (low, high)


def test_icc_of_a_pure_offset_equals_pingouin() -> None:
    # No random error at all (error mean square 0), only a constant offset of 5.
    reference = [3.0, 7.5, 12.0, 20.0, 31.0, 44.0]
    ai = [r + 5.0 for r in reference]
    with np.errstate(divide="ignore", invalid="ignore"):
        expected, _ = _pingouin_icc_a1(ai, reference)  # pingouin's interval is NaN here
    got = icc_absolute_agreement(ai, reference)
    assert got.value == pytest.approx(expected, abs=1e-9) and got.value < 1.0
    assert -1.0 <= got.lower <= got.value <= got.upper <= 1.0


def test_icc_penalises_a_systematic_offset() -> None:
    rng = np.random.default_rng(5)
    reference = rng.normal(50, 10, 50)
    ai = reference + rng.normal(0, 2, 50)
    assert icc_absolute_agreement((ai + 8).tolist(), reference.tolist()).value < (
        icc_absolute_agreement(ai.tolist(), reference.tolist()).value - 0.1)


def _population_ccc(mu_x: float, mu_y: float, sx: float, sy: float, rho: float) -> float:
    return 2 * rho * sx * sy / (sx**2 + sy**2 + (mu_x - mu_y) ** 2)


def test_lin_ccc_interval_covers_the_population_value_at_the_nominal_rate() -> None:
    rng = np.random.default_rng(89)
    mu_x, mu_y, sx, sy, rho = 20.0, 18.5, 6.0, 5.0, 0.9
    truth = _population_ccc(mu_x, mu_y, sx, sy, rho)
    cov = [[sx**2, rho * sx * sy], [rho * sx * sy, sy**2]]
    reps, covered = 1000, 0
    for _ in range(reps):
        x, y = rng.multivariate_normal([mu_x, mu_y], cov, 60).T
        ccc = lin_ccc(x.tolist(), y.tolist())
        covered += ccc.lower <= truth <= ccc.upper
    assert 0.929 <= covered / reps <= 0.971


def test_lin_ccc_converges_to_the_population_value() -> None:
    rng = np.random.default_rng(7)
    mu_x, mu_y, sx, sy, rho = 10.0, 12.0, 3.0, 4.0, 0.8
    cov = [[sx**2, rho * sx * sy], [rho * sx * sy, sy**2]]
    x, y = rng.multivariate_normal([mu_x, mu_y], cov, 200_000).T
    assert lin_ccc(x.tolist(), y.tolist()).value == pytest.approx(
        _population_ccc(mu_x, mu_y, sx, sy, rho), abs=0.005)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(-5, 5), st.floats(0.5, 2.0))
def test_lin_ccc_is_pearson_times_bias_correction(seed: int, shift: float, scale: float) -> None:
    rng = np.random.default_rng(seed)
    y = rng.normal(10, 3, 30)
    x = scale * y + shift + rng.normal(0, 1, 30)
    r = float(np.corrcoef(x, y)[0, 1])
    sx, sy = float(x.std()), float(y.std())
    u = (x.mean() - y.mean()) / math.sqrt(sx * sy)
    c_b = 2 / (sx / sy + sy / sx + u**2)
    ccc = lin_ccc(x.tolist(), y.tolist())
    assert ccc.value == pytest.approx(r * c_b, rel=1e-9)
    assert abs(ccc.value) <= abs(r) + 1e-12
    assert ccc.lower <= ccc.value <= ccc.upper


def test_exact_agreement_gives_one_with_no_spread() -> None:
    values = [1.0, 2.5, 7.0, 9.5, 12.0]
    assert lin_ccc(values, values).value == pytest.approx(1.0)
    assert icc_absolute_agreement(values, values).value == 1.0


@pytest.mark.parametrize(
    ("ai", "reference", "message"),
    [
        ([1.0, 2.0], [1.0, 2.0], "at least 3"),
        ([1.0, 2.0, 3.0], [1.0, 2.0], "equally long"),
        ([1.0, math.nan, 3.0], [1.0, 2.0, 3.0], "finite"),
        ([1.0, math.inf, 3.0], [1.0, 2.0, 3.0], "finite"),
    ],
)
def test_bad_input_raises_a_clear_error(ai: list[float], reference: list[float],
                                        message: str) -> None:
    with pytest.raises(StatsParameterError, match=message):
        bland_altman(ai, reference)


def test_constant_method_is_a_clear_error_for_concordance() -> None:
    with pytest.raises(StatsParameterError, match="same value"):
        lin_ccc([5.0] * 6, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    with pytest.raises(StatsParameterError, match="confidence"):
        bland_altman(WRIGHT, MINI, confidence=1.0)
