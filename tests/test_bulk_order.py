"""The bulk runner's batch order (`bulk.order`): pure, property-based.

What the join may rely on: the same records, each (topic, partition) in its own order, the
other topics' records first in theirs; and what it is for: runs that are in time order
come out merged in time order, a report `REPORT_LEAD` early. Values that state no time, or
state it oddly (hostile bytes, no offset, non-objects), change nothing of the above.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from surveillance.bulk.order import REPORT_LEAD, event_time, in_event_time
from surveillance.engine.records import Record
from surveillance.stream import topics

INPUTS = (topics.AI_RESULTS, topics.REPORTS_FINAL)
BASE = datetime(2026, 1, 1, tzinfo=UTC)
FIELD = {topics.AI_RESULTS: "inference_date", topics.REPORTS_FINAL: "finalized_at"}

times = st.integers(0, 90 * 24 * 3600).map(lambda s: BASE + timedelta(seconds=s))
odd_values = st.one_of(
    st.binary(max_size=30), st.none(), st.just(b"[1, 2]"), st.just(b'{"finalized_at": 7}'),
    st.just(b'{"inference_date": "not a time"}'))


@st.composite
def batches(draw: st.DrawFn, sorted_runs: bool = False) -> list[Record]:
    records: list[Record] = []
    for topic in (*INPUTS, topics.CASES_JOIN):
        for partition in range(draw(st.integers(0, 3))):
            stamps = draw(st.lists(times, max_size=12))
            if sorted_runs:
                stamps.sort()
            for offset, at in enumerate(stamps):
                value = (draw(odd_values) if not sorted_runs and draw(st.booleans())
                         and draw(st.booleans())
                         else json.dumps({FIELD.get(topic, "x"): at.isoformat()}).encode())
                records.append(Record(topic, partition, offset, None, value))
    return draw(st.permutations(records)) if not sorted_runs else _interleaved(records)


def _interleaved(records: list[Record]) -> list[Record]:
    """A fetch's shape: partition after partition."""
    return sorted(records, key=lambda r: (r.topic, r.partition, r.offset))


def runs(records: list[Record]) -> dict[tuple[str, int], list[int]]:
    out: dict[tuple[str, int], list[int]] = {}
    for r in records:
        out.setdefault((r.topic, r.partition), []).append(r.offset)
    return out


@given(batches())
def test_the_same_records_each_partition_in_its_order_the_others_first(
        records: list[Record]) -> None:
    ordered = in_event_time(records, INPUTS)
    assert sorted(ordered, key=id) == sorted(records, key=id)  # the same objects
    assert runs(ordered) == runs(records)
    others = [r for r in records if r.topic not in INPUTS]
    assert ordered[:len(others)] == others


@given(batches(sorted_runs=True))
def test_runs_in_time_order_come_out_merged_in_time_order_reports_a_lead_early(
        records: list[Record]) -> None:
    ordered = [r for r in in_event_time(records, INPUTS) if r.topic in INPUTS]

    def due(r: Record) -> datetime:
        at = datetime.fromisoformat(json.loads(r.value or b"")[FIELD[r.topic]])
        return at - REPORT_LEAD if r.topic == topics.REPORTS_FINAL else at

    assert [due(r) for r in ordered] == sorted(due(r) for r in ordered)


def test_a_report_a_few_hours_after_its_ai_result_goes_before_it() -> None:
    ai = Record(topics.AI_RESULTS, 0, 0, None,
                json.dumps({"inference_date": "2026-03-01T08:00:00Z"}).encode())
    report = Record(topics.REPORTS_FINAL, 0, 0, None,
                    json.dumps({"finalized_at": "2026-03-01T15:30:00+00:00"}).encode())
    assert in_event_time([ai, report], INPUTS) == [report, ai]
    # More than the lead later, it stays behind.
    late = Record(topics.REPORTS_FINAL, 0, 0, None,
                  json.dumps({"finalized_at": "2026-03-03T08:00:00Z"}).encode())
    assert in_event_time([late, ai], INPUTS) == [ai, late]


def test_times_without_offset_are_utc_and_odd_values_state_none() -> None:
    assert event_time(b'{"inference_date": "2026-03-01T08:00:00"}') == event_time(
        b'{"inference_date": "2026-03-01T09:00:00+01:00"}')
    for raw in (None, b"", b"\xff", b"[]", b'{"finalized_at": 7}', b"{}"):
        assert event_time(raw) == float("-inf")
