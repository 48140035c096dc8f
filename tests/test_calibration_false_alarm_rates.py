"""The calibrations keep their false-alarm budget, checked on fresh stable streams.

Oracle: each threshold is calibrated with one seed, then fresh stable quarters (or
windows) are drawn with another seed and another sampler, run through the river-checked
statistics, and the share that alarms is compared with the promised rate by an exact
binomial test (scipy.stats.binomtest; for the windows, whose fresh draws share a
reference, a one-sided t-test over the references' shares): not significantly above it
(p >= 0.001). Several reference shapes: Gaussian, skewed (beta), heavy-tailed
(lognormal), discrete (integer ages), bimodal. The order-statistic bound is checked
against scipy's binomial distribution. About 15 s of wall time in all (quiet).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom, binomtest, ttest_1samp

from surveillance.stats.chi_square import chi_square_rows
from surveillance.stats.drift_binning import drift_edges
from surveillance.stats.drift_calibration import calibrate_window_thresholds
from surveillance.stats.jensen_shannon import jensen_shannon_rows
from surveillance.stats.psi import bin_counts, psi_rows
from surveillance.stats.stream_calibration import (
    CONFIDENCE,
    calibrate_page_hinkley,
    order_statistic_bound,
    page_hinkley_statistics,
    quarters_for_rate,
)


def _reference(shape: str, rng: np.random.Generator, n: int = 4000) -> np.ndarray:
    values = {
        "normal": lambda: rng.normal(size=n),
        "gamma": lambda: rng.gamma(1.5, 1.0, n),
        "beta": lambda: rng.beta(1.2, 6.0, n),
        "lognormal": lambda: rng.lognormal(0.0, 1.0, n),
        "ages": lambda: rng.integers(18, 95, n).astype(np.float64),
        "bimodal": lambda: np.where(rng.random(n) < 0.3, rng.normal(-2, 0.5, n),
                                    rng.normal(1, 1, n)),
    }[shape]()
    return (values - values.mean()) / values.std(ddof=1)


def _fresh_alarm_share(reference: np.ndarray, threshold: float, per_quarter: int,
                       fresh: int) -> int:
    rng = np.random.default_rng(2024)
    alarms = 0
    for start in range(0, fresh, 800):
        quarters = rng.choice(reference, size=(min(800, fresh - start), per_quarter))
        statistic = page_hinkley_statistics(quarters, 30, 0.1, 1 - 1e-4)
        alarms += int((statistic > threshold).any(axis=1).sum())
    return alarms


def _assert_within_budget(alarms: int, trials: int, rate: float, what: str) -> None:
    above = binomtest(alarms, trials, rate, alternative="greater").pvalue
    print(f"{what}: {alarms}/{trials} fresh stable runs alarmed = {alarms / trials:.4f}, "
          f"budget {rate:.4f}, p(above budget) = {above:.3g}")
    assert above >= 0.001, f"{what}: false-alarm rate above its budget"


@pytest.mark.parametrize("shape", ["normal", "beta", "lognormal", "ages", "bimodal"])
def test_page_hinkley_threshold_keeps_the_budget_on_fresh_quarters(shape: str) -> None:
    """At the drift bank's own rate per feature (0.0024 per quarter, a default tool),
    its settings (delta 0.1 reference SDs, alpha 1 - 1e-4, 30 instances) and its number
    of simulated quarters (`quarters_for_rate`: 1,248)."""
    reference = _reference(shape, np.random.default_rng(1))
    rate, per_quarter, fresh = 0.0024, 2000, 16_000
    threshold = calibrate_page_hinkley(reference, per_quarter, rate, seed=7, delta=0.1,
                                       n_quarters=quarters_for_rate(rate, CONFIDENCE))
    alarms = _fresh_alarm_share(reference, threshold, per_quarter, fresh)
    _assert_within_budget(alarms, fresh, rate, f"Page-Hinkley, {shape} reference")


def test_page_hinkley_bound_is_not_vacuous_where_the_sample_resolves_the_rate() -> None:
    """With many quarters beyond the threshold (rate 0.05, 400 quarters: the 13th
    largest maximum) the threshold's rate is near the budget, not far below it."""
    reference = _reference("lognormal", np.random.default_rng(4))
    rate, per_quarter, fresh = 0.05, 1500, 4000
    threshold = calibrate_page_hinkley(reference, per_quarter, rate, seed=9, delta=0.1)
    alarms = _fresh_alarm_share(reference, threshold, per_quarter, fresh)
    _assert_within_budget(alarms, fresh, rate, "Page-Hinkley, rate 0.05")
    assert alarms / fresh >= rate / 3


