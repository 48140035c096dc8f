"""Thresholds of the per-event river detectors from a false-alarm rate per quarter.

The drift bank gives a continuous numeric feature's per-event detector half of the
feature's share of the drift budget (`drift_calibration`), as a rate per quarter.
Each simulated quarter is an i.i.d. bootstrap of the reference values
(standardised by the reference mean and SD, as the bank feeds them), events_per_quarter
long. Page-Hinkley has a closed-form recursion that is evaluated for all simulated
quarters at once (`page_hinkley_statistics`, checked against river in the tests).

Page-Hinkley's threshold bounds the (1 - rate) quantile of the quarter's maximum
statistic, so that the share of quarters with at least one alarm is at most the rate
(after a false alarm the detector restarts; a second false alarm in the same quarter has
probability about rate^2, which the budget absorbs only approximately). The bound is the
distribution-free order-statistic one: of n simulated maxima, the k-th largest exceeds
the (1 - r) quantile unless at most k - 1 of the n fall beyond it, which has probability
P(Binomial(n, r) <= k - 1); the threshold is the k-th largest maximum for the largest k
with that probability <= 5%, so the threshold's true rate is at most r with 95%
confidence, whatever the shape of the distribution. The fewest quarters that allow it
are ln(20) / r (k = 1, the largest maximum): 1,250 at the default tool's rate 0.0024
per quarter, against the 10 / r (4,170) of a point estimate with 10 expected
exceedances, whose rate was within +-32% and above r half the time. The price: the
threshold sits near the (1 - r/3) quantile, about one Gumbel scale higher (a few percent
of the threshold). A fitted tail (Gumbel, exponential peaks over a threshold) would need
fewer quarters but ran 1.5-3.4 times over the budget on fresh skewed and bimodal streams.

ADWIN's delta and KSWIN's alpha have no such recursion: `calibrate_stream_detector` runs
the real detector on the simulated quarters for each candidate and keeps the most
sensitive candidate whose mean alarms per quarter is within the rate.

Reproducible: everything is drawn from numpy's PCG64 seeded by `seed`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy.signal import lfilter

from surveillance.stats.drift_calibration import MIN_DIVERGENCE_THRESHOLD
from surveillance.stats.numeric_drift import DriftParameterError, NumericDriftDetector
from surveillance.stats.psi import FloatArray


def _delta_ramp(length: int, delta: float, alpha: float) -> FloatArray:
    """delta * (1 + alpha + ... + alpha^(t-1)) for t = 1..length: the filtered constant.

    The filter is linear, so filter(dev -+ delta) = filter(dev) -+ this ramp: one
    filter pass over the simulated values instead of two (equal up to rounding).
    """
    ramp: FloatArray = delta * lfilter([1.0], [1.0, -alpha], np.ones(length))
    return ramp


def page_hinkley_statistics(
    values: npt.ArrayLike,
    min_instances: int,
    delta: float,
    alpha: float,
    mode: Literal["up", "down", "both"] = "both",
) -> FloatArray:
    """river.drift.PageHinkley's test statistic after each update, without resets.

    Rows are independent streams (last axis = time). The detector alarms at the first
    position where the statistic exceeds its threshold; before `min_instances` values
    the statistic is -inf (river does not test there).
    """
    x = np.atleast_2d(np.asarray(values, dtype=np.float64))
    t = np.arange(1, x.shape[-1] + 1, dtype=np.float64)
    dev = x - np.cumsum(x, axis=-1) / t
    s = lfilter([1.0], [1.0, -alpha], dev, axis=-1)
    ramp = _delta_ramp(x.shape[-1], delta, alpha)
    s_inc, s_dec = s - ramp, s + ramp
    test_inc = s_inc - np.minimum.accumulate(s_inc, axis=-1)
    # river starts its running maximum of the decrease sum at -1, not at -inf.
    test_dec = np.maximum.accumulate(np.maximum(s_dec, -1.0), axis=-1) - s_dec
    if mode == "up":
        stat = test_inc
    elif mode == "down":
        stat = test_dec
    else:
        stat = np.maximum(test_inc, test_dec)
    result: FloatArray = np.where(t >= min_instances, stat, -np.inf)
    return result


#: Values per time segment in `page_hinkley_maxima`: its temporaries stay in cache.
_MAXIMA_BLOCK = 1 << 17


def page_hinkley_maxima(
    values: npt.ArrayLike,
    min_instances: int,
    delta: float,
    alpha: float,
    mode: Literal["up", "down", "both"] = "both",
) -> FloatArray:
    """Each row's largest `page_hinkley_statistics` value (what calibration needs)."""
    x = np.atleast_2d(np.asarray(values, dtype=np.float64))
    return _maxima(lambda a, b: np.ascontiguousarray(x[:, a:b].T), x.shape[0], x.shape[-1],
                   min_instances, delta, alpha, mode)


