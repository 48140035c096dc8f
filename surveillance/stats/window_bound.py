"""How many stable windows a window calibration simulates, and which thresholds it may
pick from them (`stats.drift_calibration`): pure.

The thresholds keep the EXPECTED false-alarm rate of a fresh stable window within the
aim (the drift budget is an expectation, summed over features by linearity:
`drift_calibration`), exactly, whatever the statistics' distribution, by
exchangeability: a fresh stable window is one more draw from the simulated null, so among
the n + 1 windows it is equally likely to be any one; it can alarm only if it is one of
the c simulated windows that alarm or displaces a window at a threshold (m, at least one,
at most one per test; `expected_rate_bound`), so the rate is at most (c + m) / (n + 1)
(as for the k-th largest of n, exceeded k / (n + 1) of the time; ties only lower it). The
search keeps that bound within the aim. How many windows (`windows_needed`): as many as
the point estimate read before (~EXCEEDANCES / aim, within bounds: 100,000 at the
default tool's rates), rounded down to where the bound spends the aim exactly, j / aim
windows for j = c + m windows at or beyond the thresholds: 75,971 for a numeric feature's
PSI (j = 2), 94,964 for a categorical feature's PSI alone (j = 5), 84,413 for a
categorical union (j = 4). Before, 100,000 windows and a point estimate: the
(floor(rate * n) + 1)-th largest, whose expected rate was above the aim (a numeric
feature: the 3rd largest, 3 / 100,001 against 2.63 / 100,000, +14%; a categorical union
held to 4 windows alarming: (4 + m) / 100,001, +5-48%). Measured on fresh windows of the
null (5,000,000, seeds apart from the calibration's; 100 calibration seeds): a numeric
PSI 1.10x its aim, categorical unions 1.17x (and 1.18x on the exact oracle of
tests/test_window_bound.py), a categorical PSI 1.05x; the bound's 0.79-0.92x.

One test (a numeric PSI), exactly: the search keeps the lowest simulated value with at
most J - 1 windows above it (J / (n + 1) <= aim), so over seeds the expected rate is
sum over values v of P(v) * P(Binomial(n, P(stat >= v)) <= J - 1): J / (n + 1) for a
continuous statistic, less with ties (a right sum of a decreasing function; 0.66x on
the kVp-like null of tests/test_window_bound.py), whatever the threshold's search. On
the worker's 14 numeric PSI calibrations (benchmarks/calibration_seeds.py, base seeds
100-159, pools of 5,000,000): 0.992x the aim (95% CI 0.922-1.061, p 0.60 of above).

On average, not each time: one calibration's rate is a draw around the bound (the j-th
largest of n windows is exceeded with probability Beta(j, n + 1 - j): for j = 2 above
2.4x the aim 5% of the time, below 0.18x of it 5% of the time), as the point estimate's
was (the 3rd of 100,000: 10% of the time above 2x). A 95% confidence bound on each
calibration's rate, like Page-Hinkley's (`stream_calibration`: ln(20) / aim draws),
would need 114,000 windows for a numeric feature and 190,000 for a categorical union,
and would set thresholds near the aim / 3 quantile.

Power. The statistic is the detector's either way, so at an equal realized false-alarm
rate the power is the same; but the fewer windows beyond a threshold, the more spread its
rate, and power is concave in the rate, so at an equal expected rate the expected power
is lower. Hence not the fewest windows that can meet the bound (n_tests / aim: the
largest of 38,000 for a numeric PSI, of 20,000 for a categorical PSI): measured (100
seeds, rates on 5,000,000 fresh windows, power on windows shifted one bin, each spread
scaled to the aim) the expected power of a numeric PSI (13 bins, 91 events a window)
was 0.59 from the largest of 38,000, 0.66 from the 2nd of 76,000, 0.69 from the 3rd of
100,000 and 0.87 at the exact quantile; of a categorical PSI (7 categories, 113 events,
40% of each share moved to the next) 0.51 from the largest of 20,000, 0.65 from the 6th
of 100,000, 0.91 exact.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from surveillance.stats.categorical_drift import WindowTestName
from surveillance.stats.psi import FloatArray

#: Simulated windows (`windows_needed`): ~EXCEEDANCES beyond the threshold at the aim
#: within these bounds, rounded down to where the exchangeability bound meets the aim.
EXCEEDANCES = 50
MIN_SIMULATED_WINDOWS = 20_000
MAX_SIMULATED_WINDOWS = 100_000


def _thresholds_at(
    ordered: dict[WindowTestName, FloatArray], rate: float
) -> dict[WindowTestName, float]:
    """Per-test thresholds whose tail holds at most `rate` of the (sorted) statistics."""
    out: dict[WindowTestName, float] = {}
    for test, values in ordered.items():
        k = math.floor(rate * values.size)
        if test == "chi_square":
            out[test] = float(values[min(k, values.size - 1)])
        else:
            out[test] = float(values[max(values.size - 1 - k, 0)])
    return out


def _alarms(
    stats: dict[WindowTestName, FloatArray],
    thresholds: dict[WindowTestName, float],
    gate: npt.NDArray[np.bool_] | None = None,
) -> npt.NDArray[np.bool_]:
    """Windows where any test crosses (and, with `gate`, the window may cross)."""
    alarm = np.zeros(next(iter(stats.values())).shape, dtype=bool)
    for t, values in stats.items():
        if t == "chi_square":
            alarm |= values < thresholds[t]
        else:
            alarm |= values > thresholds[t]
    if gate is not None:
        alarm &= gate
    return alarm


def _union_rate(
    stats: dict[WindowTestName, FloatArray],
    thresholds: dict[WindowTestName, float],
    gate: npt.NDArray[np.bool_] | None = None,
) -> float:
    """Share of windows where any test crosses (and, with `gate`, the window may cross)."""
    return float(_alarms(stats, thresholds, gate).mean())


def expected_rate_bound(
    stats: dict[WindowTestName, FloatArray],
    thresholds: dict[WindowTestName, float],
    gate: npt.NDArray[np.bool_] | None = None,
) -> float:
    """Upper bound on the expected false-alarm rate of `thresholds` on a fresh window
    exchangeable with the n simulated ones (`windows_needed`): (c + m) / (n + 1), c the
    simulated windows that alarm, m = max(1, number of threshold windows: a simulated
    window whose statistic IS a test's threshold, alone at that value, that passes the
    gate and does not alarm already)."""
    alarm = _alarms(stats, thresholds, gate)
    at_threshold: set[int] = set()
    for t, values in stats.items():
        equal = np.flatnonzero(values == thresholds[t])
        if equal.size == 1 and not alarm[equal[0]] and (gate is None or gate[equal[0]]):
            at_threshold.add(int(equal[0]))
    return (int(alarm.sum()) + max(1, len(at_threshold))) / (alarm.size + 1)


def windows_needed(aim: float, n_tests: int) -> int:
    """Simulated windows: j / aim (rounded up, less the fresh window) for j windows at or
    beyond the thresholds, j = floor(aim * n0), n0 = EXCEEDANCES / aim within
    MIN_SIMULATED_WINDOWS and MAX_SIMULATED_WINDOWS (the count the point estimate read),
    and j at least n_tests (each test's largest statistic may be a different window), so
    that `expected_rate_bound` can spend the aim exactly: (n + 1) * aim >= j."""
    read = min(max(math.ceil(EXCEEDANCES / aim), MIN_SIMULATED_WINDOWS), MAX_SIMULATED_WINDOWS)
    beyond = max(n_tests, math.floor(aim * read))
    return int(max(math.ceil(beyond / aim) - 1, MIN_SIMULATED_WINDOWS))
