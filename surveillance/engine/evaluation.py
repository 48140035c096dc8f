"""Once per event-time day per tool: verdicts, snapshots (one record), drift windows; the
gauges once per batch."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from surveillance.clinical.monitor import PerformanceMonitor
from surveillance.contracts import Alert, MetricSnapshot, SnapshotBatch
from surveillance.engine.drift import DriftBanks
from surveillance.engine.records import Output, Produce
from surveillance.stream import topics


class DailyEvaluation:
    def __init__(self, snapshots: bool = True) -> None:
        self.snapshots = snapshots
        self.evaluated: dict[str, date] = {}
        #: Per tool evaluated in this batch, its latest snapshot per figure: the gauges are
        #: set once per batch (`flush`), with the values the last evaluation left.
        self._gauges: dict[str, dict[tuple[object, ...], MetricSnapshot]] = {}

    def maybe(self, tool: str, at: datetime, monitor: PerformanceMonitor, out: Output
              ) -> list[Alert]:
        """Evaluate `tool` if its clock `at` has entered a new day (never on the first day
        seen: that day is still open)."""
        day = at.date()
        last = self.evaluated.get(tool)
        if last is not None and day <= last:
            return []
        self.evaluated[tool] = day
        if last is None:
            return []
        now = datetime.combine(day, time.min, tzinfo=UTC)
        alerts, snapshots = monitor.evaluate(now, tools=[tool], snapshots=self.snapshots)
        if snapshots:
            # One record for the tool's day, not one per figure (a produce each).
            batch = SnapshotBatch(tool_id=tool, at=now, snapshots=snapshots)
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
