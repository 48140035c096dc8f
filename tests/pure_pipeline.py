"""The worker's ingest -> join -> ledger path without Kafka, for scenario tests.

`case_revisions` yields each new case revision with the record it replaces, in arrival
order, exactly as `stream.app`'s join and case agents apply them (one join partition; its
event-time watermark an `EventClock`, as the worker's). `joined` runs the join per
partition, as the workers do, and gives each case with the partition it came from and the
event time that partition's AI results had reached: what the case agent's drift clock is
built from. `DriftPath` is the case agent's drift side; `drift_alerts` runs it over events.
`CasePath` is the whole case agent (ledger, metrics, held cases, monitor, drift banks, daily
evaluation and publishing); `case_path` runs ingest, join and it over events.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, time, timedelta
from typing import TypeVar

from surveillance.clinical import join
from surveillance.clinical.baselines import load_registry
from surveillance.clinical.ledger import CaseLedger, CaseRecord
from surveillance.clinical.monitor import PerformanceMonitor
from surveillance.contracts import AdjudicatedCase, Alert
from surveillance.observe import metrics, publish
from surveillance.simulate import SimEvent
from surveillance.stats.drift_bank import DriftBank
from surveillance.stream.ahead import AheadCases
from surveillance.stream.case_features import as_ai_result, new_bank, record_ai_result
from surveillance.stream.ingest import MAX_CLOCK_SKEW, Ingest, Rejected
from surveillance.stream.watermark import EventClock, SourceWatermark

HORIZON = timedelta(days=14)
IDLE_SECONDS = 30.0  # as stream/app.py SOURCE_IDLE_SECONDS
T = TypeVar("T")


def joined(
    events: Iterable[SimEvent], partitions: int = 1, key: bytes = b"test-key"
) -> Iterator[tuple[int, datetime, AdjudicatedCase]]:
    """(join partition, event time its AI results have reached, case) for every case the
    join emits, in the order the events come (a producer keyed by accession puts each
    event on that partition of its topic). Like `stream.app.PartitionClock`: the
    partition's watermark over all events times the join, its AI results' the drift;
    neither moves for one event alone (`EventClock`, at each event's arrival time).
    Cases emitted before any clock has moved carry their own AI time."""
    path = JoinPath(partitions, key)
    for event in events:
        yield from path.feed(event)


class JoinPath:
    """Ingest and the join on `partitions`, fed one event at a time (see `joined`)."""

    def __init__(self, partitions: int, key: bytes = b"test-key") -> None:
        codes = [b.finding_code for b in load_registry().values()]
        self.ingest = Ingest(key, codes, 64 * 1024)
        self.partitions = partitions
        self.states: dict[str, join.JoinState] = {}
        self.clocks: dict[int, tuple[EventClock, EventClock]] = {}
        self.rejected: list[Rejected] = []

    def feed(self, event: SimEvent) -> list[tuple[int, datetime, AdjudicatedCase]]:
        accepted = self.ingest.accept(event.topic, event.value, event.arrival, self.partitions)
        if isinstance(accepted, Rejected):
            self.rejected.append(accepted)
            return []
        item, partition = accepted
        events_clock, ai_clock = self.clocks.setdefault(
            partition, (EventClock(MAX_CLOCK_SKEW), EventClock(MAX_CLOCK_SKEW)))
        state, cases = join.apply(self.states.get(item.accession), item, partition, HORIZON,
                                  events_clock.at)
        self.states[item.accession] = state
        at = join.event_time(item)
        events_clock.observe(at, event.arrival)
        if item.ai is not None:
            ai_clock.observe(at, event.arrival)
        reached = ai_clock.at or events_clock.at
        return [(partition, reached or case.inference_date, case) for case in cases]


def case_revisions(
    events: Iterable[SimEvent], key: bytes = b"test-key"
) -> Iterator[tuple[CaseRecord | None, AdjudicatedCase]]:
    for _, previous, case in ledger_revisions((None, c) for _, _, c in joined(events, 1, key)):
        yield previous, case


def ledger_revisions(
    cases: Iterable[tuple[T, AdjudicatedCase]],
) -> Iterator[tuple[T, CaseRecord | None, AdjudicatedCase]]:
    """The case agent's ledger: each new revision with the record it replaces (and
    whatever came with the case, passed through)."""
    ledger = CaseLedger()
    table: dict[str, CaseRecord] = {}
    for extra, case in cases:
        previous = table.get(case.case_id)
        record = ledger.apply(previous, case, 0)
        if record is not None:
            table[case.case_id] = record
            yield extra, previous, case


def take(
    banks: dict[str, DriftBank], previous: CaseRecord | None, case: AdjudicatedCase
) -> DriftBank:
    """The case's tool bank (the worker's configuration), with a new case's AI result in."""
    bank = banks.get(case.tool_id)
    if bank is None:
        bank = banks[case.tool_id] = new_bank(case.tool_id)
    if previous is None:
        bank.update(as_ai_result(case))
    return bank


