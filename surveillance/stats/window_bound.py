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
search keeps that bound within the aim, so the fewest windows that can meet it are
n_tests / aim (`windows_needed`; at the default tool's rates 38,000 for a numeric
feature's PSI, 63,300 for a categorical feature's three tests). Before, 100,000 windows
and a point estimate: the (floor(rate * n) + 1)-th largest, whose expected rate was above
the aim (a numeric feature: the 3rd largest, 3 / 100,001 against 2.63 / 100,000, +14%;
a categorical union held to 4 windows alarming: (4 + m) / 100,001, +5-48%).

On average, not each time: one calibration's rate is a draw around the bound (the largest
of n windows is exceeded with probability Beta(1, n): above 3x the aim 5% of the time,
below 1/20 of it 5% of the time), as the point estimate's was (the 3rd of 100,000: 10% of
the time above 2x). A 95% confidence bound on each calibration's rate, like
Page-Hinkley's (`stream_calibration`: ln(20) / aim draws), would need 114,000 windows for
a numeric feature and 190,000 for a categorical union, and would set thresholds near the
aim / 3 quantile.

Power. The statistic is the detector's either way, so at an equal realized false-alarm
rate the power is the same; but the largest of n is the most spread of the thresholds
with a given expected rate, and power is concave in the rate, so the expected power is
lower than with a less spread threshold. Measured on a numeric feature's PSI (13 bins,
91 events a window, its windows shifted one bin; 100 seeds, rates on 5,000,000 fresh
windows), each spread scaled to the aim: 0.59 from the largest of 38,000, 0.66 from the
2nd largest of 76,000 (windows_needed's count doubled), 0.69 from the 3rd of 100,000,
0.87 at the exact quantile.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from surveillance.stats.categorical_drift import WindowTestName
from surveillance.stats.psi import FloatArray

#: Simulated windows: the fewest whose thresholds can meet the exchangeability bound at
#: the aimed rate (`windows_needed`), within these bounds.
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
    """Simulated windows whose per-test maxima can meet `expected_rate_bound` <= aim:
    (n + 1) * aim >= n_tests (each test's largest statistic may be a different window),
    within MIN_SIMULATED_WINDOWS and MAX_SIMULATED_WINDOWS."""
    return int(min(max(math.ceil(n_tests / aim) - 1, MIN_SIMULATED_WINDOWS),
                   MAX_SIMULATED_WINDOWS))
