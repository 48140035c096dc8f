"""Bernoulli CUSUM for a rise in a failure rate, with thresholds set from a run-length target.

One chart watches one failure rate: misses among read-positive cases (1 - sensitivity) or
false positives among read-negative cases (1 - specificity). Each case adds its
log-likelihood-ratio weight for "out of control" rate p1 against "in control" p0
(Reynolds & Stoumbos 1999, J Qual Technol 31:87-108):

    S_t = max(0, S_{t-1} + w(x_t)),  w(1) = ln(p1/p0),  w(0) = ln((1-p1)/(1-p0))

and the chart signals when S_t >= h.

Threshold from a run length, not a textbook h. `threshold_for_arl` finds the smallest h
whose in-control average run length (ARL0, in cases) reaches a target, and
`cases_per_false_alarm` turns a calendar target ("at most one false alarm per tool per
year") into that ARL0 from the tool's weekly volume of cases the chart sees.

How the ARL is computed (Brook & Evans 1972, Biometrika 59:539-549). Divided by
D = w(1) - w(0), the weights are 1 - g and -g with g the reference value
g = ln((1-p0)/(1-p1)) / D. We round g to a fraction a/m (m <= `max_denominator`) and run the
chart itself on the integer lattice of step D/m: a failure adds m - a, a success takes away
a. The statistic then takes finitely many values below the threshold, so the Markov chain of
Brook & Evans is exact for the chart as implemented (Reynolds & Stoumbos use the same
device). The only approximation is the rounding of g, by at most 1.2e-5 for the rates in
the baseline registry at the default m <= 400: it changes the chart's reference value, not
the accuracy of its computed ARL. The chain's states are 0 .. H-1 (H = h in lattice
steps); the ARL from state 0 solves (I - Q) L = 1, a sparse system.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Self

import numpy as np
from scipy.sparse import csc_matrix
from scipy.sparse.linalg import spsolve

from surveillance.stats.intervals import StatsParameterError

#: Days per year and per week, for calendar targets and delays.
DAYS_PER_YEAR = 365.25
DAYS_PER_WEEK = 7.0

#: Largest chain we solve; a target needing more states is far beyond any sane run length.
_MAX_STATES = 2_000_000


@dataclass(frozen=True, slots=True)
class Lattice:
    """The chart's integer grid: a failure adds `up`, a success subtracts `down`."""

    up: int
    down: int
    step: float  # log-likelihood ratio of one lattice step


def _check_rates(p0: float, p1: float) -> None:
    if not 0.0 < p0 < p1 < 1.0:
        raise StatsParameterError(
            f"need 0 < p0 < p1 < 1 (in-control rate below out-of-control rate), "
            f"got p0={p0}, p1={p1}"
        )


def _check_max_denominator(max_denominator: int) -> None:
    if max_denominator < 2:
        raise StatsParameterError(f"max_denominator must be >= 2, got {max_denominator}")


def lattice(p0: float, p1: float, max_denominator: int = 400) -> Lattice:
    """The integer grid the chart for (p0, p1) runs on; see the module docstring."""
    _check_rates(p0, p1)
    _check_max_denominator(max_denominator)
    log_odds_ratio = math.log(p1 * (1.0 - p0) / (p0 * (1.0 - p1)))
    reference = math.log((1.0 - p0) / (1.0 - p1)) / log_odds_ratio
    g = Fraction(reference).limit_denominator(max_denominator)
    if g.numerator == 0 or g.numerator == g.denominator:
        raise StatsParameterError(
            f"p0={p0}, p1={p1} need a finer lattice than max_denominator={max_denominator}: "
            f"raise it to at least {math.ceil(2.0 / min(reference, 1.0 - reference))}"
        )
    return Lattice(
        up=g.denominator - g.numerator,
        down=g.numerator,
        step=log_odds_ratio / g.denominator,
    )


def _threshold_steps(h: float, grid: Lattice) -> int:
    # h is usually an exact multiple of the step (from threshold_for_arl); the epsilon keeps
    # float noise from moving it up one step.
    return max(1, math.ceil(h / grid.step - 1e-9))


@lru_cache(maxsize=64)
def _arl_steps(grid: Lattice, limit: int, p: float) -> float:
    """ARL from a zero start when each case fails with probability p; limit in steps.

    Kept for the latest calls: a design asks again for the ARL0 its threshold search
    computed last, and an alert for the ARL1 of the chart's design."""
    if limit > _MAX_STATES:
        raise StatsParameterError(
            f"the chart needs {limit} states: the run-length target is too large for it"
        )
    states = np.arange(limit)
    rise = states + grid.up
    fall = np.maximum(states - grid.down, 0)
    stays = rise < limit  # a failure from these states does not reach the threshold
    rows = np.concatenate([states, states[stays], states])
    cols = np.concatenate([states, rise[stays], fall])
    vals = np.concatenate(
        [np.ones(limit), np.full(int(stays.sum()), -p), np.full(limit, -(1.0 - p))]
    )
    system = csc_matrix((vals, (rows, cols)), shape=(limit, limit))  # duplicates are summed
    run_lengths = spsolve(system, np.ones(limit))
    return float(np.atleast_1d(run_lengths)[0])


