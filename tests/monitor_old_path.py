"""The monitor's per-case update path as it was before the hot-path work (main b49acee), as
a test oracle only: `old_path()` swaps these classes in while a monitor is built and fed.

Kept as it was, line for line where it can be: the per-case `on_case` reading the pydantic
case, one heap of settling observations, the windows counted per key (8 keys per case,
each with its own day buckets; main 7474894's `stats.windows` with b49acee's full scan
for old day buckets), the label-free `Counter` increment; the CUSUM pair on datetimes
(main ef02b71's `VersionCharts`, whose update b49acee's overrides replace). Everything
else (the general path, the daily evaluation) is shared with the production classes, so a
difference in what the two monitors hold or return comes from the per-case path or the
windows.
"""

from __future__ import annotations

import heapq
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import NamedTuple
from unittest.mock import patch

from surveillance.clinical import case_placement, monitor_state
from surveillance.clinical.baselines import ToolBaseline
from surveillance.clinical.case_placement import CaseView
from surveillance.clinical.label_free import _SCORE_SCALE, LabelFreeMonitor, _Day
from surveillance.clinical.ledger import CaseRecord
from surveillance.clinical.monitor import (
    _DAY,
    _EPOCH_DAY,
    _OUTCOME,
    _SECONDS_PER_DAY,
    PerformanceMonitor,
)
from surveillance.clinical.monitor_state import REPORT_LAGS_KEPT, VersionRecord
from surveillance.clinical.verdicts import (
    CHART_INPUT,
    METRICS,
    Metric,
    chart_design,
    chart_designs,
)
from surveillance.clinical.version_charts import VOLUME_CHANGE, Chart, Signal
from surveillance.contracts import AdjudicatedCase, Alert, CaseOutcome
from surveillance.stats.cusum import DAYS_PER_WEEK, BernoulliCUSUM
from surveillance.stats.intervals import StatsParameterError
from surveillance.stats.window_counts import _IN_MATRIX, _LEFT, Entry, WindowCounts, _counts
from surveillance.stats.windows import COLUMN, Key, utc_day


class OldKeyWindows:
    """Windows of one key. Usually reached through `OldAgreementWindows`."""

    __slots__ = ("_days", "_entries", "buckets", "current", "late_ignored",
                 "watermark")

    def __init__(self, days: tuple[int, ...], last_n: int) -> None:
        self._days = days
        #: Counts per UTC day (ordinal) still readable, in `COLUMN` order.
        self.buckets: dict[int, list[int]] = {}
        #: Latest UTC day seen under this key, and its bucket.
        self.watermark = -1
        self.current: list[int] = [0] * 7
        self._entries: deque[Entry] = deque(maxlen=last_n)
        self.late_ignored = 0

    def new_bucket(self, day: int) -> list[int] | None:
        watermark = self.watermark
        buckets = self.buckets
        if day > watermark:
            self.watermark = day
            horizon = day - self._days[-1]
            for old in [d for d in buckets if d <= horizon]:
                del buckets[old]
            bucket = self.current = buckets[day] = [0, 0, 0, 0, 0, 0, 0]
            return bucket
        if day <= watermark - self._days[-1]:
            self.late_ignored += 1
            return None
        bucket = buckets[day] = [0, 0, 0, 0, 0, 0, 0]
        return bucket

    @property
    def entries(self) -> deque[Entry]:
        return self._entries

    def calendar(self, days: int, today: int) -> WindowCounts:
        first = today - days + 1
        rows = [bucket for day, bucket in self.buckets.items() if first <= day <= today]
        if not rows:
            return _counts([0] * 7)
        return _counts([sum(column) for column in zip(*rows, strict=True)])

    def last_n(self) -> WindowCounts:
        row = [0] * 8
        for entry in self._entries:
            row[entry[0]] += 1
        return _counts([*row[:_IN_MATRIX], 0, 0, 0])

    def memory_cells(self) -> int:
        return len(self.buckets) + len(self._entries)


