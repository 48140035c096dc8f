"""The input records of a backfill in one event-time order over every input partition,
whatever the fetches brought: pure.

A live worker reads AI results and reports about as they happen, so a study's AI result
meets its report within hours. A backlog is fetched a partition at a time: a consumer can
hand over a month of `ai.results` before any of the month's `reports.final`. The join then
emits every case twice, pending and then labelled (on the simulator's 30 days, 2.5 case
records per case, and the case stage's work is per record). Worse, what the case stage
evaluates then depends on how the fetches fell: the case clock (the join partitions' AI
clocks, `stream.watermark`) ran days ahead of the reports read, so a day was evaluated
before its reports' revisions arrived (3,398 revisions after their day in one run of the
crash test's backlog read partition after partition, none read in event time); and the
join labels a case whose AI result it reads after an original report and its correction
by the correction (its time), but by the original (its time) when it reads the AI result
between them, so the monitor counted the case on another day. Two backfills of the same
backlog raised different alerts.

`EventTimeMerge` holds what a fetch brings and lets the input records go in the order of
(event time, topic, partition, offset), each report `REPORT_LEAD` early, a record only
once every input partition that may still hold records (`release`'s `open`) has one
waiting here: the order is then a function of the input alone, the same for any fetch
sizes, fetch order or batch boundaries, and the join of each partition reads its AI
results and reports as the live stream would. Each (topic, partition) keeps its offsets'
order (a merge of the partitions' runs, not a sort), which Kafka promises; across
partitions it promises none. The records of other topics (`cases.join` forwards, the case
stage's topics) pass at once, in their order. A value that states no time (or not as
RFC 3339) goes at once when it heads its partition.

The time of a record its reader decoded already (`decoded`: its topic's contract, which
ingest then takes as it is) is read from that; only the others' values are decoded here
for the time alone.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Collection, Iterable
from datetime import UTC, datetime, timedelta

import msgspec

from surveillance.contracts import wire
from surveillance.engine.records import Record
from surveillance.stream.topics import AI_RESULTS, REPORTS_FINAL


class _EventTime(msgspec.Struct):
    inference_date: datetime | None = None  # an AI result's
    finalized_at: datetime | None = None  # a report's


_DECODE = msgspec.json.Decoder(_EventTime).decode
#: A report goes this much ahead of its time: most reports come within a day of their
#: study's AI result, which they then meet already held (one case record, not a pending
#: one and then a labelled one). Far below the join's horizon (14 days) and retention
#: (120 days): the report-only states it holds are not expired early.
REPORT_LEAD = timedelta(days=1)
_LEAD_SECONDS = REPORT_LEAD.total_seconds()
_NONE = float("-inf")

Partition = tuple[str, int]


def event_time(raw: bytes | None) -> float:
    """The POSIX time an input record's value states (a report's less `REPORT_LEAD`; a
    time without offset taken as UTC); -inf when it states none."""
    try:
        when = _DECODE(raw or b"")
    except (msgspec.DecodeError, msgspec.ValidationError):
        return _NONE
    if when.inference_date is not None:
        return _seconds(when.inference_date)
    if when.finalized_at is not None:
        return _seconds(when.finalized_at) - _LEAD_SECONDS
    return _NONE


#: The contract of each input topic (ingest's).
CONTRACTS: dict[str, type[wire.AIResult] | type[wire.ReportFinal]] = {
    AI_RESULTS: wire.AIResult, REPORTS_FINAL: wire.ReportFinal}


def decoded(topic: str, raw: bytes | None) -> wire.AIResult | wire.ReportFinal | None:
    """An input record's value as its topic's contract when the shortcut of
    `contracts.wire.fast` takes it, for `Record.decoded`; None for another topic's or a
    value left to pydantic (ingest decides on it)."""
    kind = CONTRACTS.get(topic)
    return None if kind is None or raw is None else wire.fast(raw, kind)


def record_time(record: Record) -> float:
    """`event_time` of the record's value, from its `decoded` contract when it has one (a
    contract has no other time field, and its times have an offset)."""
    event = record.decoded
    kind = type(event)
    if kind is wire.AIResult:
        return float(event.inference_date.timestamp())
    if kind is wire.ReportFinal:
        return float(event.finalized_at.timestamp()) - _LEAD_SECONDS
    return event_time(record.value)


def _seconds(at: datetime) -> float:
    return (at if at.tzinfo is not None else at.replace(tzinfo=UTC)).timestamp()


class EventTimeMerge:
    """Input records held until their turn in the event-time order (see above)."""

    def __init__(self, inputs: Collection[str]) -> None:
        #: Topic -> its rank: the tie-break between topics at one event time.
        self._rank = {topic: i for i, topic in enumerate(inputs)}
        self._held: dict[Partition, deque[tuple[float, Record]]] = {}
        #: (event time, topic rank, partition, offset) of each held partition's first
        #: record: the merge takes the least.
        self._heads: list[tuple[float, int, int, int, Partition]] = []
        self._count = 0

    def __len__(self) -> int:
        """Input records held."""
        return self._count

    def held(self, tp: Partition) -> int:
        found = self._held.get(tp)
        return 0 if found is None else len(found)

    def add(self, records: Iterable[Record]) -> list[Record]:
        """Take a fetch's records (each partition's in offset order); those of other
        topics than the inputs, to pass at once."""
        rest: list[Record] = []
        for record in records:
            rank = self._rank.get(record.topic)
            if rank is None:
                rest.append(record)
                continue
            tp = (record.topic, record.partition)
            queue = self._held.get(tp)
            if queue is None:
                queue = self._held[tp] = deque()
            at = record_time(record)
            if not queue:
                heapq.heappush(self._heads, (at, rank, record.partition, record.offset, tp))
            queue.append((at, record))
            self._count += 1
        return rest

    def release(self, open_: Collection[Partition]) -> list[Record]:
        """The held records whose turn has come, in order. `open_`: the input partitions
        that may have records not fetched yet (not read to their end); while one of them
        has nothing held, nothing later than what is released can go (its next record
        may be earlier). A partition read to its end holds nothing back."""
        waiting = [tp for tp in open_ if not self._held.get(tp)]
        if waiting:
            return []
        out: list[Record] = []
        heads, held = self._heads, self._held
        while heads:
            _, _, _, _, tp = heapq.heappop(heads)
            queue = held[tp]
            out.append(queue.popleft()[1])
            if queue:
                at, record = queue[0]
                heapq.heappush(heads, (at, self._rank[tp[0]], tp[1], record.offset, tp))
            elif tp in open_:
                break  # its next record is not here yet
        self._count -= len(out)
        return out