def _maxima(
    columns: Callable[[int, int], FloatArray],
    rows: int,
    length: int,
    min_instances: int,
    delta: float,
    alpha: float,
    mode: Literal["up", "down", "both"],
) -> FloatArray:
    """`page_hinkley_maxima` of the streams whose values at times a..b-1 are
    `columns(a, b)`, one row per time and one column per stream.

    Time-major: the running sums, minima and maxima then run along the first axis, each
    step one vector operation over all streams, instead of one dependent step at a time
    per stream (the accumulations were ~4 ns a value). Each stream still sees the same
    operations on the same floats in the same order: the mean by a running sum divided
    by t, `lfilter`'s recursion s = alpha * s + dev (its Z + b0 * x with b0 = 1, Z =
    0 * x - (-alpha) * s), the +-delta sums as s -+ the ramp, so the maxima are equal to
    the bit (tests: against the full statistics, which are checked against river).
    Segments of time carry each stream's sum, s, running minimum and maximum across.
    """
    out = np.full(rows, -np.inf)
    if length < min_instances or rows == 0:
        return out
    t = np.arange(1, length + 1, dtype=np.float64)
    first = max(min_instances, 1) - 1
    ramp = _delta_ramp(length, delta, alpha)
    # Each stream's running sum, s, running minimum and maximum, carried across segments.
    total, s = np.zeros(rows), np.zeros(rows)
    low, peak = np.full(rows, np.inf), np.full(rows, -np.inf)
    scaled = np.empty(rows)
    step = max(1, _MAXIMA_BLOCK // rows)
    for a in range(0, length, step):
        b = min(a + step, length)
        x = columns(a, b)
        # Each sequential step is one vector operation over the streams (numpy's
        # accumulate runs along the axis one stream at a time, ~4 ns a value).
        running = np.empty_like(x)
        for i in range(b - a):
            total = np.add(total, x[i], out=running[i])
        # The carries are copies: their rows are changed in place below.
        total = total.copy()
        running /= t[a:b, None]
        dev = np.subtract(x, running, out=running)
        for i in range(b - a):
            np.multiply(s, alpha, out=scaled)
            s = np.add(dev[i], scaled, out=dev[i])
        s = s.copy()
        kept = slice(max(first - a, 0), None) if b > first else None
        if mode != "down":
            inc = np.subtract(dev, ramp[a:b, None])
            least = np.empty_like(inc)
            for i in range(b - a):
                low = np.minimum(low, inc[i], out=least[i])
            low = low.copy()
            inc -= least
            if kept is not None:
                np.maximum(out, inc[kept].max(axis=0), out=out)
        if mode != "up":
            dev += ramp[a:b, None]
            most = np.maximum(dev, -1.0)
            for i in range(b - a):
                peak = np.maximum(peak, most[i], out=most[i])
            peak = peak.copy()
            most -= dev
            if kept is not None:
                np.maximum(out, most[kept].max(axis=0), out=out)
    return out


def _bootstrap_quarters(
    reference_values: FloatArray, events_per_quarter: int, n_quarters: int, seed: int
) -> FloatArray:
    rng = np.random.default_rng(seed)
    return rng.choice(reference_values, size=(n_quarters, events_per_quarter))


def order_statistic_bound(n: int, rate: float, confidence: float) -> int | None:
    """The largest k such that the k-th largest of n samples is above the (1 - rate)
    quantile with probability >= confidence: P(Binomial(n, rate) <= k - 1) <= 1 -
    confidence. None when even the largest sample is not (n too small)."""
    log_pmf = n * math.log1p(-rate)  # P(B = 0)
    log_odds = math.log(rate) - math.log1p(-rate)
    cdf = 0.0
    k = 0
    while k <= n:
        cdf += math.exp(log_pmf)
        if cdf > 1 - confidence:
            break
        k += 1
        log_pmf += math.log(n - k + 1) - math.log(k) + log_odds
    return k if k >= 1 else None


def quarters_for_rate(rate: float, confidence: float) -> int:
    """Fewest simulated quarters whose largest maximum bounds the (1 - rate) quantile
    with `confidence`: (1 - rate)^n <= 1 - confidence."""
    return math.ceil(math.log(1 - confidence) / math.log1p(-rate))


def _check_stream_inputs(
    reference_values: Sequence[float] | FloatArray, events_per_quarter: int, rate: float
) -> FloatArray:
    ref = np.asarray(reference_values, dtype=np.float64)
    ref = ref[~np.isnan(ref)]
    if ref.size < 2:
        raise DriftParameterError("calibration needs at least 2 non-missing reference values")
    if events_per_quarter < 2:
        raise DriftParameterError(f"events_per_quarter must be >= 2, got {events_per_quarter}")
    if not 0 < rate < 1:
        raise DriftParameterError(f"rate per quarter must be in (0, 1), got {rate}")
    return ref


def _gather(
    values: FloatArray, picks: npt.NDArray[np.unsignedinteger[Any]]
) -> Callable[[int, int], FloatArray]:
    """The picked values at times a..b-1 (`picks`: one row per time, one column per
    stream), one row per time (`_maxima`'s columns): contiguous rows of `picks`."""

    def columns(a: int, b: int) -> FloatArray:
        taken: FloatArray = np.take(values, picks[a:b])
        return taken

    return columns


#: Bootstrapped values held at once by `calibrate_page_hinkley` (as 16- or 32-bit
#: indices); the quarters are drawn in groups of this many values (the draws depend on it).
_QUARTER_VALUES = 1 << 24
#: Confidence that a Page-Hinkley threshold's true rate is within its share (module doc).
CONFIDENCE = 0.95


def bootstrap_picks(
    rng: np.random.Generator, reference_size: int, events_per_quarter: int, quarters: int
) -> npt.NDArray[np.unsignedinteger[Any]]:
    """Bootstrap indices of `quarters` quarters, time-major (one row per time, one column
    per quarter): i.i.d. uniform on 0..reference_size-1, as 16-bit integers when they fit
    (half the generator's work of 32-bit ones) and drawn in the layout `_maxima` reads
    (its gathers are then contiguous)."""
    index_type = np.uint16 if reference_size <= 1 << 16 else np.uint32
    picks: npt.NDArray[np.unsignedinteger[Any]] = rng.integers(
        0, reference_size, size=(events_per_quarter, quarters), dtype=index_type)
    return picks


def calibrate_page_hinkley(
    reference_values: Sequence[float] | FloatArray,
    events_per_quarter: int,
    rate_per_quarter: float,
    *,
    seed: int,
    n_quarters: int = 400,
    min_instances: int = 30,
    delta: float = 0.005,
    alpha: float = 1 - 0.0001,
    mode: Literal["up", "down", "both"] = "both",
) -> float:
    """Page-Hinkley threshold: share of stable quarters with an alarm <= rate_per_quarter
    with 95% confidence (an order statistic of `n_quarters` simulated maxima, see the
    module doc; at least `quarters_for_rate(rate_per_quarter, CONFIDENCE)`)."""
    ref = _check_stream_inputs(reference_values, events_per_quarter, rate_per_quarter)
    k = order_statistic_bound(n_quarters, rate_per_quarter, CONFIDENCE)
    if k is None:
        raise DriftParameterError(
            f"n_quarters={n_quarters} is too few to bound a rate of {rate_per_quarter}; "
            f"use at least {quarters_for_rate(rate_per_quarter, CONFIDENCE)}"
        )
    rng = np.random.default_rng(seed)
    maxima = []
    # As many quarters at once as _QUARTER_VALUES allows (the time-major maxima are
    # cheaper the more streams share each step).
    group = max(1, _QUARTER_VALUES // events_per_quarter)
    for first in range(0, n_quarters, group):
        size = min(group, n_quarters - first)
        picks = bootstrap_picks(rng, ref.size, events_per_quarter, size)
        maxima.append(_maxima(_gather(ref, picks), size, events_per_quarter,
                              min_instances, delta, alpha, mode))
    all_max = np.concatenate(maxima)
    threshold = float(np.partition(all_max, all_max.size - k)[all_max.size - k])
    return max(threshold, MIN_DIVERGENCE_THRESHOLD)


@dataclass(frozen=True)
class StreamCalibration:
    parameter: float
    alarms_per_quarter: float


def calibrate_stream_detector(
    make_detector: Callable[[float], NumericDriftDetector],
    candidates: Sequence[float],
    reference_values: Sequence[float] | FloatArray,
    events_per_quarter: int,
    rate_per_quarter: float,
    *,
    seed: int,
    n_quarters: int = 50,
) -> StreamCalibration:
    """First candidate (order them most sensitive first) whose detector, run on simulated
    stable quarters, averages at most rate_per_quarter alarms per quarter.

    For ADWIN pass deltas in decreasing order, for KSWIN alphas in decreasing order.
    """
    ref = _check_stream_inputs(reference_values, events_per_quarter, rate_per_quarter)
    if not candidates:
        raise DriftParameterError("calibrate_stream_detector needs at least one candidate")
    quarters = _bootstrap_quarters(ref, events_per_quarter, n_quarters, seed).tolist()
    for candidate in candidates:
        alarms = 0
        for quarter in quarters:
            detector = make_detector(candidate)
            alarms += sum(1 for x in quarter if detector.update(x).drift_detected)
        rate = alarms / n_quarters
        if rate <= rate_per_quarter:
            return StreamCalibration(candidate, rate)
    raise DriftParameterError(
        f"no candidate in {list(candidates)} keeps false alarms within {rate_per_quarter} "
        "per quarter; add less sensitive candidates"
    )
