"""The two CUSUM charts of one model version, on report time, raising one signal per episode.

A chart observation is a case entering the confusion matrix (`verdicts.chart_observation`);
its time is the report's finalization (`labelled_at`): that is when the miss or false
positive became known.

Settling. A CUSUM cannot retract, and an original report that misread the finding is
usually corrected within days (an addendum, a corrected report). Feeding the first label
would feed every such misread: at 5% prevalence, 1% of reads misread turn about 0.8% of
studies into false "misses" and double the chart's miss rate. So a case waits
`settle_days` of report time, taking any correction meanwhile, before it feeds a chart;
that adds `settle_days` to the detection delay and keeps the in-control rate honest.

Cases reach the worker in arrival order, which a bulk replay across Kafka partitions can
scramble by days, so nothing here trusts arrival order:

- the reference period is the first `reference_days` of report time, from the earliest
  report seen. The weekly volume that sets the thresholds counts every observation whose
  report falls in it, also those arriving late, until the charts are designed: when the
  latest report time seen passes the period's end by `grace_days`;
- observations after the reference period that arrive before the design wait and are fed
  in report-time order at the design; one from inside the period arriving after the design
  feeds nothing (its period is closed);
- the charts' clock is the latest report time seen. A signal is dated by it, and its
  change point (the report time that started the excursion) is never after it.

Episodes. After a signal the chart is frozen in a `signalled` state and raises nothing
more until `close()`, which the monitor calls when the metric is back at or above
baseline - tolerance; the chart then restarts from zero. A persisting drop therefore gives
one signal, not one per run length (alert fatigue). The in-control false-alarm budget is
unchanged: after a false alarm the metric is within baseline, the episode closes at the
next evaluation and the chart restarts, as the renewal argument of `cusum` assumes.

Times are numbers. The per-case path compares and offsets report times as POSIX
timestamps (the ledger's record has them: `CaseRecord.labelled_ts`, `inference_ts`), not
as datetimes: an aware datetime comparison, or a `datetime - timedelta`, costs several
times a float's. The datetimes themselves are only kept (never computed with) where they
leave: the clock and an excursion's start, which date a `Signal` in the zone its case
came in. Exactness: a timestamp is the datetime's instant rounded to a float; between
2004-01-10 and 2038-01-19 UTC floats are spaced 2**-22 s apart and the offsets here are
whole seconds, so every comparison and offset gives what the datetimes gave; outside
that span a time within a microsecond of a period's boundary could fall on its other side.

Volume. A threshold is a run length in cases; the budget is in calendar time. The
charts count their observations over consecutive periods of `reference_days` of report
time after the reference period; when a chart's weekly volume over a period differs
from the volume it was designed at by more than `VOLUME_CHANGE` (either way), its
threshold is re-derived at the new volume (same rates, running statistic kept), so that
its false alarms per calendar year stay at its share. `Chart.redesigns` counts them.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import NamedTuple

from surveillance.clinical.baselines import ToolBaseline
from surveillance.clinical.verdicts import CHART_INPUT, METRICS, Metric, chart_design, chart_designs
from surveillance.contracts import CaseOutcome
from surveillance.stats.cusum import (
    DAYS_PER_WEEK,
    STEP_ROSE,
    STEP_SIGNAL,
    STEP_ZERO,
    BernoulliCUSUM,
    ChartDesign,
)

#: Relative change of a chart's weekly volume (over one period) that re-derives its
#: threshold: 25% more cases than designed for would mean 25% more false alarms a year.
VOLUME_CHANGE = 0.25
_SECONDS_PER_DAY = 86_400.0


class Observation(NamedTuple):
    metric: Metric
    failure: bool
    ts: float  # report time, POSIX timestamp (what is compared)
    at: datetime  # the same report time as the case gave it (what a signal shows)


#: `Observation` from a (metric, failure, ts, at) tuple, without the Python-level `__new__`.
_observation = partial(tuple.__new__, Observation)


@dataclass
class Chart:
    """One chart: its design, running statistic, current excursion and episode state."""

    design: ChartDesign
    cusum: BernoulliCUSUM
    excursion_start: datetime | None = None
    signalled_at: datetime | None = None
    signals: int = 0
    redesigns: int = 0

    def restart(self) -> None:
        self.cusum = BernoulliCUSUM(self.design.p0, self.design.p1, self.design.h)
        self.excursion_start = None
        self.signalled_at = None


@dataclass(frozen=True, slots=True)
class Signal:
    metric: Metric
    chart: Chart
    at: datetime  # the charts' clock when the threshold was crossed
    since: datetime  # report time of the first case of the excursion


@dataclass
class VersionCharts:
    """Sensitivity and specificity charts of one version; see the module docstring.

    Times ending in `_ts` are POSIX timestamps (see "Times are numbers")."""

    baseline: ToolBaseline
    reference_days: int
    grace_days: int
    settle_days: int
    false_alarms_per_year: float
    clock: datetime | None = None  # the latest report time seen, as its case gave it
    clock_ts: float | None = None
    settled_ts: float | None = None  # latest report time released to the charts
    reference_start: datetime | None = None
    reference_start_ts: float | None = None
    reference_counts: dict[Metric, int] = field(
        default_factory=lambda: {"sensitivity": 0, "specificity": 0}
    )
    charts: dict[Metric, Chart] | None = None
    period_start_ts: float | None = None  # current volume period (report time)
    period_counts: dict[Metric, int] = field(
        default_factory=lambda: {"sensitivity": 0, "specificity": 0}
    )
    _waiting: list[Observation] = field(default_factory=list)
    _settling: dict[str, Observation] = field(default_factory=dict)
    #: Observations waiting to settle, as (ts, case): those that came in (ts, case) order
    #: in a FIFO, the others in a heap; released in (ts, case) order from both. Reports
    #: mostly arrive in report-time order, and a FIFO costs a fraction of a heap's pop.
    _due_in_order: deque[tuple[float, str]] = field(default_factory=deque)
    _due: list[tuple[float, str]] = field(default_factory=list)
    #: clock - settle_days: observations due at or before it are released.
    _horizon_ts: float | None = None
    reference_end_ts: float | None = None  # reference_start + reference_days
    _design_at_ts: float | None = None  # reference_end + grace_days: the design's time
    _period_end_ts: float | None = None  # period_start + reference_days

    #: Not state: made again when a state snapshot is read (`engine.state_codec`).
    __derived__ = ("_next_due_ts",)

    def __post_init__(self) -> None:
        self._settle = self.settle_days * _SECONDS_PER_DAY
        self.__restore_derived__()

    def __restore_derived__(self) -> None:
        #: The earliest time due among the observations waiting to settle (their queues'
        #: heads; inf when none): the clock moves on nearly every case, and one comparison
        #: with this tells whether anything is due at its new horizon.
        in_order, due = self._due_in_order, self._due
        self._next_due_ts = min(in_order[0][0] if in_order else math.inf,
                                due[0][0] if due else math.inf)

    def _set_reference_start(self, obs: Observation) -> None:
        self.reference_start, self.reference_start_ts = obs.at, obs.ts
        self.reference_end_ts = obs.ts + self.reference_days * _SECONDS_PER_DAY
        self._design_at_ts = self.reference_end_ts + self.grace_days * _SECONDS_PER_DAY

    def update(
        self, case_id: str, previous: CaseOutcome | None, new: CaseOutcome, at: datetime
    ) -> list[Signal]:
        """Fold one revision of a case in (`at`: its report time); returns the signals raised.

        A case entering the confusion matrix starts settling; a revision while it settles
        replaces its observation (or drops it, if it left the matrix); a revision of a case
        already released changes nothing here (the windows and verdicts take it).
        """
        return self.update_at(case_id, previous, new, at.timestamp(), at)

    def update_at(
        self, case_id: str, previous: CaseOutcome | None, new: CaseOutcome, ts: float,
        at: datetime,
    ) -> list[Signal]:
        """`update` with the report time also as its POSIX timestamp `ts` (the monitor's
        per-case path has it from the ledger's record)."""
        entry = CHART_INPUT.get(new)
        settling = self._settling
        held = settling.get(case_id)
        added = False
        if held is not None:
            if entry is None:
                del settling[case_id]
            else:
                settling[case_id] = _observation((*entry, held.ts, held.at))
        elif entry is not None and previous not in CHART_INPUT:
            settling[case_id] = _observation((*entry, ts, at))
            item = (ts, case_id)
            in_order = self._due_in_order
            if not in_order or in_order[-1] <= item:
                in_order.append(item)
            else:
                heapq.heappush(self._due, item)
            if ts < self._next_due_ts:
                self._next_due_ts = ts
            added = True
        clock = self.clock_ts
        if clock is None or ts > clock:
            self.clock, self.clock_ts = at, ts
            self._horizon_ts = horizon = ts - self._settle
            if horizon < self._next_due_ts:
                return []
            return self._release(horizon)
        # The clock stands still: everything due at its horizon was released when it
        # last moved, so only what this revision added can be due.
        standing = self._horizon_ts
        if added and standing is not None and ts <= standing:
            return self._release(standing)
        return []

    def _release(self, horizon: float) -> list[Signal]:
        signals: list[Signal] = []
        in_order, due, settling = self._due_in_order, self._due, self._settling
        charts, end = self.charts, self.reference_end_ts
        while True:
            if in_order and (not due or in_order[0] <= due[0]):
                if in_order[0][0] > horizon:
                    break
                ts, case_id = in_order.popleft()
            elif due and due[0][0] <= horizon:
                ts, case_id = heapq.heappop(due)
            else:
                break
            obs = settling.get(case_id)
            if obs is None or obs.ts != ts:
                continue  # dropped while settling
            del settling[case_id]
            if charts is None or end is None or ts < end:
                self._observe(obs, signals)  # may design the charts
                charts, end = self.charts, self.reference_end_ts
                continue
            # The usual case, without `_observe`'s reference-period bookkeeping, and
            # `_feed`'s usual case (within the current volume period) in line.
            settled = self.settled_ts
            if settled is None or ts > settled:
                self.settled_ts = ts
            start, period_end = self.period_start_ts, self._period_end_ts
            if start is None or period_end is None or not start <= ts < period_end:
                self._feed(obs, signals)
                continue
            metric = obs.metric
            self.period_counts[metric] += 1
            chart = charts[metric]
            if chart.signalled_at is None:
                self._step(chart, obs, signals)
        self.__restore_derived__()
        return signals

    def _observe(self, obs: Observation, signals: list[Signal]) -> None:
        """Count `obs` in the reference period or feed it to its chart; signals to `signals`."""
        if self.settled_ts is None or obs.ts > self.settled_ts:
            self.settled_ts = obs.ts
        if self.charts is None:
            self._waiting.append(obs)
            if self.reference_start_ts is None or obs.ts < self.reference_start_ts:
                self._set_reference_start(obs)
            end, design_at = self.reference_end_ts, self._design_at_ts
            assert end is not None and design_at is not None
            if self.settled_ts >= design_at:
                self._design(end, signals)
            return
        end = self.reference_end_ts
        assert end is not None
        if obs.ts >= end:
            self._feed(obs, signals)

    def close(self, metric: Metric) -> None:
        """End the metric's episode: a signalled chart restarts from zero."""
        if self.charts is not None and self.charts[metric].signalled_at is not None:
            self.charts[metric].restart()

    def _design(self, end: float, signals: list[Signal]) -> None:
        later: list[Observation] = []
        for obs in self._waiting:
            if obs.ts < end:
                self.reference_counts[obs.metric] += 1
            else:
                later.append(obs)
        self._waiting = []
        weeks = self.reference_days / DAYS_PER_WEEK
        # A chart that saw no case of its kind in the reference period is designed for one:
        # the volume is tiny either way, and design_chart needs a positive volume.
        volumes = [max(self.reference_counts[m], 1) / weeks for m in METRICS]
        designs = chart_designs(self.baseline, volumes[0], volumes[1],
                                self.false_alarms_per_year)
        self.charts = {
            m: Chart(d, BernoulliCUSUM(d.p0, d.p1, d.h)) for m, d in designs.items()
        }
        for obs in sorted(later, key=lambda o: o.ts):
            self._feed(obs, signals)

    def _count_volume(self, obs: Observation) -> None:
        """Count `obs` in its volume period; re-derive thresholds when a period ends."""
        assert self.charts is not None
        if self.period_start_ts is None:
            self.period_start_ts = self.reference_end_ts
        assert self.period_start_ts is not None
        period = self.reference_days * _SECONDS_PER_DAY
        if self._period_end_ts is None:
            self._period_end_ts = self.period_start_ts + period
        if obs.ts >= self._period_end_ts:
            weeks = self.reference_days / DAYS_PER_WEEK
            for metric, chart in self.charts.items():
                volume = max(self.period_counts[metric], 1) / weeks
                if abs(volume / chart.design.weekly_volume - 1.0) > VOLUME_CHANGE:
                    design = chart_design(
                        self.baseline, metric, volume, self.false_alarms_per_year
                    )
                    chart.design = design
                    chart.cusum.rethreshold(design.h)
                    chart.redesigns += 1
            skipped = (obs.ts - self.period_start_ts) // period
            self.period_start_ts += skipped * period
            self._period_end_ts = self.period_start_ts + period
            self.period_counts = {m: 0 for m in METRICS}
        if obs.ts >= self.period_start_ts:
            self.period_counts[obs.metric] += 1

    def _feed(self, obs: Observation, signals: list[Signal]) -> None:
        assert self.charts is not None and self.clock is not None
        start, end = self.period_start_ts, self._period_end_ts
        if start is not None and end is not None and start <= obs.ts < end:
            self.period_counts[obs.metric] += 1  # the usual case: within the current period
        else:
            self._count_volume(obs)
        chart = self.charts[obs.metric]
        if chart.signalled_at is None:
            self._step(chart, obs, signals)

    def _step(self, chart: Chart, obs: Observation, signals: list[Signal]) -> None:
        """Feed `obs` to its chart (not signalled): its excursion, and a signal if it
        crosses the threshold."""
        step = chart.cusum.step(obs.failure)
        if step == STEP_ZERO:
            chart.excursion_start = None
            return
        if step & STEP_ROSE or chart.excursion_start is None:
            chart.excursion_start = obs.at
        if step < STEP_SIGNAL:
            return
        clock = self.clock
        assert clock is not None  # set by the case that released `obs`
        chart.signals += 1
        chart.signalled_at = clock
        since = chart.excursion_start or obs.at
        signals.append(Signal(obs.metric, chart, clock, min(since, clock)))