def average_run_length(
    p0: float, p1: float, h: float, p: float, max_denominator: int = 400
) -> float:
    """Expected cases until the (p0, p1, h) chart signals, from a zero start, at true rate p.

    With p = p0 this is ARL0 (cases between false alarms); with a worse rate it is the
    expected detection delay (ARL1).
    """
    grid = lattice(p0, p1, max_denominator)
    if h <= 0:
        raise StatsParameterError(f"threshold h must be > 0, got {h}")
    if not 0.0 < p < 1.0:
        raise StatsParameterError(f"true failure rate p must be in (0, 1), got {p}")
    return _arl_steps(grid, _threshold_steps(h, grid), p)


def threshold_for_arl(
    p0: float, p1: float, target_arl_cases: float, max_denominator: int = 400
) -> float:
    """Smallest threshold h (log-likelihood-ratio units) whose ARL0 is >= the target."""
    grid = lattice(p0, p1, max_denominator)
    if not target_arl_cases > 1.0:
        raise StatsParameterError(f"target ARL0 must be > 1 case, got {target_arl_cases}")
    # ARL0 grows with the threshold, so double until the target is met, then narrow
    # (low, high] down to one step, keeping ARL0(low) < target <= ARL0(high): the answer
    # is `high` whatever the order of the probes. ARL0 grows about exponentially in the
    # threshold, so a probe interpolated on log ARL0 lands near the answer: a chart's
    # redesign (on the per-case path, when its volume changes) takes a few solves of the
    # chain instead of a bisection's dozen. Every other probe bisects, which bounds the
    # probes at twice a bisection's should the interpolation stall.
    low, high = 0, grid.up
    arl_low, arl_high = 1.0, _arl_steps(grid, high, p0)
    while arl_high < target_arl_cases:
        low, arl_low = high, arl_high
        high *= 2
        arl_high = _arl_steps(grid, high, p0)
    goal = math.log(target_arl_cases)
    interpolate = True
    while high - low > 1:
        mid = (low + high) // 2
        if interpolate and arl_low > 0 and arl_high > arl_low:
            lo, hi = math.log(arl_low), math.log(arl_high)
            guess = low + math.ceil((goal - lo) / (hi - lo) * (high - low))
            mid = min(max(guess, low + 1), high - 1)
        interpolate = not interpolate
        arl = _arl_steps(grid, mid, p0)
        if arl >= target_arl_cases:
            high, arl_high = mid, arl
        else:
            low, arl_low = mid, arl
    return high * grid.step


def cases_per_false_alarm(
    weekly_volume: float, false_alarms_per_year: float = 1.0, charts_per_tool: int = 2
) -> float:
    """ARL0 target in cases for a calendar false-alarm budget.

    `weekly_volume` is the cases this chart sees per week (read-positive cases for the
    sensitivity chart, read-negative ones for the specificity chart). The budget is per
    tool and shared by its `charts_per_tool` charts, so each chart must average
    charts_per_tool / false_alarms_per_year years between false alarms. After a signal a
    chart restarts from zero, so its alarms form a renewal process and the long-run count
    per year is cases-per-year / ARL0.
    """
    if not weekly_volume > 0:
        raise StatsParameterError(f"weekly volume must be > 0 cases, got {weekly_volume}")
    if not false_alarms_per_year > 0:
        raise StatsParameterError(f"false alarms per year must be > 0, got {false_alarms_per_year}")
    if charts_per_tool < 1:
        raise StatsParameterError(f"charts per tool must be >= 1, got {charts_per_tool}")
    cases_per_year = weekly_volume * DAYS_PER_YEAR / DAYS_PER_WEEK
    return cases_per_year * charts_per_tool / false_alarms_per_year


@dataclass(frozen=True, slots=True)
class ChartDesign:
    """A chart's threshold with what it costs (false alarms) and buys (detection delay)."""

    p0: float
    p1: float
    h: float
    weekly_volume: float
    arl0_cases: float
    arl0_days: float
    p_detect: float
    arl1_cases: float
    arl1_days: float


def design_chart(
    p0: float,
    p1: float,
    weekly_volume: float,
    false_alarms_per_year: float = 1.0,
    charts_per_tool: int = 2,
    p_detect: float | None = None,
    max_denominator: int = 400,
) -> ChartDesign:
    """Threshold from a calendar false-alarm budget and the expected delay to detect `p_detect`.

    `p_detect` is the failure rate after the drop whose detection delay is reported;
    it defaults to p1, the rate the chart is tuned for.
    """
    target = cases_per_false_alarm(weekly_volume, false_alarms_per_year, charts_per_tool)
    h = threshold_for_arl(p0, p1, target, max_denominator)
    detect = p1 if p_detect is None else p_detect
    cases_per_day = weekly_volume / DAYS_PER_WEEK
    arl0 = average_run_length(p0, p1, h, p0, max_denominator)
    arl1 = average_run_length(p0, p1, h, detect, max_denominator)
    return ChartDesign(
        p0=p0,
        p1=p1,
        h=h,
        weekly_volume=weekly_volume,
        arl0_cases=arl0,
        arl0_days=arl0 / cases_per_day,
        p_detect=detect,
        arl1_cases=arl1,
        arl1_days=arl1 / cases_per_day,
    )


