"""The bulk runner's input order (`bulk.order.EventTimeMerge`): pure, property-based.

What the determinism of a backfill rests on: whatever the fetches bring (any sizes, any
partition order, any batch boundaries), the input records go out in one order, a function
of the records alone; each (topic, partition) in its own order, the other topics' records
at once; nothing goes while a partition that may still hold records has none waiting.
What it is for: runs that are in time order come out merged in time order, a report
`REPORT_LEAD` early. Values that state no time, or state it oddly (hostile bytes, no
offset, non-objects), change nothing of the above.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from surveillance.bulk.order import REPORT_LEAD, EventTimeMerge, decoded, event_time, record_time
from surveillance.engine.config import EngineConfig
from surveillance.engine.records import Record
from surveillance.simulate import Faults, simulate
from surveillance.simulate.scenario import scenario_by_name
from surveillance.stream import topics

INPUTS = (topics.AI_RESULTS, topics.REPORTS_FINAL)
BASE = datetime(2026, 1, 1, tzinfo=UTC)
FIELD = {topics.AI_RESULTS: "inference_date", topics.REPORTS_FINAL: "finalized_at"}
Partition = tuple[str, int]

times = st.integers(0, 90 * 24 * 3600).map(lambda s: BASE + timedelta(seconds=s))
odd_values = st.one_of(
    st.binary(max_size=30), st.none(), st.just(b"[1, 2]"), st.just(b'{"finalized_at": 7}'),
    st.just(b'{"inference_date": "not a time"}'))


@st.composite
def logs(draw: st.DrawFn, sorted_runs: bool = False) -> dict[Partition, list[Record]]:
    """Partitions of the input topics and of `cases.join`, each a log in offset order."""
    out: dict[Partition, list[Record]] = {}
    for topic in (*INPUTS, topics.CASES_JOIN):
        for partition in range(draw(st.integers(0, 3))):
            stamps = draw(st.lists(times, max_size=12))
            if sorted_runs:
                stamps.sort()
            out[topic, partition] = [
                Record(topic, partition, offset, None,
                       draw(odd_values) if not sorted_runs and draw(st.integers(0, 3)) == 0
                       else json.dumps({FIELD.get(topic, "x"): at.isoformat()}).encode())
                for offset, at in enumerate(stamps)]
    return out


@st.composite
def fetches(draw: st.DrawFn, log: dict[Partition, list[Record]]) -> list[list[Record]]:
    """One way a consumer may bring the logs: each partition in pieces of any size, the
    pieces of all partitions in any order that keeps each partition's own, grouped into
    fetches of any number of pieces."""
    pieces: dict[Partition, list[list[Record]]] = {}
    for tp, records in log.items():
        at = 0
        while at < len(records):
            n = draw(st.integers(1, len(records) - at))
            pieces.setdefault(tp, []).append(records[at:at + n])
            at += n
    turns = draw(st.permutations([tp for tp, its in pieces.items() for _ in its]))
    out: list[list[Record]] = []
    for tp in turns:
        if not out or draw(st.booleans()):
            out.append([])
        out[-1] += pieces[tp].pop(0)
    return out


def merged(log: dict[Partition, list[Record]], brought: list[list[Record]]
           ) -> tuple[list[Record], list[Record]]:
    """(input records in the order released, other records in the order passed), the
    merge fed `brought` as the runner feeds it: a partition is open until every one of
    its records has been fetched."""
    merge = EventTimeMerge(INPUTS)
    fetched = {tp: 0 for tp in log}
    released: list[Record] = []
    passed: list[Record] = []
    for fetch in brought:
        passed += merge.add(fetch)
        for r in fetch:
            fetched[r.topic, r.partition] += 1
        open_ = {tp for tp in log if tp[0] in INPUTS and fetched[tp] < len(log[tp])}
        released += merge.release(open_)
    assert len(merge) == 0  # everything fetched: nothing may stay held
    return released, passed


def runs(records: list[Record]) -> dict[tuple[str, int], list[int]]:
    out: dict[tuple[str, int], list[int]] = {}
    for r in records:
        out.setdefault((r.topic, r.partition), []).append(r.offset)
    return out


@given(st.data())
def test_any_two_ways_of_fetching_give_one_order(data: st.DataObject) -> None:
    log = data.draw(logs())
    one, passed = merged(log, data.draw(fetches(log)))
    other, passed_other = merged(log, data.draw(fetches(log)))
    assert [(r.topic, r.partition, r.offset) for r in one] == [
        (r.topic, r.partition, r.offset) for r in other]
    # The same records, each partition in its order; the others passed in theirs.
    inputs = {tp: records for tp, records in log.items() if tp[0] in INPUTS}
    assert runs(one) == {tp: [r.offset for r in rs] for tp, rs in inputs.items() if rs}
    assert runs(passed) == runs(passed_other) == {
        tp: [r.offset for r in rs] for tp, rs in log.items() if tp[0] not in INPUTS and rs}


@given(st.data())
def test_runs_in_time_order_come_out_merged_in_time_order_reports_a_lead_early(
        data: st.DataObject) -> None:
    log = data.draw(logs(sorted_runs=True))
    ordered, _ = merged(log, data.draw(fetches(log)))

    def due(r: Record) -> datetime:
        at = datetime.fromisoformat(json.loads(r.value or b"")[FIELD[r.topic]])
        return at - REPORT_LEAD if r.topic == topics.REPORTS_FINAL else at

    assert [due(r) for r in ordered] == sorted(due(r) for r in ordered)


def ai(partition: int, offset: int, at: str) -> Record:
    return Record(topics.AI_RESULTS, partition, offset, None,
                  json.dumps({"inference_date": at}).encode())


def test_nothing_goes_while_an_open_partition_has_nothing_waiting() -> None:
    merge = EventTimeMerge(INPUTS)
    assert merge.add([ai(0, 0, "2026-03-01T08:00:00Z"), ai(0, 1, "2026-03-02T08:00:00Z")]) == []
    report_partition = (topics.REPORTS_FINAL, 0)
    assert merge.release({(topics.AI_RESULTS, 0), report_partition}) == []
    assert len(merge) == 2 and merge.held((topics.AI_RESULTS, 0)) == 2
    # Its first record is fetched, a day and a half early with the lead: it goes first,
    # then the AI results up to its next (not fetched yet) one.
    report = Record(topics.REPORTS_FINAL, 0, 0, None,
                    json.dumps({"finalized_at": "2026-03-02T20:00:00Z"}).encode())
    merge.add([report])
    assert merge.release({(topics.AI_RESULTS, 0), report_partition}) == [
        ai(0, 0, "2026-03-01T08:00:00Z"), report]
    # Read to its end, the report partition holds nothing back.
    assert merge.release({(topics.AI_RESULTS, 0)}) == [ai(0, 1, "2026-03-02T08:00:00Z")]
    assert len(merge) == 0


def test_a_report_a_few_hours_after_its_ai_result_goes_before_it() -> None:
    first = ai(0, 0, "2026-03-01T08:00:00Z")
    report = Record(topics.REPORTS_FINAL, 0, 0, None,
                    json.dumps({"finalized_at": "2026-03-01T15:30:00+00:00"}).encode())
    merge = EventTimeMerge(INPUTS)
    merge.add([first, report])
    assert merge.release(()) == [report, first]
    # More than the lead later, it stays behind.
    late = Record(topics.REPORTS_FINAL, 0, 0, None,
                  json.dumps({"finalized_at": "2026-03-03T08:00:00Z"}).encode())
    merge.add([late, first])
    assert merge.release(()) == [first, late]


def test_times_without_offset_are_utc_and_odd_values_state_none() -> None:
    assert event_time(b'{"inference_date": "2026-03-01T08:00:00"}') == event_time(
        b'{"inference_date": "2026-03-01T09:00:00+01:00"}')
    for raw in (None, b"", b"\xff", b"[]", b'{"finalized_at": 7}', b"{}"):
        assert event_time(raw) == float("-inf")


def _backlog() -> list[Any]:
    """A simulated backlog with every fault the simulator makes (invalid events among
    them), and values the msgspec shortcut leaves to pydantic or refuses."""
    events, _ = simulate(days=3, seed=5, scenario=scenario_by_name("all"),
                         faults=Faults(duplicate_rate=0.05, invalid_rate=0.05))
    odd = [(topics.AI_RESULTS, raw) for raw in (
        b'{"inference_date": "2026-03-01T08:00:00"}', b"{}", b"\xff", None)]
    odd += [(topics.REPORTS_FINAL, raw) for raw in (
        b'{"finalized_at": "2026-03-01T08:00:00.1234567+00:00"}', b'{"finalized_at": 7}')]
    return [(e.topic, e.value, e.arrival) for e in events] + [
        (topic, raw, events[-1].arrival) for topic, raw in odd]


def test_a_value_its_reader_decoded_orders_by_the_time_its_bytes_state() -> None:
    """The bulk runner decodes each input value once (`Record.decoded`); its time is then
    read from the contract, and is the one `event_time` reads from the bytes."""
    backlog = _backlog()
    taken = 0
    for topic, raw, _ in backlog:
        value = decoded(topic, raw)
        taken += value is not None
        assert record_time(Record(topic, 0, 0, None, raw, (), value)) == event_time(raw)
    assert taken > 0.8 * len(backlog)


def test_ingest_takes_a_decoded_value_as_it_would_decode_it() -> None:
    """Accepted or rejected alike, with the same join input and partition."""
    once, twice = EngineConfig.plain(4).ingest, EngineConfig.plain(4).ingest
    for topic, raw, now in _backlog():
        assert (once.accept(topic, raw, now, 4, decoded(topic, raw))
                == twice.accept(topic, raw, now, 4))