class OldKeyGroup:
    """The `OldKeyWindows` of one set of keys, and the deques of their last N entries."""

    __slots__ = ("appends", "entries", "windows")
    #: Not state: made again from `entries` when a state snapshot is read
    #: (`engine.state_codec`).
    __derived__ = ("appends",)

    def __init__(self, windows: tuple[OldKeyWindows, ...]) -> None:
        self.windows = windows
        self.entries = tuple(w.entries for w in windows)
        self.__restore_derived__()

    def __restore_derived__(self) -> None:
        #: Each deque's bound `append`, looked up once rather than once per case and key.
        self.appends = tuple(entries.append for entries in self.entries)


class OldAgreementWindows:
    """Agreement counts for every key a case belongs to.

    Parameters
    ----------
    days
        Calendar window lengths in days.
    last_n
        Size of the last-N-cases window.
    """

    def __init__(self, days: Iterable[int] = (7, 30, 90), last_n: int = 200) -> None:
        window_days = tuple(sorted(set(days)))
        if not window_days or window_days[0] < 1:
            raise StatsParameterError(f"window lengths must be >= 1 day, got {tuple(days)}")
        if last_n < 1:
            raise StatsParameterError(f"last_n must be >= 1, got {last_n}")
        self.days = window_days
        self.last_n = last_n
        self._keys: dict[Key, OldKeyWindows] = {}
        self._groups: dict[tuple[Key, ...], OldKeyGroup] = {}
        #: The current matrix entry of each case that may still be in some key's last N.
        self._open: dict[str, Entry] = {}
        self._open_limit = 4 * last_n

    def group(self, keys: Iterable[Key], kept: object = None) -> OldKeyGroup:
        """The windows of `keys` (made on first use), to pass to `apply_group`. (`kept`
        is the new windows' choice of the keys keeping their own last N: here every key
        keeps its own, as it did.)"""
        keys = tuple(keys)
        found = self._groups.get(keys)
        if found is None:
            states = []
            for key in keys:
                state = self._keys.get(key)
                if state is None:
                    state = self._keys[key] = OldKeyWindows(self.days, self.last_n)
                states.append(state)
            found = self._groups[keys] = OldKeyGroup(tuple(states))
        return found

    def apply(
        self,
        keys: Iterable[Key],
        case_id: str,
        previous: CaseOutcome | None,
        new: CaseOutcome,
        case_time: datetime,
    ) -> None:
        """Count a case (or its correction) under each of `keys`.

        `previous` is the outcome this case was last applied with, None for a new case;
        `case_time` is the case's own time (the same on every revision), which places it in
        a calendar day.
        """
        day = utc_day(case_time)
        old = None if previous is None else COLUMN[previous]
        self.apply_group(self.group(keys), case_id, old, COLUMN[new], day)

    def apply_group(
        self, group: OldKeyGroup, case_id: str, previous: int | None, new: int, day: int
    ) -> None:
        """`apply` with the keys resolved (`group`), outcomes as `COLUMN`s and the UTC day."""
        if previous is None:
            for state in group.windows:
                if day == state.watermark:
                    state.current[new] += 1
                else:
                    bucket = state.buckets.get(day) or state.new_bucket(day)
                    if bucket is not None:
                        bucket[new] += 1
            if new < _IN_MATRIX:
                self._enter(group, case_id, new)
            return
        for state in group.windows:
            if day == state.watermark:
                bucket = state.current
            else:
                bucket = state.buckets.get(day) or state.new_bucket(day)
                if bucket is None:
                    continue
            if bucket[previous] == 0:
                # Retracting what was never added would corrupt every window of this key.
                raise StatsParameterError(
                    "a correction names a previous outcome that was never counted for this "
                    "case's day: pass the outcome this case was last applied with"
                )
            bucket[previous] -= 1
            bucket[new] += 1
        if previous < _IN_MATRIX:
            entry = self._open.get(case_id)
            if entry is None:
                return  # displaced from every key's last N; nothing there to change
            if new < _IN_MATRIX:
                entry[0] = new
            else:
                entry[0] = _LEFT
                del self._open[case_id]
        elif new < _IN_MATRIX:
            self._enter(group, case_id, new)

    def _enter(self, group: OldKeyGroup, case_id: str, column: int) -> None:
        entry = [column]
        self._open[case_id] = entry
        for entries in group.entries:
            entries.append(entry)
        if len(self._open) > self._open_limit:
            self._forget_displaced()

    def _forget_displaced(self) -> None:
        """Drop the entries no key's last N holds any more (amortized: the map is rebuilt
        only when it has grown to twice what the keys can hold)."""
        held = {id(entry) for state in self._keys.values() for entry in state.entries}
        self._open = {c: e for c, e in self._open.items() if id(e) in held}
        self._open_limit = 2 * len(self._open) + 4 * self.last_n

    def keys(self) -> list[Key]:
        return list(self._keys)

    def window(self, key: Key, window: int | str, now: datetime | None = None) -> WindowCounts:
        """Counts of `key` over `window`: a day count from `days`, or "last_n".

        Calendar windows end on the UTC day of `now`, by default the latest case day seen
        under this key (event time). Read at or after that day: older days may be dropped.
        """
        state = self._keys.get(key)
        if window == "last_n":
            return state.last_n() if state is not None else _counts([0] * 7)
        if window not in self.days:
            raise StatsParameterError(
                f"unknown window {window!r}: use one of {self.days} or 'last_n'"
            )
        assert isinstance(window, int)
        if state is None or state.watermark < 0:
            return _counts([0] * 7)
        today = state.watermark if now is None else utc_day(now)
        if today - window < state.watermark - self.days[-1]:
            raise StatsParameterError(
                f"a {window}-day window ending {now} reaches days already dropped: "
                f"read it at or after the latest case day"
            )
        return state.calendar(window, today)

    def memory_cells(self, key: Key) -> int:
        """Day buckets plus last-N entries held for `key`: at most longest window + last_n."""
        state = self._keys.get(key)
        return 0 if state is None else state.memory_cells()

    def late_ignored(self, key: Key) -> int:
        """Cases or corrections under `key` that came after their day left the longest window."""
        state = self._keys.get(key)
        return 0 if state is None else state.late_ignored


