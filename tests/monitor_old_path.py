"""The monitor's per-case update path as it was before the hot-path work (main b49acee), as
a test oracle only: `old_path()` swaps these classes in while a monitor is built and fed.

Kept as it was, line for line where it can be: the per-case `on_case` reading the pydantic
case, one heap of settling observations, the windows' full scan for old day buckets, the
label-free `Counter` increment. Everything else (the general path, the daily evaluation)
is shared with the production classes, so a difference in what the two monitors hold or
return comes from the per-case path.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from unittest.mock import patch

from surveillance.clinical import case_placement, monitor_state
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
from surveillance.clinical.verdicts import CHART_INPUT
from surveillance.clinical.version_charts import Observation, Signal, VersionCharts
from surveillance.contracts import AdjudicatedCase, Alert, CaseOutcome
from surveillance.stats.windows import COLUMN, AgreementWindows, KeyGroup, KeyWindows


class OldKeyWindows(KeyWindows):
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


class OldAgreementWindows(AgreementWindows):
    def group(self, keys: object) -> KeyGroup:
        keys = tuple(keys)  # type: ignore[call-overload]
        found = self._groups.get(keys)  # type: ignore[arg-type]
        if found is None:
            states = []
            for key in keys:
                state = self._keys.get(key)
                if state is None:
                    state = self._keys[key] = OldKeyWindows(self.days, self.last_n)
                states.append(state)
            found = self._groups[keys] = KeyGroup(tuple(states))  # type: ignore[index]
        return found

    def _enter(self, group: KeyGroup, case_id: str, column: int) -> None:
        entry = [column]
        self._open[case_id] = entry
        for entries in group.entries:
            entries.append(entry)
        if len(self._open) > self._open_limit:
            self._forget_displaced()


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


class OldVersionCharts(VersionCharts):
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
                settling[case_id] = Observation(entry[0], entry[1], held.at)
        elif entry is not None and previous not in CHART_INPUT:
            settling[case_id] = Observation(entry[0], entry[1], at)
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

    def _feed(self, obs: Observation, signals: list[Signal]) -> None:
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
