"""The worker's input order (`stream.input_order.InputOrder`): pure, property-based.

A worker taking over a backlog must read it in the bulk runner's order whatever the
fetches bring: the open partitions are known from the broker's high watermarks and the
offsets received (or started from), each event goes back with its record, and what is
held is bounded (a limit, a stall).
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from surveillance.bulk.order import EventTimeMerge
from surveillance.engine.records import Record
from surveillance.stream.input_order import InputOrder
from tests.test_bulk_order import INPUTS, Partition, ai, fetches, logs


def taken(log: dict[Partition, list[Record]], brought: list[list[Record]],
          started: dict[Partition, int]) -> list[tuple[str, int, int]]:
    """The records in the order `InputOrder` lets them go, fed `brought` (each partition
    from its `started` offset on); each with its event (here, its own position)."""
    order = InputOrder(INPUTS)
    high = {tp: len(records) for tp, records in log.items()}
    out = []
    for fetch in brought:
        inputs = [r for r in fetch if r.topic in INPUTS]
        order.add(((r, ("event", r.topic, r.partition, r.offset)) for r in inputs), 0.0)
        for record, event in order.release(order.open_(high, high.get, started), 0.0):
            assert event == ("event", record.topic, record.partition, record.offset)
            out.append((record.topic, record.partition, record.offset))
    assert len(order) == 0  # everything received: nothing may stay held
    return out


def from_offsets(log: dict[Partition, list[Record]], data: st.DataObject
                 ) -> tuple[dict[Partition, list[Record]], dict[Partition, int]]:
    """The logs read from a committed offset of each partition on."""
    started = {tp: data.draw(st.integers(0, len(rs))) for tp, rs in log.items()}
    return {tp: rs[started[tp]:] for tp, rs in log.items()}, started


@given(st.data())
def test_any_two_ways_of_fetching_give_the_bulk_runners_order(data: st.DataObject) -> None:
    log = {tp: rs for tp, rs in data.draw(logs()).items() if tp[0] in INPUTS}
    unread, started = from_offsets(log, data)
    one = taken(log, data.draw(fetches(unread)), started)
    other = taken(log, data.draw(fetches(unread)), started)
    assert one == other
    # The bulk runner's merge, everything at once.
    merge = EventTimeMerge(INPUTS)
    merge.add(r for rs in unread.values() for r in rs)
    assert one == [(r.topic, r.partition, r.offset) for r in merge.release(())]


def test_a_partition_not_fetched_yet_or_behind_its_high_watermark_holds_the_rest() -> None:
    order = InputOrder(INPUTS)
    first = ai(0, 5, "2026-03-01T08:00:00Z")
    order.add([(first, "e")], 0.0)
    other, reports = (INPUTS[0], 1), (INPUTS[1], 0)
    assigned = [(INPUTS[0], 0), other, reports, ("cases.join", 0)]
    # Not fetched yet (no high watermark): it may hold anything.
    assert order.open_(assigned, {(INPUTS[0], 0): 6, reports: 3}.get, {}) == {other, reports}
    # Fetched; started at 3 of 3 (nothing to read) and at 2 of 4 (two to come).
    highs = {(INPUTS[0], 0): 6, other: 3, reports: 4}.get
    assert order.open_(assigned, highs, {other: 3, reports: 2}) == {reports}
    assert order.release({reports}, 0.0) == []
    # Received to its end: nothing holds it back.
    assert order.open_(assigned, highs, {other: 3, reports: 4}) == set()
    assert order.release(set(), 0.0) == [(first, "e")]


def test_held_events_go_anyway_past_the_limit_or_a_stall() -> None:
    stuck = {(INPUTS[1], 0)}  # a partition whose records never come
    order = InputOrder(INPUTS, limit=2, stall_seconds=10.0)
    records = [ai(0, i, f"2026-03-0{i + 1}T08:00:00Z") for i in range(5)]
    order.add(((r, r.offset) for r in records[:2]), 100.0)
    assert order.release(stuck, 105.0) == []
    assert [e for _, e in order.release(stuck, 110.0)] == [0, 1]  # 10 s without an event
    order.add(((r, r.offset) for r in records[2:]), 200.0)
    assert [e for _, e in order.release(stuck, 200.0)] == [2, 3, 4]  # over the limit


def test_forget_drops_what_is_held_and_the_offsets_received() -> None:
    order = InputOrder(INPUTS)
    order.add([(ai(0, 7, "2026-03-01T08:00:00Z"), "e")], 0.0)
    order.forget()
    assert len(order) == 0
    # Expected from the committed offset again, not after the one received.
    assert order.open_([(INPUTS[0], 0)], {(INPUTS[0], 0): 8}.get, {(INPUTS[0], 0): 3}) == {
        (INPUTS[0], 0)}


def test_an_offset_delivered_again_is_acknowledged_not_taken_again() -> None:
    """Faust delivers again what it delivered while awaiting its seek after an assignment:
    held or taken, such a record goes once; one before the first received is new."""
    order = InputOrder(INPUTS)
    records = [ai(0, i, f"2026-03-0{i + 1}T08:00:00Z") for i in range(4)]
    stuck = {(INPUTS[1], 0)}
    assert order.add(((r, ("first", r.offset)) for r in records[1:3]), 0.0) == []
    assert order.release(set(), 0.0) == [(records[1], ("first", 1)), (records[2], ("first", 2))]
    order.add([(records[3], ("first", 3))], 0.0)
    assert order.release(stuck, 0.0) == []  # 3 held
    again = order.add(((r, ("again", r.offset)) for r in records), 0.0)
    assert again == [("again", 1), ("again", 2), ("again", 3)]
    assert sorted(event for _, event in order.release(set(), 0.0)) == [
        ("again", 0), ("first", 3)]