class OldLabelFree(LabelFreeMonitor):
    def add(self, day: int, positive: bool, score: float) -> None:
        if self._first_day is None:
            self._first_day = day
        key = round(score * _SCORE_SCALE)
        if day < self._first_day + self.reference_days:
            bucket = self._reference
        else:
            if self._watermark is None or day > self._watermark:
                self._watermark = day
                for old in [d for d in self._recent if d <= day - self.recent_days]:
                    del self._recent[old]
            if day <= self._watermark - self.recent_days:
                return
            found = self._recent.get(day)
            if found is None:
                found = self._recent[day] = _Day(scores=Counter())
            bucket = found
        bucket.cases += 1
        bucket.positives += int(positive)
        assert bucket.scores is not None
        bucket.scores[key] += 1



# -- main ef02b71's VersionCharts, which the old per-case path below overrode in part --

class OldObservation(NamedTuple):
    metric: Metric
    failure: bool
    at: datetime  # report time


#: `OldObservation` from a (metric, failure, at) tuple, without the Python-level `__new__`.
_old_observation = partial(tuple.__new__, OldObservation)


@dataclass
class MainVersionCharts:
    """Main ef02b71's `VersionCharts` (datetimes throughout), line for line."""

    baseline: ToolBaseline
    reference_days: int
    grace_days: int
    settle_days: int
    false_alarms_per_year: float
    clock: datetime | None = None
    settled: datetime | None = None  # latest report time released to the charts
    reference_start: datetime | None = None
    reference_counts: dict[Metric, int] = field(
        default_factory=lambda: {"sensitivity": 0, "specificity": 0}
    )
    charts: dict[Metric, Chart] | None = None
    period_start: datetime | None = None  # current volume period (report time)
    period_counts: dict[Metric, int] = field(
        default_factory=lambda: {"sensitivity": 0, "specificity": 0}
    )
    _waiting: list[OldObservation] = field(default_factory=list)
    _settling: dict[str, OldObservation] = field(default_factory=dict)
    #: OldObservations waiting to settle, as (at, case): those that came in (at, case) order
    #: in a FIFO, the others in a heap; released in (at, case) order from both. Reports
    #: mostly arrive in report-time order, and a FIFO costs a fraction of a heap's pop.
    _due_in_order: deque[tuple[datetime, str]] = field(default_factory=deque)
    _due: list[tuple[datetime, str]] = field(default_factory=list)
    #: clock - settle_days: observations due at or before it are released (kept with the
    #: clock, so that the per-case path makes no datetime unless the clock moves).
    _horizon: datetime | None = None
    reference_end: datetime | None = None  # reference_start + reference_days
    _design_at: datetime | None = None  # reference_end + grace_days: the design's time
    _period_end: datetime | None = None  # period_start + reference_days

    def __post_init__(self) -> None:
        self._settle = timedelta(days=self.settle_days)

    def _set_reference_start(self, start: datetime) -> None:
        self.reference_start = start
        self.reference_end = start + timedelta(days=self.reference_days)
        self._design_at = self.reference_end + timedelta(days=self.grace_days)

    def update(
        self, case_id: str, previous: CaseOutcome | None, new: CaseOutcome, at: datetime
    ) -> list[Signal]:
        """Fold one revision of a case in (`at`: its report time); returns the signals raised.

        A case entering the confusion matrix starts settling; a revision while it settles
        replaces its observation (or drops it, if it left the matrix); a revision of a case
        already released changes nothing here (the windows and verdicts take it).
        """
        entry = CHART_INPUT.get(new)
        settling = self._settling
        held = settling.get(case_id)
        if held is not None:
            if entry is None:
                del settling[case_id]
            else:
                settling[case_id] = _old_observation((*entry, held.at))
        elif entry is not None and previous not in CHART_INPUT:
            settling[case_id] = _old_observation((*entry, at))
            item = (at, case_id)
            in_order = self._due_in_order
            if not in_order or in_order[-1] <= item:
                in_order.append(item)
            else:
                heapq.heappush(self._due, item)
        clock = self.clock
        horizon: datetime | None
        if clock is None or at > clock:
            self.clock = at
            self._horizon = horizon = at - self._settle
        else:
            horizon = self._horizon
        if horizon is None:
            return []
        in_order, due = self._due_in_order, self._due
        if (not in_order or in_order[0][0] > horizon) and (not due or due[0][0] > horizon):
            return []
        return self._release(horizon)

    def _release(self, horizon: datetime) -> list[Signal]:
        signals: list[Signal] = []
        in_order, due, settling = self._due_in_order, self._due, self._settling
        charts, end = self.charts, self.reference_end
        while True:
            if in_order and (not due or in_order[0] <= due[0]):
                if in_order[0][0] > horizon:
                    break
                at, case_id = in_order.popleft()
            elif due and due[0][0] <= horizon:
                at, case_id = heapq.heappop(due)
            else:
                break
            obs = settling.get(case_id)
            if obs is None or obs.at != at:
                continue  # dropped while settling
            del settling[case_id]
            if charts is not None and end is not None and at >= end:
                # The usual case, without `_observe`'s reference-period bookkeeping.
                if self.settled is None or at > self.settled:
                    self.settled = at
                self._feed(obs, signals)
            else:
                self._observe(obs, signals)  # may design the charts
                charts, end = self.charts, self.reference_end
        return signals

    def _observe(self, obs: OldObservation, signals: list[Signal]) -> None:
        """Count `obs` in the reference period or feed it to its chart; signals to `signals`."""
        if self.settled is None or obs.at > self.settled:
            self.settled = obs.at
        if self.charts is None:
            self._waiting.append(obs)
            if self.reference_start is None or obs.at < self.reference_start:
                self._set_reference_start(obs.at)
            end, design_at = self.reference_end, self._design_at
            assert end is not None and design_at is not None
            if self.settled >= design_at:
                self._design(end, signals)
            return
        end = self.reference_end
        assert end is not None
        if obs.at >= end:
            self._feed(obs, signals)

    def close(self, metric: Metric) -> None:
        """End the metric's episode: a signalled chart restarts from zero."""
        if self.charts is not None and self.charts[metric].signalled_at is not None:
            self.charts[metric].restart()

    def _design(self, end: datetime, signals: list[Signal]) -> None:
        later: list[OldObservation] = []
        for obs in self._waiting:
            if obs.at < end:
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
        for obs in sorted(later, key=lambda o: o.at):
            self._feed(obs, signals)

    def _count_volume(self, obs: OldObservation) -> None:
        """Count `obs` in its volume period; re-derive thresholds when a period ends."""
        assert self.charts is not None
        if self.period_start is None:
            self.period_start = self.reference_end
        assert self.period_start is not None
        if self._period_end is None:
            self._period_end = self.period_start + timedelta(days=self.reference_days)
        if obs.at >= self._period_end:
            period = timedelta(days=self.reference_days)
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
            skipped = (obs.at - self.period_start) // period
            self.period_start += skipped * period
            self._period_end = self.period_start + period
            self.period_counts = {m: 0 for m in METRICS}
        if obs.at >= self.period_start:
            self.period_counts[obs.metric] += 1

    def _feed(self, obs: OldObservation, signals: list[Signal]) -> None:
        assert self.charts is not None and self.clock is not None
        start, end = self.period_start, self._period_end
        if start is not None and end is not None and start <= obs.at < end:
            self.period_counts[obs.metric] += 1  # the usual case: within the current period
        else:
            self._count_volume(obs)
        chart = self.charts[obs.metric]
        if chart.signalled_at is not None:
            return
        cusum = chart.cusum
        was_zero = cusum.statistic == 0.0
        if cusum.update(obs.failure).statistic == 0.0:
            chart.excursion_start = None
        elif was_zero or chart.excursion_start is None:
            chart.excursion_start = obs.at
        if not cusum.drift_detected:
            return
        chart.signals += 1
        chart.signalled_at = self.clock
        since = chart.excursion_start or obs.at
        signals.append(Signal(obs.metric, chart, self.clock, min(since, self.clock)))


