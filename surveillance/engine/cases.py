"""The case stage: `cases.adjudicated` records to counts, charts, drift and alerts.

Per case revision: the ledger (and the case table), the case metric, then the monitor and
the tool's drift bank, unless the case is new and far ahead of its join partition's clock
(`stream.ahead`: held until the clock comes near). The clock of each `cases.adjudicated`
partition is the low watermark of the join partitions its cases come from
(`watermark.SourceWatermark`, on the monotonic clock the batch is given); when it moves,
held cases are released, the tool's drift bank advances (and, once per reference, is
calibrated as a step of its own: `engine.drift`) and each day the clock has passed by the
evaluation grace is evaluated: the monitor takes that day's case revisions, in event-time
order, then the tool is evaluated (`engine.evaluation`). After partitions are assigned,
the monitor, ledger and drift banks are rebuilt from the case records this worker owns
(`rebuild`). Records past the case
horizon leave the table as the clock advances (`engine.horizon`, which also resolves a
revision of an evicted case from the store).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from surveillance.clinical.ledger import CaseLedger, CaseRecord
from surveillance.clinical.lifecycle import ToolState, check_version, version_alert
from surveillance.clinical.monitor import PerformanceMonitor
from surveillance.contracts import Alert
from surveillance.contracts.wire import AnyAdjudicatedCase
from surveillance.engine import case_sent
from surveillance.engine.config import EngineConfig
from surveillance.engine.deadletter import dead_letter
from surveillance.engine.drift import DriftBanks
from surveillance.engine.evaluation import DailyEvaluation
from surveillance.engine.horizon import CaseHorizon, Late
from surveillance.engine.records import Output, Produce, Record
from surveillance.engine.snapshots import CaseSnapshots, table_digests
from surveillance.engine.tables import Table
from surveillance.stream import internal
from surveillance.stream.ahead import AheadCases
from surveillance.stream.case_features import record_ai_result
from surveillance.stream.ingest import Rejected
from surveillance.stream.watermark import SourceWatermark

log = logging.getLogger(__name__)


class CaseStage:
    def __init__(self, config: EngineConfig, table: Table[CaseRecord],
                 summaries: Table[dict[str, Any]],
                 snapshots: Table[dict[str, Any]] | None = None) -> None:
        self.config = config
        self.table = table
        self.monitor = PerformanceMonitor(config.registry, last_n=config.last_n)
        self.horizon = CaseHorizon(config.case_horizon, table, summaries, config.case_lookup,
                                   self.monitor.last_n)
        self.horizon.evicted = self._evicted
        self.snapshots = CaseSnapshots(snapshots, config.snapshot_seconds)
        self.ledger = CaseLedger()
        self.drift = DriftBanks(calibrate_inline=False)
        self.evaluation = DailyEvaluation(config.snapshots, config.evaluation_grace,
                                          config.horizon)
        self.sources: dict[int, SourceWatermark] = {}
        #: Per partition, the case clocks its loaded snapshots held: its clock starts from
        #: them (not from nothing), so it moves as it would have without the restart.
        self._clocks: dict[int, list[dict[str, Any]]] = {}
        #: Per partition, the offset after the last record taken (for the snapshots).
        self.offsets: dict[int, int] = {}
        self.ahead: dict[int, AheadCases] = {}
        #: Tool versions under lifecycle management (the shell refreshes them).
        self.lifecycle: Mapping[tuple[str, str], ToolState] = {}
        #: The tools the last rebuild loaded from their snapshots (the rest were replayed).
        self.restored: list[str] = []
        #: False after a revocation: rebuild from the owned records before the next case.
        self.ready = True
        #: Save each batch's alerts and published days per partition with its state
        #: (`engine.case_sent`): for a caller that sends the state first (the live worker).
        self.keep_sent = False
        #: Per tool, its `cases.adjudicated` partition (where its saved records go).
        self.partition_of: dict[str, int] = {}
        #: This batch's records to save per partition it took a record of or raised an
        #: alert for (`keep_sent`), and the saved ones of partitions just assigned, to send
        #: again before anything else.
        self._sent: dict[int, list[Produce]] = {}
        self.again: list[tuple[int, list[Produce]]] = []

    def rebuild(self, records: list[tuple[str, CaseRecord]],
                partitions: Collection[int] | None = None,
                full: Callable[[set[str]], list[tuple[str, CaseRecord]]] | None = None,
                digests: Mapping[str, int] | None = None) -> None:
        """Monitor, ledger counts and drift banks from the case records owned now (on
        `partitions` of `cases.adjudicated`: default, those of the records): each tool
        from its snapshot when it matches the records (`engine.snapshots`), else by
        replaying its records. `full`, if given, reads the records of the tools to replay
        with every field: `records` may then leave the drift features out
        (`horizon.light_record`, the memory of a large rebuild). `digests`: the tools'
        digests over `records` if already taken (`table_digests`, ~0.5 us a record)."""
        self.snapshots.digests = (dict(digests) if digests is not None
                                  else table_digests(records))
        tool_partition = {r.tool: r.partition for _, r in records}
        loaded = {tool: state for tool in sorted(tool_partition)
                  if (state := self.snapshots.load(tool, self.monitor, self.drift)) is not None}
        replayed = [(k, r) for k, r in records if r.tool not in loaded]
        if full is not None and replayed:
            replayed = full(set(tool_partition) - set(loaded))
        self.monitor = PerformanceMonitor(self.config.registry, last_n=self.config.last_n)
        # What waited for the monitor is stored: a replayed tool's is rebuilt here, a
        # loaded tool's waits again (its snapshot holds it).
        self.evaluation.forget()
        self.monitor.rebuild(self._taken_now(replayed))
        self.ledger = CaseLedger()
        for _case_id, record in records:
            self.ledger.add_existing(record)
        owned = partitions if partitions is not None else {r.partition for _, r in records}
        self.ledger.counts.update(self.horizon.rebuild(records, owned))
        self.drift.rebuild(r for _, r in replayed)
        # Wait for every join partition again (the first must not lead), unless a loaded
        # snapshot says where they were.
        self.sources.clear()
        self._clocks = {}
        # The held cases are stored: a replayed tool's are rebuilt above with the rest, a
        # loaded tool's are held again.
        self.ahead.clear()
        for tool, state in loaded.items():
            self.snapshots.install(tool, state, self.monitor, self.drift, self.evaluation,
                                   self.ahead.setdefault(tool_partition[tool], AheadCases()))
            partition = tool_partition[tool]
            start = self.snapshots.reread_from.get(partition)
            # Read again from an earlier offset (a rewind): the clock as it stood there,
            # not as a later snapshot of another tool of the partition left it (the
            # rewound tool's days were evaluated before the re-read brought their cases).
            if state["clock"] is not None and (
                    start is None or state["offset"] is None or state["offset"] <= start):
                self._clocks.setdefault(partition, []).append(state["clock"])
        for tool, partition in tool_partition.items():
            if tool not in loaded:  # replayed: its snapshot is written with the next one
                self.snapshots.dirty[tool] = partition
                if self.snapshots.table is not None and self.snapshots.table.get(tool) is None:
                    log.warning("no snapshot of %s: rebuilt from its case records", tool)
        self.restored = sorted(loaded)
        self.partition_of.update(tool_partition)
        self.again = []
        if self.snapshots.table is not None:
            for partition in sorted(owned):
                sent = case_sent.saved(self.snapshots.table.backing, partition)
                if sent:
                    self.again.append((partition, sent))
        self.ready = True

    def _taken_now(self, replayed: list[tuple[str, CaseRecord]]
                   ) -> list[tuple[str, CaseRecord]]:
        """Of the replayed tools' records, what the monitor takes at the rebuild: a tool
        whose refused snapshot says which day it was to evaluate next goes on from that
        day, its records in effect since waiting for their days (`DailyEvaluation.defer`);
        before, it went on from its latest case day, and the days between were never
        published (`tests/test_worker_case_crash.py`)."""
        by_tool: dict[str, list[tuple[str, CaseRecord]]] = {}
        for item in replayed:
            by_tool.setdefault(item[1].tool, []).append(item)
        now: list[tuple[str, CaseRecord]] = []
        for tool, items in by_tool.items():
            known, day = self.snapshots.evaluated(tool)
            if not known:
                now += items
                continue
            if day is None:  # none evaluated yet: from its first case day
                day = min(datetime.fromtimestamp(r.inference_ts, UTC) for _, r in items).date()
            now += self.evaluation.defer(tool, day, items)
        return now

    def send_again(self, out: Output) -> None:
        """The saved records of the partitions just assigned (`engine.case_sent`), first;
        kept saved until a write of this worker's replaces them (`keep_sent`), else
        deleted."""
        for partition, sent in self.again:
            out.produce += sent
            if self.keep_sent:
                self._sent.setdefault(partition, []).extend(sent)
            elif self.snapshots.table is not None:
                for key in case_sent.keys(self.snapshots.table.backing, partition):
                    self.snapshots.table.delete(key, partition)
        self.again = []

    def keep(self, produced: Sequence[Produce], partition: int | None = None) -> None:
        """Of `produced` (the case stage's records of this batch), those a re-read cannot
        make again, to save with the batch's state (`keep_sent`): on `partition` (a
        record of it was taken: its saved ones are replaced), else on their tool's."""
        if partition is not None:
            self._sent.setdefault(partition, [])
        for r in produced:
            if r.topic not in case_sent.SAVED_TOPICS:
                continue
            p = partition if partition is not None else self.partition_of.get(r.key.decode())
            if p is not None:
                self._sent.setdefault(p, []).append(r)

    def save_sent(self) -> None:
        """The batch's saved records into the snapshot table, per partition: written, or
        the saved ones of an earlier batch deleted (acknowledged before this batch's
        first write: the outbox writes sends in order)."""
        table = self.snapshots.table
        if table is None or not self._sent:
            self._sent.clear()
            return
        for partition, sent in self._sent.items():
            stale = case_sent.keys(table.backing, partition)
            written = case_sent.records(partition, sent) if sent else []
            for key, value in written:
                table.put(key, value, partition)
            for key in stale[len(written):]:
                table.delete(key, partition)
        self._sent.clear()

    def take(self, record: Record, now: datetime, mono: float, out: Output) -> None:
        self.offsets[record.partition] = record.offset + 1
        read = internal.read_case(record.value, record.headers, self.config.partitions, now,
                                  self.config.dates)
        if isinstance(read, Rejected):
            dead_letter(self.config, record, read, now, out)
            return
        case, source, reached = read
        self.partition_of[case.tool_id] = record.partition
        watermark = self._sources(record.partition, mono)
        watermark.observe(source, reached, mono)
        previous = self.table.get(case.case_id)
        late = self.horizon.late(case, record.partition) if previous is None else None
        if late is not None:
            self._take_late(record, case, source, late, now, out)
            return
        stored = self.ledger.apply(previous, case, record.partition, source)
        if stored is None:
            return
        self.table.put(case.case_id, stored, record.partition)
        self.snapshots.stored(case.tool_id, case.case_id,
                              None if previous is None else previous.revision, stored.revision,
                              record.partition)
        self.horizon.track(case.case_id, stored, new=previous is None)
        out.metric("case", case.tool_id, case.software_version, case.site, case.outcome)
        ahead = self.ahead.get(record.partition)
        if ahead is None:  # not `setdefault`: that would make one per record
            ahead = self.ahead[record.partition] = AheadCases()
        held = ahead.hold(case, previous is None, reached)
        alerts = [] if held else self._monitor_case(previous, case, stored, out)
        clock = watermark.low(mono)
        if clock is not None:
            for released in ahead.release(clock):
                released_record = self.table.get(released.case_id)
                assert released_record is not None  # stored when it was held
                self.snapshots.changed(released.tool_id, record.partition)
                alerts += self._monitor_case(None, released, released_record, out)
            alerts += self.drift.advance(case.tool_id, clock)
            alerts += self.drift.calibrate_due(case.tool_id)
            alerts += self.evaluation.maybe(case.tool_id, clock, self.monitor, out)
            evicted = self.horizon.advance(record.partition, clock)
            if evicted:
                out.metric("horizon_evicted", evicted)
        out.alert(alerts)

    def _take_late(self, record: Record, case: AnyAdjudicatedCase, source: int, late: Late,
                   now: datetime, out: Output) -> None:
        """A revision of a case whose AI call is before the horizon's cutoff and which is not
        in the table: counted against the store's revision (or as new when the store has
        none), kept until it ages out again; outside every window, so no monitor update."""
        if late.unresolved:
            dead_letter(self.config, record, Rejected("horizon", (
                f"case revision {case.revision} of {case.tool_id}: {late.unresolved}")),
                now, out)
            out.metric("horizon_late", case.tool_id, "dead_lettered")
            return
        stored = self.ledger.apply(late.previous, case, record.partition, source)
        if stored is None:
            out.metric("horizon_late", case.tool_id, "replayed")
            return
        if late.previous is not None:
            self.horizon.readmit(late.previous, record.partition)
        self.table.put(case.case_id, stored, record.partition)
        self.snapshots.stored(case.tool_id, case.case_id, None, stored.revision,
                              record.partition)
        self.horizon.track(case.case_id, stored, new=True)
        out.metric("case", case.tool_id, case.software_version, case.site, case.outcome)
        out.metric("horizon_late", case.tool_id,
                   "new" if late.previous is None else "resolved")

    def _evicted(self, case_id: str, record: CaseRecord) -> None:
        self.snapshots.stored(record.tool, case_id, record.revision, None, record.partition)

    def flush(self, mono: float | None) -> None:
        """The end of a batch: the snapshots of the tools it changed (at monotonic time
        `mono`; None: all of them now)."""
        self.snapshots.write(self.monitor, self.drift, self.evaluation, self.ahead,
                             self.sources, self.offsets, mono)

    def _monitor_case(self, previous: CaseRecord | None, case: AnyAdjudicatedCase,
                      record: CaseRecord, out: Output) -> list[Alert]:
        """One case revision (`record`: as stored) for the monitor, which takes it at its
        day's evaluation (`engine.evaluation`), and, if the case is new, the drift bank."""
        self.evaluation.take(previous, case, record)
        alerts: list[Alert] = []
        if previous is None:
            alerts += self._version_check(case, out)
            drift_input = record_ai_result(record)
            assert drift_input is not None  # record_of always stores the features
            self.drift.update(case.tool_id, drift_input)
        return alerts

    def _sources(self, partition: int, mono: float) -> SourceWatermark:
        found = self.sources.get(partition)
        if found is None:
            saved = self._clocks.pop(partition, None)
            idle, lag = self.config.idle_seconds, self.config.evaluation_grace
            found = self.sources[partition] = SourceWatermark(
                idle, range(self.config.partitions), mono, lag
            ) if saved is None else SourceWatermark.restored(idle, saved, mono, lag)
        return found

    def _version_check(self, case: AnyAdjudicatedCase, out: Output) -> list[Alert]:
        """A result from a version that is not live, for a tool under lifecycle management."""
        if not self.lifecycle:
            return []  # no tool's versions are managed through the lifecycle here
        if not any(tool == case.tool_id for tool, _ in self.lifecycle):
            return []  # this site does not manage the tool's versions through the lifecycle
        verdict = check_version(self.lifecycle, case.tool_id, case.software_version)
        if not verdict.alert:
            return []
        out.metric("unvalidated_case", case.tool_id, case.software_version)
        alert = version_alert(verdict, case.inference_date)
        return [alert] if alert is not None else []
