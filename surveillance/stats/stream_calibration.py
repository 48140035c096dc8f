"""Thresholds of the per-event river detectors from a false-alarm rate per quarter.

The drift bank gives a continuous numeric feature's per-event detector half of the
feature's share of the drift budget (`drift_calibration`), as a rate per quarter.
Each simulated quarter is an i.i.d. bootstrap of the reference values
(standardised by the reference mean and SD, as the bank feeds them), events_per_quarter
long. Page-Hinkley has a closed-form recursion that is evaluated for all simulated
quarters at once (`page_hinkley_statistics`, checked against river in the tests); its
threshold is the (1 - rate) quantile of the quarter's maximum statistic, so that the
share of quarters with at least one alarm is at most the rate (after a false alarm the
detector restarts; a second false alarm in the same quarter has probability about
rate^2, which the budget absorbs only approximately). ADWIN's delta and KSWIN's alpha
have no such recursion: `calibrate_stream_detector` runs the real detector on the
simulated quarters for each candidate and keeps the most sensitive candidate whose mean
alarms per quarter is within the rate.

Reproducible: everything is drawn from numpy's PCG64 seeded by `seed`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.signal import lfilter

from surveillance.stats.drift_calibration import MIN_DIVERGENCE_THRESHOLD
from surveillance.stats.numeric_drift import DriftParameterError, NumericDriftDetector
from surveillance.stats.psi import FloatArray


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
    a = [1.0, -alpha]
    s_inc = lfilter([1.0], a, dev - delta, axis=-1)
    s_dec = lfilter([1.0], a, dev + delta, axis=-1)
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


#: Values per block of rows in `page_hinkley_maxima`: its temporaries stay in cache.
_MAXIMA_BLOCK = 1 << 17


def page_hinkley_maxima(
    values: npt.ArrayLike,
    min_instances: int,
    delta: float,
    alpha: float,
    mode: Literal["up", "down", "both"] = "both",
) -> FloatArray:
    """Each row's largest `page_hinkley_statistics` value (what calibration needs).

    The same operations on the same values per row, so the result is equal to the last
    bit; blocks of rows and in-place arithmetic make it about twice as fast as taking the
    maximum of the full statistics array (calibration runs 10^7-10^8 values).
    """
    x = np.atleast_2d(np.asarray(values, dtype=np.float64))
    rows, length = x.shape[0], x.shape[-1]
    out = np.full(rows, -np.inf)
    if length < min_instances:
        return out
    t = np.arange(1, length + 1, dtype=np.float64)
    first = max(min_instances, 1) - 1
    a = [1.0, -alpha]
    step = max(1, _MAXIMA_BLOCK // max(length, 1))
    for r in range(0, rows, step):
        block = x[r : r + step]
        dev = np.cumsum(block, axis=-1)
        dev /= t
        np.subtract(block, dev, out=dev)
        best = np.full(block.shape[0], -np.inf)
        if mode != "down":
            s = lfilter([1.0], a, dev - delta, axis=-1)
            s -= np.minimum.accumulate(s, axis=-1)
            np.maximum(best, s[:, first:].max(axis=-1), out=best)
        if mode != "up":
            s = lfilter([1.0], a, dev + delta, axis=-1)
            peak = np.maximum.accumulate(np.maximum(s, -1.0), axis=-1)
            peak -= s
            np.maximum(best, peak[:, first:].max(axis=-1), out=best)
        out[r : r + step] = best
    return out


def _bootstrap_quarters(
    reference_values: FloatArray, events_per_quarter: int, n_quarters: int, seed: int
) -> FloatArray:
    rng = np.random.default_rng(seed)
    return rng.choice(reference_values, size=(n_quarters, events_per_quarter))


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
    """Page-Hinkley threshold: share of stable quarters with an alarm <= rate_per_quarter."""
    ref = _check_stream_inputs(reference_values, events_per_quarter, rate_per_quarter)
    if n_quarters * rate_per_quarter < 5:
        raise DriftParameterError(
            f"n_quarters={n_quarters} is too few to estimate a rate of {rate_per_quarter}; "
            f"use at least {math.ceil(5 / rate_per_quarter)}"
        )
    maxima = []
    chunk = max(1, 2_000_000 // events_per_quarter)
    for start in range(0, n_quarters, chunk):
        size = min(chunk, n_quarters - start)
        quarters = _bootstrap_quarters(ref, events_per_quarter, size, seed + start)
        maxima.append(page_hinkley_maxima(quarters, min_instances, delta, alpha, mode))
    all_max = np.concatenate(maxima)
    threshold = float(np.quantile(all_max, 1 - rate_per_quarter, method="higher"))
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