#: `BernoulliCUSUM.step`'s answers: the statistic is at zero after the case; it left zero
#: with it; it was above zero before it; (added) the chart crossed its threshold.
STEP_ZERO, STEP_ROSE, STEP_ABOVE, STEP_SIGNAL = 0, 1, 2, 4


class BernoulliCUSUM:
    """Upper Bernoulli CUSUM: signals a rise of a failure rate from p0 towards p1.

    Parameters
    ----------
    p0
        In-control failure rate (e.g. 1 - clearance sensitivity, the miss rate).
    p1
        Out-of-control failure rate the chart is tuned to detect.
    h
        Threshold in log-likelihood-ratio units; take it from `threshold_for_arl` or
        `design_chart`, not from a textbook.
    max_denominator
        Fineness of the integer lattice the chart runs on (see the module docstring).

    After a signal the next `update` restarts the chart from zero.

    Examples
    --------
    Miss rate 0.08 (sensitivity 0.92) for 1000 positive cases, then 0.18 (sensitivity 0.82):

    >>> import random
    >>> rng = random.Random(42)
    >>> h = threshold_for_arl(0.08, 0.18, target_arl_cases=4000)
    >>> chart = BernoulliCUSUM(p0=0.08, p1=0.18, h=h)
    >>> for i in range(3000):
    ...     miss = rng.random() < (0.08 if i < 1000 else 0.18)
    ...     if chart.update(miss).drift_detected:
    ...         print(f"signal after {chart.n_cases} cases, shift after case {chart.change_point}")
    ...         break
    signal after 1030 cases, shift after case 995
    """

    def __init__(self, p0: float, p1: float, h: float, max_denominator: int = 400) -> None:
        if h <= 0:
            raise StatsParameterError(f"threshold h must be > 0, got {h}")
        self.p0 = p0
        self.p1 = p1
        self.h = h
        self.max_denominator = max_denominator
        grid = lattice(p0, p1, max_denominator)
        self._up = grid.up
        self._down = grid.down
        self._step = grid.step
        self._limit = _threshold_steps(h, grid)
        self._reset()

    def rethreshold(self, h: float) -> None:
        """Move the threshold to `h` and keep the running statistic: the chart was
        re-derived for a new volume (same rates, so the same lattice)."""
        if h <= 0:
            raise StatsParameterError(f"threshold h must be > 0, got {h}")
        self.h = h
        self._limit = _threshold_steps(h, lattice(self.p0, self.p1, self.max_denominator))

    def _reset(self) -> None:
        self._s = 0
        self._n = 0
        self._last_zero = 0
        self._drift_detected = False

    def update(self, x: bool) -> Self:
        """Add one case: `x` is True for a failure (a miss, or a false positive)."""
        if self._drift_detected:
            self._reset()
        self._n += 1
        if x:
            self._s += self._up
        else:
            s = self._s - self._down
            if s <= 0:
                s = 0
                self._last_zero = self._n
            self._s = s
        self._drift_detected = self._s >= self._limit
        return self

    def step(self, x: bool) -> int:
        """`update` for a caller that follows excursions: `STEP_ZERO` if the statistic is
        at zero after the case, else `STEP_ROSE` if it was at zero before it and
        `STEP_ABOVE` if not, plus `STEP_SIGNAL` if the chart crossed its threshold. One
        call where `update` and the properties take four (a chart's per-case path)."""
        if self._drift_detected:
            self._reset()
        s = self._s
        self._n += 1
        if x:
            code = STEP_ROSE if s == 0 else STEP_ABOVE
            s += self._up
        else:
            s -= self._down
            if s <= 0:
                s = 0
                self._last_zero = self._n
                code = STEP_ZERO
            else:
                code = STEP_ABOVE
        self._s = s
        if s >= self._limit:
            self._drift_detected = True
            return code | STEP_SIGNAL
        self._drift_detected = False
        return code

    @property
    def drift_detected(self) -> bool:
        """True on the update at which the chart crossed its threshold."""
        return self._drift_detected

    @property
    def statistic(self) -> float:
        """Current CUSUM value S_t in log-likelihood-ratio units."""
        return self._s * self._step

    @property
    def n_cases(self) -> int:
        """Cases seen since the chart last started from zero."""
        return self._n

    @property
    def change_point(self) -> int:
        """Cases (since the last restart) up to the last time S was 0.

        The usual CUSUM estimate of when the shift began: it started after this case.
        """
        return self._last_zero
