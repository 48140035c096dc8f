"""Once per event-time day per tool, at a point fixed by event time: the case revisions of
the day into the monitor, then verdicts, snapshots (one record); the gauges once per batch.

The evaluation point. Day D of a tool is evaluated once its clock (the low watermark of the
join partitions, `engine.cases`) has passed the end of D by `grace`. Until then the case
revisions wait (`clinical.evaluation_order`); at D's evaluation the monitor takes, in
(effect time, case id) order, every revision whose effect time is before the end of D,
and only those; the evaluation reads the windows as of the end of D. What a day's alerts,
snapshots and verdicts hold is then fixed by the cases (their event times and content),
not by the order or the batches in which partitions were read: two runs give the same.

A revision read later than that (more than `grace` behind the clock: a partition far
behind, a correction long after its report) is taken at the next evaluation, in its own
day's bucket: the day it belongs to has been published without it, the next day's windows
(which cover that day) count it. CUSUM signals and version changes are raised when the
monitor takes the case, i.e. at the evaluation point: up to a day plus `grace` after the
case was read (their content, dated by event time, is unchanged).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta

import msgspec

from surveillance.clinical.case_placement import CaseView
from surveillance.clinical.evaluation_order import EvaluationQueue, effect_ts
from surveillance.clinical.ledger import CaseRecord
from surveillance.clinical.monitor import PerformanceMonitor
from surveillance.contracts import Alert, CaseOutcome, MetricSnapshot, SnapshotBatch
from surveillance.contracts.wire import AnyAdjudicatedCase
from surveillance.engine.drift import DriftBanks
from surveillance.engine.records import Output, Produce
from surveillance.stream import topics

#: Default lag of the evaluation point behind the end of a day (`EngineConfig`).
EVALUATION_GRACE = timedelta(days=1)
_DAY = timedelta(days=1)
_DAY_S = 86_400.0
#: A stored record's revision waiting for its day (`DailyEvaluation.defer`): effect time
#: (POSIX s), case id, the view the monitor holds of the case (None: none), the new one.
Step = tuple[float, str, CaseView | None, CaseView]


def _start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


class DailyEvaluation:
    def __init__(self, snapshots: bool = True, grace: timedelta = EVALUATION_GRACE,
                 unlabelled_after: timedelta = timedelta(days=14)) -> None:
        if grace < timedelta(0):
            raise ValueError(f"the evaluation grace must be >= 0, got {grace}")
        self.snapshots = snapshots
        self.grace = grace
        #: Per tool, the next day to evaluate.
        self.next_day: dict[str, date] = {}
        self.queue = EvaluationQueue(unlabelled_after)
        #: Per tool evaluated in this batch, its latest snapshot per figure: the gauges are
        #: set once per batch (`flush`), with the values the last evaluation left.
        self._gauges: dict[str, dict[tuple[object, ...], MetricSnapshot]] = {}
        #: Per tool, (next day, the clock that makes it due): `maybe` runs once per case
        #: record and, between two days, only compares the clock with this.
        self._due_at: dict[str, tuple[date, datetime]] = {}
        #: Per tool replayed from its records, their revisions in effect from the day its
        #: refused snapshot was to evaluate next, in (effect time, case id) order
        #: (`defer`); each is taken at the evaluation it is due at. Held in the snapshot.
        self.deferred: dict[str, list[Step]] = {}

    def take(self, previous: CaseRecord | None, case: AnyAdjudicatedCase,
             record: CaseRecord) -> None:
        """A case revision for the monitor: it waits for its day's evaluation."""
        self.queue.add(previous, case, record)

    def forget(self) -> None:
        """After a rebuild: the waiting revisions are among the stored records it counted."""
        self.queue.forget()
        self.deferred.clear()

    def defer(self, tool: str, day: date, records: Iterable[tuple[str, CaseRecord]]
              ) -> list[tuple[str, CaseRecord]]:
        """`tool`, replayed from its stored records (`engine.cases.CaseStage.rebuild`),
        goes on from `day`, the day its refused snapshot was to evaluate next. Without this
        its evaluation went on from its latest case day (the monitor's windows cannot be
        read before it), and the days between were never published. Returns what the
        monitor takes now, silently: the records in effect before `day`, and a pending
        stand-in for a case whose AI call is before `day` and whose report is not. The
        rest waits (`deferred`) and is taken at the evaluation of its day, as the case
        revisions would have been: a case in effect after its AI call's day as pending on
        that day, then as recorded at its effect time (`clinical.evaluation_order`).
        Approximate as a replay is: a record is a case's latest revision only."""
        start = _start(day).timestamp()
        after = self.queue.unlabelled_after
        now: list[tuple[str, CaseRecord]] = []
        steps: list[Step] = []
        for case_id, record in records:
            effect = effect_ts(record.outcome, record.inference_ts, record.labelled_ts, after)
            if effect < start:
                now.append((case_id, record))
                continue
            view = CaseView.of_record(case_id, record)
            # In effect after its AI call's day: that day's evaluation took it as pending
            # (`EvaluationQueue.due`'s stand-in), and its record later.
            if effect >= (record.inference_ts // _DAY_S + 1) * _DAY_S:
                pending = msgspec.structs.replace(
                    record, revision=-1, outcome=CaseOutcome.PENDING.value, labelled_ts=None)
                stand_in = CaseView.of_record(case_id, pending)
                if record.inference_ts < start:
                    now.append((case_id, pending))
                else:
                    steps.append((record.inference_ts, case_id, None, stand_in))
                steps.append((effect, case_id, stand_in, view))
            else:
                steps.append((effect, case_id, None, view))
        steps.sort(key=lambda s: (s[0], s[1]))
        if steps:
            self.deferred[tool] = steps
        self.next_day[tool] = day
        return now

    def maybe(self, tool: str, clock: datetime, monitor: PerformanceMonitor, out: Output
              ) -> list[Alert]:
        """Evaluate each day of `tool` whose end `clock` has passed by the grace, in turn;
        the alerts (the monitor's on taking the cases, then the day's)."""
        day = self.next_day.get(tool)
        if day is not None:
            due = self._due_at.get(tool)
            if due is None or due[0] != day:  # a new day, or one a snapshot restored
                due = self._due_at[tool] = (day, _start(day) + _DAY + self.grace)
            if clock < due[1]:
                return []
        else:
            # From the earliest case day waiting, fixed when that day is due (every case
            # of an earlier day has arrived by then: no earlier day has anything to
            # publish); after a rebuild (a restart), from the latest case day the monitor
            # holds: the days before it were evaluated before.
            first = self.queue.first_day(tool)
            if first is None or _start(first) + _DAY + self.grace > clock:
                return []
            held = [r.latest_inferred.date()
                    for r in monitor.state.versions.get(tool, {}).values()]
            day = max([first, *held])
        alerts: list[Alert] = []
        while (end := _start(day) + _DAY) + self.grace <= clock:
            if tool in self.deferred:
                alerts += self._deferred(tool, end, monitor)
            for previous, case, record in self.queue.due(tool, end):
                alerts += monitor.on_case(previous, case, record)
            alerts += self._evaluate(tool, end, monitor, out)
            day += _DAY
        self.next_day[tool] = day
        return alerts

    def _deferred(self, tool: str, end: datetime, monitor: PerformanceMonitor) -> list[Alert]:
        """The deferred revisions of `tool` in effect before `end`, into the monitor."""
        steps, cut = self.deferred[tool], end.timestamp()
        due = 0
        while due < len(steps) and steps[due][0] < cut:
            due += 1
        if due == len(steps):
            del self.deferred[tool]
        else:
            self.deferred[tool] = steps[due:]
        return monitor.replay((before, view) for _, _, before, view in steps[:due])

    def _evaluate(self, tool: str, end: datetime, monitor: PerformanceMonitor, out: Output
                  ) -> list[Alert]:
        alerts, snapshots = monitor.evaluate(end, tools=[tool], snapshots=self.snapshots)
        if snapshots:
            # One record for the tool's day, not one per figure (a produce each).
            batch = SnapshotBatch(tool_id=tool, at=end, snapshots=snapshots)
            out.produce.append(Produce(topics.SNAPSHOTS, tool.encode(),
                                       batch.model_dump_json().encode()))
        if self.snapshots:
            latest = self._gauges.setdefault(tool, {})
            for s in snapshots:
                latest[s.kind, s.software_version, s.site, s.window, s.metric] = s
        return alerts

    def flush(self, monitor: PerformanceMonitor, drift: DriftBanks, out: Output) -> None:
        """The gauges of each tool evaluated since the last flush (the end of a batch):
        its own only, the other tools' have not changed."""
        for tool, latest in self._gauges.items():
            out.metric("publish_snapshots", list(latest.values()))
            out.metric("publish_drift", tool, drift.bank(tool).statistics())
            out.metric("publish_verdicts", monitor.verdicts(tool))
            out.metric("publish_charts", monitor.chart_states(tool))
        self._gauges.clear()
