"""Ingest and the join: input records to join inputs, join inputs to adjudicated cases.

An input event is validated, pseudonymized and labelled (`stream.ingest`), then joined on
its accession's partition. Source systems key by accession, so that is the partition it
was read from; one that is not (a producer that keys differently) is forwarded to that
partition of `cases.join` and joined there: one hop slower, never wrong. Each join
partition keeps an event-time clock (`PartitionClock`) that times the `unlabelled`
horizon and retention; the cases it emits carry the clock its AI results had reached
(`watermark.source_headers`), from which the case stage builds its own clock.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from surveillance.clinical import join
from surveillance.clinical.coverage import eligible_tools
from surveillance.contracts import ReportStatus, wire
from surveillance.contracts.wire import AdjudicatedCase, JoinInput
from surveillance.engine import join_sent
from surveillance.engine.config import EngineConfig
from surveillance.engine.deadletter import dead_letter
from surveillance.engine.join_sent import SENT_KEY_PREFIX
from surveillance.engine.records import Change, Output, Produce, Record
from surveillance.engine.tables import Table
from surveillance.stream import internal, topics
from surveillance.stream.ingest import MAX_CLOCK_SKEW, Rejected
from surveillance.stream.watermark import EventClock, source_headers

log = logging.getLogger(__name__)

#: Exams whose eligible tools are kept (`JoinStage._eligible`).
_ELIGIBLE_KEPT = 1024


#: The key prefix of the records of the join table's changelog that are no join state: a
#: partition's saved clock (`bulk.join_clocks`); the join skips them.
CLOCK_KEY_PREFIX = "~clock:"


def clock_key(partition: int) -> str:
    return f"{CLOCK_KEY_PREFIX}{partition}"


def is_clock_key(key: str) -> bool:
    """Whether `key` is a record of the join table's changelog that is no join state: a
    saved clock, or a partition's last cases (`sent_key`)."""
    return key.startswith(CLOCK_KEY_PREFIX) or key.startswith(SENT_KEY_PREFIX)


class PartitionClock:
    """Event-time watermark and pending deadlines of one join partition (the same partition
    number of the input topics, `cases.join` and the join table).

    `watermark` follows every input event (reports too): it times the `unlabelled` horizon
    and retention. `ai_watermark` follows the AI results alone: the drift banks read AI
    results, and a backlog's `reports.final` partition can be read well ahead of the
    `ai.results` partition with the same number. Neither moves for one event alone
    (`watermark.EventClock`)."""

    def __init__(self, partition: int, config: EngineConfig) -> None:
        self.partition = partition
        self.config = config
        self.events = EventClock(MAX_CLOCK_SKEW)
        self.ai_events = EventClock(MAX_CLOCK_SKEW)
        self.deadlines: list[tuple[datetime, str]] = []
        #: Whether the clock is the one an uninterrupted read would have here: it started
        #: on an empty partition or from a saved state (`load`), not from the 16th latest
        #: time of a table that may hold inputs read again now (`JoinStage.clock`).
        self.exact = True
        #: The source headers of the last clock reading a case was sent with: the AI clock
        #: stays put across many cases, and the headers' ISO time costs more than a case.
        self._headers: tuple[datetime | None, dict[str, bytes]] = (None, {})

    @property
    def watermark(self) -> datetime | None:
        return self.events.at

    @property
    def ai_watermark(self) -> datetime | None:
        return self.ai_events.at

    def advance(self, at: datetime, now: datetime, ai: bool = False) -> None:
        self.events.observe(at, now)
        if ai:
            self.ai_events.observe(at, now)

    def state(self) -> dict[str, Any]:
        """Both clocks, to go on from after a restart (`load`)."""
        return {"events": self.events.state(), "ai": self.ai_events.state()}

    def load(self, state: Mapping[str, Any]) -> None:
        self.events.load(state["events"])
        self.ai_events.load(state["ai"])
        self.exact = True

    def track(self, state: join.JoinState) -> None:
        """Remember when this accession next needs attention: a case turning `unlabelled`,
        and the end of its retention (so join state stays bounded)."""
        for deadline in join.pending_deadlines(state, self.config.horizon):
            heapq.heappush(self.deadlines, (deadline, state.accession))
        if state.last_event_at is not None:
            heapq.heappush(self.deadlines,
                           (state.last_event_at + self.config.retention, state.accession))

    def headers(self, reached: datetime) -> dict[str, bytes]:
        """`watermark.source_headers` of this partition at `reached` (a new dict)."""
        at, headers = self._headers
        if at != reached:
            headers = source_headers(self.partition, reached)
            self._headers = (reached, headers)
        return dict(headers)