class DriftPath:
    """The case agent's drift side (stream/app.py `_count`) for one `cases.adjudicated`
    stream: the worker's bank configuration, a new case's AI result into its tool's bank,
    and the banks advanced to the low watermark of the join partitions."""

    def __init__(
        self, partitions: int, banks: dict[str, DriftBank] | None = None, now: float = 0.0
    ) -> None:
        self.banks = banks if banks is not None else {}
        self.sources = SourceWatermark(IDLE_SECONDS, range(partitions), now)

    def on_case(
        self, source: int, reached: datetime, previous: CaseRecord | None,
        case: AdjudicatedCase, now: float,
    ) -> list[Alert]:
        self.sources.observe(source, reached, now)
        bank = take(self.banks, previous, case)
        low = self.sources.low(now)
        return [] if low is None else [v.to_alert() for v in bank.advance(low)]


def joined_revisions(
    events: Iterable[SimEvent], partitions: int
) -> Iterator[tuple[tuple[int, datetime], CaseRecord | None, AdjudicatedCase]]:
    """((join partition, its AI watermark), previous record, case) per new revision."""
    return ledger_revisions(((p, w), c) for p, w, c in joined(events, partitions))


def drift_alerts(events: Iterable[SimEvent], partitions: int = 4) -> list[Alert]:
    """The drift alerts the worker raises for `events` coming in this order (1 ms of wall
    time per case)."""
    path = DriftPath(partitions)
    alerts: list[Alert] = []
    for wall, ((source, reached), previous, case) in enumerate(
        joined_revisions(events, partitions)
    ):
        alerts += path.on_case(source, reached, previous, case, wall / 1000)
    return alerts


class LatestSeenClock:
    """The drift clock before the watermark, for comparison: the latest event time seen."""

    def __init__(self) -> None:
        self.at: datetime | None = None

    def feed(
        self, banks: dict[str, DriftBank], previous: CaseRecord | None, case: AdjudicatedCase
    ) -> list[Alert]:
        at = max(case.inference_date, case.labelled_at or case.inference_date)
        self.at = at if self.at is None or at > self.at else self.at
        return [v.to_alert() for v in take(banks, previous, case).advance(self.at)]


class CasePath:
    """The case agent (stream/app.py `_count`) on one `cases.adjudicated` partition: the
    ledger and its table, the case metrics, cases held while far ahead of their join
    partition's clock, the monitor, the drift banks, and once per new event-time day of a
    tool's clock its evaluation, published as the worker publishes it (`publish=True`)."""

    def __init__(self, partitions: int, publish: bool = True) -> None:
        self.monitor = PerformanceMonitor(load_registry())
        self.ledger = CaseLedger()
        self.table: dict[str, CaseRecord] = {}
        self.banks: dict[str, DriftBank] = {}
        self.ahead = AheadCases()
        self.sources = SourceWatermark(IDLE_SECONDS, range(partitions), 0.0)
        self.evaluated: dict[str, datetime] = {}
        self.publish = publish

    def on_case(
        self, source: int, reached: datetime, case: AdjudicatedCase, now: float
    ) -> list[Alert]:
        self.sources.observe(source, reached, now)
        previous = self.table.get(case.case_id)
        record = self.ledger.apply(previous, case, 0, source)
        if record is None:
            return []
        self.table[case.case_id] = record
        metrics.record_case(case.tool_id, case.software_version, case.site, case.outcome)
        held = self.ahead.hold(case, previous is None, reached)
        alerts = [] if held else self._monitor(previous, case, record)
        clock = self.sources.low(now)
        if clock is not None:
            for released in self.ahead.release(clock):
                alerts += self._monitor(None, released, self.table[released.case_id])
            alerts += [v.to_alert() for v in self._bank(case.tool_id).advance(clock)]
            alerts += self._evaluate(case.tool_id, clock)
        return alerts

    def _bank(self, tool: str) -> DriftBank:
        bank = self.banks.get(tool)
        if bank is None:
            bank = self.banks[tool] = new_bank(tool)
        return bank

    def _monitor(
        self, previous: CaseRecord | None, case: AdjudicatedCase, record: CaseRecord
    ) -> list[Alert]:
        alerts = self.monitor.on_case(previous, case)
        if previous is None:
            drift_input = record_ai_result(record)
            assert drift_input is not None
            self._bank(case.tool_id).update(drift_input)
        return alerts

    def _evaluate(self, tool: str, at: datetime) -> list[Alert]:
        day = datetime.combine(at.date(), time.min, tzinfo=UTC)
        last = self.evaluated.get(tool)
        if last is not None and day <= last:
            return []
        self.evaluated[tool] = day
        if last is None:
            return []
        alerts, snapshots = self.monitor.evaluate(day, tools=[tool], snapshots=self.publish)
        if self.publish:
            publish.publish(snapshots)
            publish.publish_drift(tool, self._bank(tool).statistics())
            publish.publish_verdicts(self.monitor.verdicts())
            publish.publish_charts(self.monitor.chart_states())
        return alerts


def case_path(
    events: Iterable[SimEvent], partitions: int = 4, publish: bool = True
) -> tuple[CasePath, list[Alert]]:
    """Ingest, the join on `partitions` and the case agent over `events` in this order
    (1 ms of wall time per case); the path (its ledger, table, monitor) and its alerts."""
    path = CasePath(partitions, publish)
    alerts: list[Alert] = []
    for wall, (source, reached, case) in enumerate(joined(events, partitions)):
        alerts += path.on_case(source, reached, case, wall / 1000)
    return path, alerts
