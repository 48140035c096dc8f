"""Each join partition's clock, kept beside the join table, so that a restarted backfill
reads its uncommitted inputs again through the clock they were first read with: pure.

The join stamps each case it emits with its partition's AI clock (`engine.join`), and the
case stage's clock is, per join partition, the latest stamp it has read
(`stream.watermark.SourceWatermark`). A runner killed after a batch's join-table changes
were persisted but before the batch's commit reads the batch's inputs again on restart.
Restored from the join table (the 16th latest event time it holds), the clock already
stood at the end of that batch, up to a batch's worth of event time (half a day in the
crash test) past where it was when the inputs were first read; the re-emitted cases
carried it, and the case clock ran ahead of the uninterrupted run's at the same cases. A
case lost in the crash (the table written, its record not sent) and re-emitted a few
records later then came after the case clock had passed its day's evaluation point: the
day was published without it (crash test seed 2635837757: ich-triage 5.2.1 on 07-08, a
30-day window of 502 cases against 503).

So every batch writes, per join partition it read, one record to the join table's
changelog (key `engine.join.clock_key`, after the batch's table changes): the partition's
clocks and input offsets at the batch's start and at its end. The batch's commit comes
after it is acknowledged, so the committed offsets are one of the two: before the commit,
the start's (the batch is read again from there); after it, the end's. A restart takes
the clock saved at its committed offsets (`chosen`) and the join re-reads from there as
the uninterrupted run did: the same stamps, the same case clock. With none that matches
(a Faust worker ran since: it writes none), the clock is restored from the table as
before, and marked not exact (`engine.join.PartitionClock.exact`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set
from typing import Any, Protocol

from surveillance.bulk.ownership import JOIN_TOPICS
from surveillance.engine.records import Record

#: Per join topic of a partition, the offset of the next record to take (None: nothing
#: committed yet).
Offsets = dict[str, int | None]
#: Per join partition, its offsets taken and its clock's state (None: not exact).
States = dict[int, tuple[Offsets, Mapping[str, Any] | None]]


class Clock(Protocol):
    exact: bool

    def state(self) -> Mapping[str, Any]: ...


def offsets(taken: Mapping[tuple[str, int], int | None], partition: int) -> Offsets:
    """The join topics' offsets of `partition` in `taken` ((topic, partition) -> next)."""
    return {topic: taken.get((topic, partition)) for topic in JOIN_TOPICS}


def record(before: tuple[Offsets, Mapping[str, Any] | None],
           after: tuple[Offsets, Mapping[str, Any] | None]) -> dict[str, Any]:
    """The changelog value for one partition and batch: (offsets, clock state) at its
    start and at its end; a state None where the clock was not exact."""
    return {"before": {"offsets": before[0], "clock": before[1]},
            "after": {"offsets": after[0], "clock": after[1]}}


def chosen(saved: Mapping[str, Any] | None, committed: Offsets) -> Mapping[str, Any] | None:
    """The clock state saved at the `committed` offsets, if any."""
    if not saved:
        return None
    for point in ("after", "before"):
        at = saved.get(point) or {}
        if at.get("clock") is not None and at.get("offsets") == committed:
            clock: Mapping[str, Any] = at["clock"]
            return clock
    return None


def states(taken: Mapping[tuple[str, int], int | None], clocks: Mapping[int, Clock],
           owned: Iterable[int]) -> States:
    """Per owned join partition, its offsets taken and its clock's state (None: not
    exact)."""
    return {p: (offsets(taken, p), clocks[p].state() if p in clocks and clocks[p].exact
                else None)
            for p in owned}


def batch(taken: dict[tuple[str, int], int | None], before: States, records: list[Record],
          clocks: Mapping[int, Clock], owned: Set[int]) -> list[tuple[int, dict[str, Any]]]:
    """The saved clocks of the join partitions `records` (a batch) read, as (partition,
    changelog value): their start state `before` and their state now, after the batch;
    moves `taken` past the batch's records."""
    read = {r.partition for r in records if r.topic in JOIN_TOPICS}
    for r in records:
        if r.topic in JOIN_TOPICS:
            taken[r.topic, r.partition] = r.offset + 1
    after = states(taken, clocks, owned)
    return [(p, record(before[p], after[p])) for p in sorted(read & owned)]