class JoinStage:
    """The join of every partition this engine is given records of, over the join table."""

    def __init__(self, config: EngineConfig, table: Table[join.JoinState]) -> None:
        self.config = config
        self.table = table
        self.clocks: dict[int, PartitionClock] = {}
        #: Per partition, a clock saved where its inputs are read again from (a restarted
        #: bulk runner's committed offsets): the clock starts from it, not from the table.
        self.saved_clocks: dict[int, Mapping[str, Any]] = {}
        self._eligible_of: dict[wire.Exam | None, tuple[str, ...]] = {}
        #: Save each batch's cases per partition with its state (`engine.join_sent`):
        #: for a caller that sends the state before the records (the live worker).
        self.keep_sent = False
        #: This batch's cases per partition joined on (`keep_sent`), and the saved ones
        #: of partitions just assigned, to send again before anything else.
        self._sent: dict[int, list[Produce]] = {}
        self._again: list[tuple[int, list[Produce], list[str]]] = []

    def forget(self) -> None:
        """Partitions were revoked: each clock is rebuilt from the table when next needed."""
        self.clocks.clear()
        self._again.clear()  # sent again by the partition's next owner

    def sent_changes(self) -> list[Change]:
        """The batch's saved cases and clocks, one change per partition it joined on
        (`engine.join_sent`), after the join table's own changes."""
        if not self._sent:
            return []
        out = [Change(self.table.name, key, value, p) for p, cases in self._sent.items()
               for key, value in join_sent.records(p, cases, self.clocks[p].state())]
        self._sent.clear()
        return out

    def _send_again(self, out: Output) -> None:
        """The saved cases of the partitions just assigned, first."""
        for partition, cases, keys in self._again:
            out.produce += cases
            if self.keep_sent:
                self._sent.setdefault(partition, []).extend(cases)
            else:  # not kept up to date here: gone, not stale
                for key in keys:
                    self.table.delete(key, partition)
        self._again.clear()

    def take_input(self, record: Record, now: datetime, out: Output) -> None:
        """An `ai.results` / `reports.final` record: ingest it, then join it here or forward
        it to its accession's partition of `cases.join`."""
        out.metric("processed", record.topic)
        try:
            result = self.config.ingest.accept(record.topic, record.value, now,
                                               self.config.partitions, record.decoded)
        except Exception:  # hostile input must never stop the worker: dead-letter it
            log.exception("ingest failed on %s[%d]@%d", record.topic, record.partition,
                          record.offset)
            result = Rejected("internal", "the event could not be processed")
        if isinstance(result, Rejected):
            dead_letter(self.config, record, result, now, out)
            return
        item, partition = result
        self._count_input(item, out)
        if partition == record.partition:
            self.join_one(item, partition, now, out)
            return
        out.metric("rerouted", record.topic)
        out.produce.append(Produce(topics.CASES_JOIN, item.accession.encode(),
                                   wire.encode(item), partition=partition))

    def take_forwarded(self, record: Record, now: datetime, out: Output) -> None:
        """A `cases.join` record (our own ingest's output, checked like input)."""
        item = internal.read_join_input(record.value, now, self.config.dates)
        if isinstance(item, Rejected):
            dead_letter(self.config, record, item, now, out)
            return
        self.join_one(item, record.partition, now, out)

    def _count_input(self, item: JoinInput, out: Output) -> None:
        if not out.metered:
            return
        if item.ai is not None:
            ai = item.ai
            out.metric("ai_result", ai.tool_id, ai.software_version, ai.site, ai.modality)
        elif item.report is not None:
            out.metric("report", item.report.status)
            if item.report.status is ReportStatus.FINAL:
                out.metric("eligible", self._eligible(item.report.exam), item.report.site)

    def _eligible(self, exam: wire.Exam | None) -> list[str]:
        """`coverage.eligible_tools`, kept per exam (a site has a few exam kinds; the
        registry is the config's, fixed for the engine's life)."""
        found = self._eligible_of.get(exam)
        if found is None:
            if len(self._eligible_of) >= _ELIGIBLE_KEPT:  # odd input: many kinds of exam
                self._eligible_of.clear()
            found = self._eligible_of[exam] = tuple(
                eligible_tools(exam, self.config.registry))
        return list(found)

    def join_one(self, item: JoinInput, partition: int, now: datetime, out: Output) -> None:
        """Apply one join input to its accession's state on `partition`."""
        clock = self.clock(partition, now)
        if self._again:
            self._send_again(out)
        if self.keep_sent and partition not in self._sent:
            self._sent[partition] = []
        state = self.table.get(item.accession)
        replayed = state is not None and item.event_id in state.seen
        if replayed:
            out.metric("duplicate", topics.AI_RESULTS if item.ai else topics.REPORTS_FINAL)
        state, cases = join.apply(state, item, partition, self.config.horizon, clock.watermark)
        clock.advance(join.event_time(item), now, ai=item.ai is not None)
        self.table.put(item.accession, state, partition)
        clock.track(state)
        self._emit(cases, clock, out, replayed)
        self._expire_due(clock, out)

    def clock(self, partition: int, now: datetime) -> PartitionClock:
        """The partition's clock; after an assignment, from the clock saved where its
        inputs are read from (`saved_clocks`), else restored from the join table."""
        clock = self.clocks.get(partition)
        if clock is None:
            clock = self.clocks[partition] = PartitionClock(partition, self.config)
            last_events: list[datetime] = []
            ai_times: list[datetime] = []
            for _, state in self.table.stored(skip=is_clock_key):
                if state.partition != partition:
                    continue
                if state.last_event_at is not None:
                    last_events.append(state.last_event_at)
                ai_times += (tool.ai.inference_date for tool in state.tools.values())
                clock.track(state)
            saved = self.saved_clocks.pop(partition, None)
            last = join_sent.saved(self.table.backing, partition)
            if last is not None:
                self._again.append((partition, last[0], last[2]))
            if saved is not None:
                clock.load(saved)
            elif last is not None:
                # The clocks of the state the table holds: the inputs it holds read again
                # re-emit their cases stamped no further than their own AI time (below).
                clock.load(last[1])
                clock.exact = False
            else:
                clock.events.restore(last_events, now)
                clock.ai_events.restore(ai_times, now)
                # The table can hold inputs read again now (a crash before their commit):
                # its 16th latest time is then past where the clock stood when they
                # were first read.
                clock.exact = not last_events and not ai_times
        return clock

    def _expire_due(self, clock: PartitionClock, out: Output) -> None:
        watermark = clock.watermark
        if watermark is None:  # not enough events yet to support a clock
            return
        deadlines = clock.deadlines
        # Checked before each pop, and mostly false: one look at the heap's top per input
        # event, no generator made for it.
        while deadlines and deadlines[0][0] <= watermark:
            accession = heapq.heappop(deadlines)[1]
            state = self.table.get(accession)
            if state is None:
                continue
            if join.is_stale(state, self.config.retention, watermark):
                self.table.delete(accession, clock.partition)
                continue
            cases = join.expire(state, self.config.horizon, watermark)
            if cases:
                self.table.put(accession, state, clock.partition)
                self._emit(cases, clock, out)

    def _emit(self, cases: list[AdjudicatedCase], clock: PartitionClock, out: Output,
              replayed: bool = False) -> None:
        """`replayed`: the cases are re-emitted for an event the state already holds (a
        duplicate, or a batch read again after a crash). With a clock that is not `exact`
        (restored from a join table that may already hold the batch being read again, so
        past where it stood when the batch was first read), each says its partition has
        reached no further than its own AI time: the restored clock made the case clock
        jump to the batch's end and evaluate days whose revisions, lost in the crash
        between the table's write and the records' send (the live worker's order,
        `stream.outbox`; the bulk runner sends the records first), were only re-emitted
        further on in the batch. An exact clock (`JoinStage.saved_clocks`) re-emits each case with
        the reading it was first emitted with."""
        if not cases:
            return
        reached = clock.ai_watermark or clock.watermark  # every case has an AI result
        loose = replayed and not clock.exact
        for case in cases:  # before the clocks move, a case has reached its own AI time
            if reached is None or (loose and case.inference_date < reached):
                headers = source_headers(clock.partition, case.inference_date)
            else:
                headers = clock.headers(reached)
            sent = Produce(topics.CASES_ADJUDICATED, case.tool_id.encode(),
                           wire.encode(case), headers=headers)
            out.produce.append(sent)
            if self.keep_sent:
                self._sent.setdefault(clock.partition, []).append(sent)