class OldVersionCharts(MainVersionCharts):
    def update(
        self, case_id: str, previous: CaseOutcome | None, new: CaseOutcome, at: datetime
    ) -> list[Signal]:
        entry = CHART_INPUT.get(new)
        settling = self._settling
        held = settling.get(case_id)
        if held is not None:
            if entry is None:
                del settling[case_id]
            else:
                settling[case_id] = OldObservation(entry[0], entry[1], held.at)
        elif entry is not None and previous not in CHART_INPUT:
            settling[case_id] = OldObservation(entry[0], entry[1], at)
            heapq.heappush(self._due, (at, case_id))
        clock = self.clock
        if clock is None or at > clock:
            self.clock = at
            self._horizon = at - timedelta(days=self.settle_days)
        due = self._due
        if not due or self._horizon is None or due[0][0] > self._horizon:
            return []
        return self._release(self._horizon)

    def _release(self, horizon: datetime) -> list[Signal]:
        signals: list[Signal] = []
        due, settling = self._due, self._settling
        while due and due[0][0] <= horizon:
            at, case_id = heapq.heappop(due)
            obs = settling.get(case_id)
            if obs is None or obs.at != at:
                continue
            del settling[case_id]
            end = self.reference_end
            if self.charts is not None and end is not None and at >= end:
                if self.settled is None or at > self.settled:
                    self.settled = at
                self._feed(obs, signals)
            else:
                self._observe(obs, signals)
        return signals

    def _feed(self, obs: OldObservation, signals: list[Signal]) -> None:
        assert self.charts is not None and self.clock is not None
        start, end = self.period_start, self._period_end
        if start is not None and end is not None and start <= obs.at < end:
            self.period_counts[obs.metric] += 1
        else:
            self._count_volume(obs)
        chart = self.charts[obs.metric]
        if chart.signalled_at is not None:
            return
        was_zero = chart.cusum.statistic == 0.0
        chart.cusum.update(obs.failure)
        if chart.cusum.statistic == 0.0:
            chart.excursion_start = None
        elif was_zero or chart.excursion_start is None:
            chart.excursion_start = obs.at
        if not chart.cusum.drift_detected:
            return
        chart.signals += 1
        chart.signalled_at = self.clock
        since = chart.excursion_start or obs.at
        signals.append(Signal(obs.metric, chart, self.clock, min(since, self.clock)))