@settings(max_examples=200, deadline=None, derandomize=True)
@given(n=st.integers(1, 20_000), rate=st.floats(1e-5, 0.5),
       confidence=st.sampled_from([0.5, 0.9, 0.95, 0.99]))
def test_order_statistic_bound_is_scipys_binomial_quantile(
    n: int, rate: float, confidence: float
) -> None:
    k = order_statistic_bound(n, rate, confidence)
    # The k-th largest of n bounds the (1 - rate) quantile unless at most k - 1 of the n
    # fall beyond it: P(Binomial(n, rate) <= k - 1) <= 1 - confidence, and k is largest.
    if k is None:
        assert binom.cdf(0, n, rate) > 1 - confidence - 1e-12
        assert quarters_for_rate(rate, confidence) > n
    else:
        assert binom.cdf(k - 1, n, rate) <= 1 - confidence + 1e-12
        assert binom.cdf(k, n, rate) > 1 - confidence - 1e-12
        assert quarters_for_rate(rate, confidence) <= n


WINDOW_TRUTHS = {
    # A categorical feature with a rare category and one the reference may miss.
    "categorical, rare": np.array([0.62, 0.25, 0.1, 0.025, 0.005]),
    "categorical, two": np.array([0.93, 0.07]),
}
CATEGORICAL_TESTS = ("psi", "jensen_shannon", "chi_square")


def _numeric_reference(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A continuous feature as the bank bins it: the reference's own quantile bins plus
    the empty tail and missing bins (`drift_binning`); a Uniform(0, 1) truth, so each
    bin's true probability is its width."""
    values = rng.random(n)
    edges = drift_edges(values, 10)
    counts = bin_counts(values, edges)
    widths = np.diff(np.concatenate([[0.0], np.clip(edges, 0.0, 1.0), [1.0]]))
    return counts, np.append(widths, 0.0)


#: References per truth: thresholds calibrated at 1.5x the budget fail the numeric and
#: rare truths here (p 8e-20, 1e-5), at 2x the two-category truth too (p 3e-5; at 1.5x
#: p = 0.006): the spread between references is wide where the reference has few of a
#: category.
REFERENCES = 40


def _categorical_reference(
    rng: np.random.Generator, n: int, p: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Category counts drawn from p, plus the bank's never-seen pseudo-category."""
    return np.append(rng.multinomial(n, p), 0.0), np.append(p, 0.0)


@pytest.mark.parametrize("truth", ["numeric", *WINDOW_TRUTHS])
def test_window_thresholds_keep_the_budget_over_references_and_fresh_windows(
    truth: str,
) -> None:
    """A stable tool: its 30-day reference (1,800 events) is one draw from the truth,
    the thresholds are calibrated on that reference (the bank's own null, a posterior
    predictive) and judged on fresh windows from the truth against that reference.
    Judged over `REFERENCES` references, so that the reference's own luck averages out
    as it does over a fleet of tools; the rate is a daily window's per-test share at 2
    features.
    Windows that share a reference are not independent (one reference's own rate spans
    about 0.1-1.6x the budget), so the evidence is the references' shares, by a
    one-sided t-test against the budget, not a binomial test over the pooled windows
    (which would count 1.2 million windows as independent and overstate it both ways)."""
    tests = ("psi",) if truth == "numeric" else CATEGORICAL_TESTS
    rate, per_window, windows = 1 / 2 / 91, 60.0, 30_000
    rng = np.random.default_rng(77)
    shares = []
    for i in range(REFERENCES):
        if truth == "numeric":
            reference, p = _numeric_reference(rng, 1800)
        else:
            reference, p = _categorical_reference(rng, 1800, WINDOW_TRUTHS[truth])
        thresholds = calibrate_window_thresholds(reference, per_window, rate, seed=i,
                                                 tests=tests)
        sizes = np.maximum(rng.poisson(per_window, windows), 20)
        fresh = rng.multinomial(sizes, p).astype(np.float64)
        alarm = psi_rows(reference, fresh) > thresholds.psi
        if truth != "numeric":
            alarm |= jensen_shannon_rows(reference, fresh) > thresholds.jensen_shannon
            alarm |= chi_square_rows(reference, fresh)[1] < thresholds.chi_square_p
        shares.append(float(alarm.mean()))
    above = ttest_1samp(shares, rate, alternative="greater").pvalue
    print(f"windows, {truth}: mean share {np.mean(shares):.4f} over {REFERENCES} references "
          f"(from {min(shares):.4f} to {max(shares):.4f}), budget {rate:.4f}, "
          f"p(above budget) = {above:.3g}")
    assert above >= 0.001, f"windows, {truth}: false-alarm rate above its budget"
