"""A join partition's clock saved where its inputs are committed, so a restarted backfill
reads its uncommitted batch again through the clock it was first read with (pure code:
`stream.watermark.EventClock.state`, `engine.join`, `bulk.join_clocks`).

The crash test (`test_backfill_crashes`) found the difference this closes: restored from
the join table, which already held the batch being read again, the clock stood at the
batch's end; a report read again re-emitted its case (whose AI result the table held,
read later in the batch) stamped with that clock, up to a day past where the join had
been when it first read the report; the case clock passed a day's evaluation point, and
a case of that day still to be re-emitted in the batch was published a day late."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from surveillance.bulk import join_clocks
from surveillance.bulk.order import event_time
from surveillance.contracts.wire import AdjudicatedCase
from surveillance.engine.config import EngineConfig
from surveillance.engine.local import JoinFeed
from surveillance.simulate import Faults, simulate
from surveillance.stream.topics import AI_RESULTS, CASES_JOIN, REPORTS_FINAL
from surveillance.stream.watermark import EventClock

T0 = datetime(2026, 7, 1, tzinfo=UTC)


@given(st.lists(st.tuples(st.floats(0, 30), st.floats(0, 30)), max_size=80),
       st.integers(0, 80), st.integers(1, 8))
def test_a_loaded_clock_goes_on_as_the_one_that_saved_it(
    steps: list[tuple[float, float]], cut: int, support: int
) -> None:
    """Theory: `load(state())` in a new clock, then the same events: the same clock at
    every step (event times out of order, and capped by arrival, included)."""
    skew = timedelta(hours=1)
    first = EventClock(skew, support=support)
    events = [(T0 + timedelta(days=e), T0 + timedelta(days=a)) for e, a in steps]
    cut = min(cut, len(events))
    for at, now in events[:cut]:
        first.observe(at, now)
    second = EventClock(skew, support=support)
    second.load(first.state())
    assert second.at == first.at
    for at, now in events[cut:]:
        first.observe(at, now)
        second.observe(at, now)
        assert second.at == first.at


def _readings(feed: JoinFeed) -> tuple[datetime | None, datetime | None]:
    clock = feed.engine.join.clocks[0]
    return clock.watermark, clock.ai_watermark


def test_a_batch_read_again_after_a_crash_is_stamped_as_it_was_first() -> None:
    """One join partition fed a backlog in the runner's event-time order: committed to
    `committed`, then a batch whose join-table changes were persisted but not its commit
    (a kill). Restarted from that table with the clock saved at the committed point, the
    join re-reads the batch and goes on with the same clock at every step, and stamps
    every case it emits with it. Restored from the table instead (as before), the clock
    starts at the batch's end, and a re-emitted case says the partition had reached a
    time it had not when the case was first emitted."""
    config = EngineConfig.plain(1)
    events, _ = simulate(days=6, seed=3)
    rank = {AI_RESULTS: 0, REPORTS_FINAL: 1, CASES_JOIN: 2}
    # Read as a backfill reads a backlog: in event time, every event in the past.
    done = max(e.arrival for e in events)
    ordered = [replace(e, arrival=done) for e in
               sorted(events, key=lambda e: (event_time(e.value), rank[e.topic]))]
    committed, killed = 700, 1000  # the batch read again: [committed, killed)

    first = JoinFeed(config)
    for event in ordered[:committed]:
        first.feed(event)
    saved = first.engine.join.clocks[0].state()
    stamps: list[list[datetime]] = []  # per event read from `committed` on
    readings = []
    table_at_kill: dict[str, object] = {}
    for i, event in enumerate(ordered[committed:], committed):
        if i == killed:
            table_at_kill = dict(first.join_state)
        stamps.append([reached for _, reached, _ in first.feed(event)])
        readings.append(_readings(first))

    restarted = JoinFeed(config)
    restarted.join_state.update(table_at_kill)
    restarted.engine.join.saved_clocks[0] = saved
    for i, event in enumerate(ordered[committed:]):
        emitted = restarted.feed(event)
        assert _readings(restarted) == readings[i], i
        assert restarted.engine.join.clocks[0].exact
        # A case read again may be emitted where it was not (its state holds later
        # inputs: a report re-read re-emits the case its AI result, read after it,
        # made), but with the reading the uninterrupted join had there.
        reading = readings[i][1] or readings[i][0]
        assert all(reached == reading for _, reached, _ in emitted), i
        if i >= killed - committed:  # past the batch: the same cases, the same stamps
            assert [reached for _, reached, _ in emitted] == stamps[i], i

    # Before: from the table. The clock starts ahead and a re-read case carries it.
    before = JoinFeed(config)
    before.join_state.update(table_at_kill)
    ahead = []
    for i, event in enumerate(ordered[committed:killed]):
        for _, reached, _ in before.feed(event):
            if reached > (readings[i][1] or readings[i][0]):
                ahead.append(reached - (readings[i][1] or readings[i][0]))
    assert not before.engine.join.clocks[0].exact
    assert ahead and max(ahead) > timedelta(hours=1), ahead


def test_a_restart_takes_the_clock_saved_at_its_committed_offsets() -> None:
    clock = {"events": {"recent": [], "at": None}, "ai": {"recent": [], "at": None}}
    later = {"events": {"recent": [T0.isoformat()], "at": None}, "ai": clock["ai"]}
    start = {"ai.results": 10, "reports.final": None, "cases.join": None}
    end = {"ai.results": 20, "reports.final": 5, "cases.join": None}
    saved = join_clocks.record((start, clock), (end, later))
    assert join_clocks.chosen(saved, start) == clock  # killed before the commit
    assert join_clocks.chosen(saved, end) == later  # committed
    assert join_clocks.chosen(saved, {**end, "cases.join": 1}) is None  # a worker ran since
    assert join_clocks.chosen(None, start) is None
    # A clock that was not exact is not saved: the restart restores it from the table.
    assert join_clocks.chosen(join_clocks.record((start, None), (end, None)), start) is None
    taken = {("ai.results", 0): 10, ("ai.results", 1): 3, ("cases.join", 0): 2}
    assert join_clocks.offsets(taken, 0) == {"ai.results": 10, "reports.final": None,
                                             "cases.join": 2}


def _accepted(emitted: list[tuple[int, datetime, AdjudicatedCase]]
              ) -> list[tuple[int, datetime, AdjudicatedCase]]:
    """What the case stage takes of `emitted`, in order: each case's revisions newer than
    the last it took (`clinical.ledger.CaseLedger.apply` drops the rest)."""
    last: dict[str, int] = {}
    out = []
    for source, reached, case in emitted:
        if case.revision > last.get(case.case_id, -1):
            last[case.case_id] = case.revision
            out.append((source, reached, case))
    return out


def test_a_batch_read_again_after_its_records_and_part_of_its_state_loses_no_revision() -> None:
    """The bulk runner sends a chunk's records before its join-table changes
    (`bulk.runner.BulkRunner._persist`). Killed anywhere in a batch, the log then holds the
    records up to some point `sent` and the table as it stood at an earlier point
    `persisted`, with any part of the keys changed since as they stood at `sent`. The
    restarted join reads the batch again from the committed offsets with the clock saved
    there: what the case stage takes of the records on the log and those the restart
    emits is, revision for revision (content and stamp), what it takes of one
    uninterrupted run. The other way round (the table persisted first, the batch's
    records lost), the restart emits each case as the table holds it, and a revision the
    batch made and superseded (a case labelled, then relabelled by a correction) is
    never taken."""
    config = EngineConfig.plain(1)
    events, _ = simulate(days=6, seed=3, faults=Faults(correction_rate=0.2))
    rank = {AI_RESULTS: 0, REPORTS_FINAL: 1, CASES_JOIN: 2}
    done = max(e.arrival for e in events)
    ordered = [replace(e, arrival=done) for e in
               sorted(events, key=lambda e: (event_time(e.value), rank[e.topic]))][:1200]
    committed = 500  # the batch read again: [committed, end)

    first = JoinFeed(config)
    # What the case stage holds at the committed point.
    earlier = [c for event in ordered[:committed] for c in first.feed(event)]
    saved = first.engine.join.clocks[0].state()
    emitted: list[list[tuple[int, datetime, AdjudicatedCase]]] = []  # per event
    tables = [dict(first.join_state)]  # the table after each event from `committed` on
    for event in ordered[committed:]:
        emitted.append(first.feed(event))
        tables.append(dict(first.join_state))
    uninterrupted = _accepted(earlier + [c for cases in emitted for c in cases])

    rng = random.Random(17)
    for _ in range(8):
        persisted, sent = sorted(rng.sample(range(len(tables)), 2))
        table = dict(tables[persisted])
        changed = [k for k in tables[sent] if tables[sent][k] != table.get(k)]
        table.update((k, tables[sent][k]) for k in changed if rng.random() < 0.5)
        restarted = JoinFeed(config)
        restarted.join_state.update(table)
        restarted.engine.join.saved_clocks[0] = saved
        again = [c for event in ordered[committed:] for c in restarted.feed(event)]
        on_log = earlier + [c for cases in emitted[:sent] for c in cases]
        assert _accepted(on_log + again) == uninterrupted, (persisted, sent)

    # State first: the whole batch's table persisted, its records lost.
    killed = 300
    restarted = JoinFeed(config)
    restarted.join_state.update(tables[killed])
    restarted.engine.join.saved_clocks[0] = saved
    again = _accepted(earlier + [c for event in ordered[committed:] for c in restarted.feed(event)])
    lost = {(c.case_id, c.revision) for _, _, c in uninterrupted} - {
        (c.case_id, c.revision) for _, _, c in again}
    assert lost