class OldMonitor(PerformanceMonitor):
    def on_case(
        self, previous: CaseRecord | None, case: AdjudicatedCase, stored: CaseRecord | None = None
    ) -> list[Alert]:
        if previous is not None and case.revision <= previous.revision:
            return []
        inferred = case.inference_date
        ts = inferred.timestamp()
        day = int(ts // _SECONDS_PER_DAY) + _EPOCH_DAY
        where = (case.tool_id, case.software_version, case.site, case.scanner_manufacturer,
                 case.sex, case.age)
        placement = self._placements.get(where)
        record: VersionRecord
        if previous is None:
            if placement is None:
                return self._apply(None, CaseView.of_case(case), alert=True)
            record = placement.record
            if ts > record.latest_ts:
                record.latest_inferred, record.latest_ts = inferred, ts
            record.label_free.add(day, case.result_indicator, case.ai_result)
            before, was_labelled = None, False
        elif (
            placement is None or case.case_id in self._homes
            or int(previous.inference_ts // _SECONDS_PER_DAY) + _EPOCH_DAY != day
            or where != (previous.tool, previous.version, previous.site,
                         previous.scanner_manufacturer, previous.sex, previous.age)
        ):
            return self._moved(previous, case)
        else:
            record = placement.record
            if previous.inference_ts > record.latest_ts:
                record.latest_ts = previous.inference_ts
                record.latest_inferred = datetime.fromtimestamp(previous.inference_ts, UTC)
            before, was_labelled = _OUTCOME[previous.outcome], previous.labelled_ts is not None
        outcome = case.outcome
        placement.windows.apply_group(
            placement.group, case.case_id, None if before is None else COLUMN[before],
            COLUMN[outcome], day,
        )
        labelled = case.labelled_at
        if labelled is not None and not was_labelled:
            lags = record.report_lags
            lags.append(max((labelled - inferred) / _DAY, 0.0))
            if len(lags) > REPORT_LAGS_KEPT:
                del lags[0]
        charts = placement.charts
        if charts is None:
            return []
        signals = charts.update(case.case_id, before, outcome, labelled or inferred)
        return self._signalled(record, signals, alert=True) if signals else []


@contextmanager
def old_path() -> Iterator[None]:
    """While open, monitors are built (and their versions and tools opened) with the old
    per-case classes."""
    with (
        patch.object(case_placement, "VersionCharts", OldVersionCharts),
        patch.object(case_placement, "LabelFreeMonitor", OldLabelFree),
        patch.object(monitor_state, "AgreementWindows", OldAgreementWindows),
    ):
        yield
