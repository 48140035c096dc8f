"""A batch's input records in event-time order, each partition's own order kept: pure.

A live worker reads AI results and reports about as they happen, so a study's AI result
meets its report within hours. A backlog is fetched a partition at a time: one batch can
hold a month of `ai.results` before any of the month's `reports.final`, and then the join
emits every case twice, pending and then labelled (on the simulator's 30 days, 2.5 case
records per case), and the case stage's work is per record. Merged by event time, with
each report a day early (`REPORT_LEAD`), a batch reaches the join much as the live stream
would, and most AI results find their report already held: 1.1 case records per case,
the case stage's CPU down by a third.

Only the order across partitions changes, which Kafka never promised: each
(topic, partition) keeps its offsets' order (a merge of the partitions' runs, not a
sort), and the batch is committed as one. The records of other topics (`cases.join`
forwards, the case stage's topics) go first, in their order. A value that states no time
(or not as RFC 3339) goes first: the order only saves work, the join's result does not
depend on it.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta

import msgspec

from surveillance.engine.records import Record


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


def _seconds(at: datetime) -> float:
    return (at if at.tzinfo is not None else at.replace(tzinfo=UTC)).timestamp()


def in_event_time(records: Sequence[Record], inputs: Collection[str]) -> list[Record]:
    """`records` with those of the `inputs` topics merged by event time (each partition's
    run in its order), after the others."""
    runs: dict[tuple[str, int], list[tuple[float, int, Record]]] = {}
    rest: list[Record] = []
    for index, record in enumerate(records):
        if record.topic in inputs:
            runs.setdefault((record.topic, record.partition), []).append(
                (event_time(record.value), index, record))
        else:
            rest.append(record)
    # Each run is merged in its own order (heapq.merge takes run heads only); ties go by
    # the position in the batch.
    return rest + [record for _, _, record in heapq.merge(*runs.values(),
                                                          key=lambda item: item[:2])]
