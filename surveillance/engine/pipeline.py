"""The engine: one object holding every stage and its state, fed a batch at a time."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime
from typing import Any

from surveillance.clinical.join import JoinState
from surveillance.clinical.ledger import CaseRecord
from surveillance.engine.adverse import AdverseStage
from surveillance.engine.cases import CaseStage
from surveillance.engine.config import EngineConfig
from surveillance.engine.join import JoinStage
from surveillance.engine.records import Output, Record, Unmetered
from surveillance.engine.snapshots import TABLE as SNAPSHOT_TABLE
from surveillance.engine.tables import Table
from surveillance.stream import topics

#: Table names: the Faust tables and their changelog topics are named after them.
JOIN_TABLE, CASE_TABLE, ADVERSE_TABLE = "join_state", "case_state", "adverse_state"
#: The case stage's per-tool snapshots (`engine.snapshots`).
CASE_SNAPSHOTS = SNAPSHOT_TABLE


def _same(raw: Any) -> dict[str, Any]:
    return dict(raw)


def _itself(value: Any) -> Any:
    return value


class Engine:
    """Records in, effects out (`records.Output`). The backing mappings hold the persisted
    state of each table (JSON-ready dicts, the changelog format); the caller persists each
    batch's `changes` into them (and to the changelog) before the next batch."""

    def __init__(self, config: EngineConfig, join_state: Mapping[str, Any],
                 case_state: Mapping[str, Any], adverse_state: Mapping[str, Any],
                 case_snapshots: Mapping[str, Any] | None = None, *,
                 join_objects: bool = False, metrics: bool = True) -> None:
        """`join_objects`: the join table's changes carry the `JoinState` objects
        themselves, not their dicts, and its backing may hold either: for a caller that
        writes the changelog with msgspec, which encodes an object to the same JSON as its
        dict (the bulk runner; 10 µs less per input event, the dict made and read back).
        `metrics` False: the outputs carry no metric calls."""
        self.config = config
        self._output: type[Output] = Output if metrics else Unmetered
        self.join_table = Table(JOIN_TABLE, join_state, JoinState.from_dict,
                                _itself if join_objects else JoinState.as_dict)
        self.case_table = Table(CASE_TABLE, case_state, CaseRecord.from_dict,
                                CaseRecord.as_dict)
        self.adverse_table = Table(ADVERSE_TABLE, adverse_state, _same, _same)
        # The case horizon's per-partition summaries live in the case table too (their
        # keys are no case id: `horizon.summary_key`), so they share its changelog.
        self.horizon_summaries = Table(CASE_TABLE, case_state, _same, _same)
        # Without a backing for it (callers that never rebuild), no snapshots are kept.
        self.snapshot_table = None if case_snapshots is None else Table(
            SNAPSHOT_TABLE, case_snapshots, _same, _same)
        self.join = JoinStage(config, self.join_table)
        self.cases = CaseStage(config, self.case_table, self.horizon_summaries,
                               self.snapshot_table)
        self.adverse = AdverseStage(config, self.adverse_table, self.case_table)

    def revoked(self) -> None:
        """Partitions were revoked: clocks and the monitor are rebuilt before their next use
        (the case stage through `rebuild`, from the records owned then)."""
        self.join.forget()
        self.cases.ready = False
        self.cases.again = []  # sent again by the partition's next owner (`engine.case_sent`)

    def process(self, records: Iterable[Record], now: datetime, mono: float) -> Output:
        """One batch: `now` is the wall clock (UTC) and `mono` a monotonic clock in seconds,
        read once for the batch."""
        out = self._output()
        cases = self.cases
        if cases.again:  # the saved records of partitions just assigned, first
            cases.send_again(out)
        # Thresholds from a calibration process first: the tools they held catch up.
        mark = len(out.produce)
        out.alert(cases.drift.collect())
        if cases.keep_sent:
            cases.keep(out.produce[mark:])
        for record in records:
            self._take(record, now, mono, out)
        self.cases.flush(mono)
        return self._flush(out)

    def tick(self, owned_adverse_partitions: Collection[int], now: datetime) -> Output:
        """The periodic regulatory-clock check of the adverse reports owned."""
        out = self._output()
        self.adverse.tick(owned_adverse_partitions, now, out)
        return self._flush(out)

    def snapshot(self) -> Output:
        """The state snapshot of every tool changed since its last one, now (before a
        planned hand-over: a shutdown, the end of a backfill), after waiting for the
        thresholds the tools hold for (`engine.drift`), with the alerts of those."""
        out = self._output()
        cases = self.cases
        if cases.again:
            cases.send_again(out)
        mark = len(out.produce)
        out.alert(cases.drift.settle())
        if cases.keep_sent:
            cases.keep(out.produce[mark:])
        self.cases.flush(None)
        return self._flush(out)

    def _take(self, record: Record, now: datetime, mono: float, out: Output) -> None:
        if record.topic in (topics.AI_RESULTS, topics.REPORTS_FINAL):
            self.join.take_input(record, now, out)
        elif record.topic == topics.CASES_JOIN:
            self.join.take_forwarded(record, now, out)
        elif record.topic == topics.CASES_ADJUDICATED:
            if self.cases.keep_sent:  # its records saved with its state (`engine.case_sent`)
                mark = len(out.produce)
                self.cases.take(record, now, mono, out)
                self.cases.keep(out.produce[mark:], record.partition)
            else:
                self.cases.take(record, now, mono, out)
        elif record.topic == topics.ADVERSE_EVENTS:
            self.adverse.take(record, now, out)
        else:
            raise ValueError(f"the engine reads no topic {record.topic!r}")

    def _flush(self, out: Output) -> Output:
        mark = len(out.produce)
        self.cases.evaluation.flush(self.cases.monitor, self.cases.drift, out)
        if self.cases.keep_sent:
            self.cases.keep(out.produce[mark:])
        self.cases.save_sent()  # after the snapshots, in the snapshot table's changes
        for table in (self.join_table, self.case_table, self.horizon_summaries,
                      self.adverse_table, self.snapshot_table):
            if table is not None:
                out.changes += table.changes()
        out.changes += self.join.sent_changes()  # after the join state (`engine.join_sent`)
        return out
