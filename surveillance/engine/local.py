"""The engine run in one process, internal topics looped back in memory.

What a worker does with a stream of input events when every partition is its own and no
record waits in a broker: tests, scenario runs and benchmarks drive the engine this way.
Each input event is one batch at its arrival time; the records it leads to are read at
the latest arrival time so far (a worker's wall clock, which a re-ordered backlog does not
move backwards: an earlier-arriving event read late must not make a case built from
later events look dated in the future). Each case record is one batch of its own,
`wall_per_case` seconds of monotonic time after the previous case (the case stage's
watermark waits for quiet join partitions in wall time). Cases go to `case_partitions`
partitions of `cases.adjudicated` (1: one case stage sees every tool).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any, Protocol

from surveillance.clinical.ledger import CaseLedger, CaseRecord
from surveillance.contracts import Alert
from surveillance.contracts.wire import AdjudicatedCase
from surveillance.engine.config import EngineConfig
from surveillance.engine.horizon import is_summary
from surveillance.engine.pipeline import CASE_SNAPSHOTS, JOIN_TABLE, Engine
from surveillance.engine.records import MetricCall, Output, Produce, Record
from surveillance.stream import internal, topics
from surveillance.stream.ingest import Rejected, join_partition


class Event(Protocol):
    """An input event as a source system sends it (`simulate.SimEvent` is one)."""

    @property
    def topic(self) -> str: ...
    @property
    def key(self) -> bytes: ...
    @property
    def value(self) -> bytes: ...
    @property
    def arrival(self) -> datetime: ...


class LocalPipeline:
    def __init__(self, config: EngineConfig, case_partitions: int = 1,
                 wall_per_case: float = 0.001,
                 on_metrics: Callable[[list[MetricCall]], None] | None = None,
                 snapshots: bool = False) -> None:
        self.config = config
        self.case_partitions = case_partitions
        self.wall_per_case = wall_per_case
        self.on_metrics = on_metrics
        self.tables: dict[str, dict[str, Any]] = {"join_state": {}, "case_state": {},
                                                  "adverse_state": {}}
        if snapshots:  # the case stage's snapshots (`engine.snapshots`), kept in a table
            self.tables[CASE_SNAPSHOTS] = {}
        self.engine = Engine(config, *self.tables.values())
        self.offsets: dict[tuple[str, int], int] = {}
        self.cases_taken = 0
        self.clock: datetime | None = None  # the latest arrival time fed
        self.dead_letters: list[Produce] = []
        self.alerts: list[Alert] = []

    def feed(self, event: Event) -> list[Alert]:
        """One input event (on its accession's partition, as a producer keyed by accession
        puts it), then every internal record it leads to; the alerts raised."""
        partition = join_partition(event.key.decode(errors="replace"), self.config.partitions)
        before = len(self.alerts)
        self.clock = event.arrival if self.clock is None else max(self.clock, event.arrival)
        self._run(Record(event.topic, partition, self._offset(event.topic, partition),
                         event.key, event.value), event.arrival)
        return self.alerts[before:]

    def records(self) -> dict[str, CaseRecord]:
        """The case table: each case's latest record (the horizon's summaries left out)."""
        return {k: CaseRecord.from_dict(v) for k, v in self.tables["case_state"].items()
                if not is_summary(k)}

    def _run(self, first: Record, arrival: datetime) -> None:
        assert self.clock is not None
        queue = [first]
        while queue:
            record = queue.pop(0)
            mono = self.cases_taken * self.wall_per_case
            if record.topic == topics.CASES_ADJUDICATED:
                self.cases_taken += 1
            now = arrival if record is first else self.clock
            out = self.engine.process([record], now, mono)
            queue += self._apply(out)

    def _apply(self, out: Output) -> list[Record]:
        out.apply_to(self.tables)
        if self.on_metrics is not None:
            self.on_metrics(out.metrics)
        self.alerts += out.alerts
        looped = []
        for p in out.produce:
            if p.topic in (topics.CASES_JOIN, topics.CASES_ADJUDICATED):
                partition = p.partition if p.partition is not None else self._by_key(p.key)
                looped.append(Record(p.topic, partition, self._offset(p.topic, partition),
                                     p.key, p.value, tuple((p.headers or {}).items())))
            elif p.topic.endswith(".dlq"):
                self.dead_letters.append(p)
        return looped

    def _by_key(self, key: bytes) -> int:
        return zlib.crc32(key) % self.case_partitions

    def _offset(self, topic: str, partition: int) -> int:
        at = self.offsets.get((topic, partition), 0)
        self.offsets[topic, partition] = at + 1
        return at


class JoinFeed:
    """Ingest and the engine's join fed one input event at a time: the
    `cases.adjudicated` records each event leads to, read back as the case stage reads
    them. A plain object (benchmarks fork it mid-stream)."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.join_state: dict[str, Any] = {}
        self.engine = Engine(config, self.join_state, {}, {})
        self.offsets: dict[tuple[str, int], int] = {}
        self.clock: datetime | None = None  # the latest arrival so far: when cases are read

    def feed(self, event: Event) -> list[tuple[int, datetime, AdjudicatedCase]]:
        """(join partition, event time its AI results had reached, case) per case emitted."""
        config = self.config
        self.clock = event.arrival if self.clock is None else max(self.clock, event.arrival)
        partition = join_partition(event.key.decode(errors="replace"), config.partitions)
        offset = self.offsets[event.topic, partition] = (
            self.offsets.get((event.topic, partition), -1) + 1)
        pending = [Record(event.topic, partition, offset, event.key, event.value)]
        cases: list[tuple[int, datetime, AdjudicatedCase]] = []
        while pending:
            out = self.engine.process(pending, event.arrival, 0.0)
            pending = []
            out.apply_to({JOIN_TABLE: self.join_state})
            for p in out.produce:
                if p.topic == topics.CASES_JOIN:
                    assert p.partition is not None
                    pending.append(Record(p.topic, p.partition, 0, p.key, p.value))
                elif p.topic == topics.CASES_ADJUDICATED:
                    read = internal.read_case(p.value, list((p.headers or {}).items()),
                                              config.partitions, self.clock, config.dates)
                    assert not isinstance(read, Rejected), read  # our own join wrote it
                    case, source, reached = read
                    cases.append((source, reached, case))
        return cases


def joined(config: EngineConfig, events: Iterable[Event]
           ) -> Iterator[tuple[int, datetime, AdjudicatedCase]]:
    """(join partition, event time its AI results had reached, case) for every case the
    engine's join emits, in order (`JoinFeed` over the events)."""
    feed = JoinFeed(config)
    for event in events:
        yield from feed.feed(event)


def revisions(config: EngineConfig, events: Iterable[Event]
              ) -> Iterator[tuple[tuple[int, datetime], CaseRecord | None, AdjudicatedCase]]:
    """((join partition, its AI watermark), record replaced, case) per new case revision:
    the join, then the case stage's ledger (what the monitor and drift banks are given)."""
    ledger = CaseLedger()
    table: dict[str, CaseRecord] = {}
    for source, reached, case in joined(config, events):
        previous = table.get(case.case_id)
        record = ledger.apply(previous, case, 0, source)
        if record is not None:
            table[case.case_id] = record
            yield (source, reached), previous, case
