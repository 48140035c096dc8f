"""The ingest agent's input events in the bulk runner's event-time order (`bulk.order`).

A worker that takes over a backlog (the records sent while a backfill ran, or while the
worker was down) reads it as Faust's fetches bring it: a partition at a time, days of
`ai.results` before the `reports.final` of the same days. The join then has the two
read-order defects the bulk runner had before `EventTimeMerge`: the case clock (the join
partitions' AI clocks) runs days ahead of the reports read, so a day is evaluated before
its revisions arrive; and a case whose AI result is read after its report and a
label-keeping correction is labelled at the correction's time (read between them: at the
original's), so the monitor counts it on another day. A backfill killed and restarted,
then taken over by a worker, raised other alerts than one uninterrupted run.

`InputOrder` holds the events as `EventTimeMerge` holds records, and lets them go in the
same order: a record once every assigned input partition that may still hold records not
received here has one waiting. A partition may (`open_`) while the broker's high
watermark (reported with each fetch) is past the next offset expected here: the offset
after the last one received, or, before any, the one Faust started it from (its
committed offset). Live, every partition is at its end, and an event goes at once: no
added latency. The order is then a function of the records the broker holds when the
worker reads them, whatever the fetches bring.

A held event is not acknowledged (Faust commits no offset past it): a crash or a
rebalance reads it again. What is held is bounded: past `limit` events, or once nothing
has arrived for `stall_seconds` while something is held (a partition whose expected
records never come: deleted by retention under a committed offset), the earliest go
anyway, in order. The agent is woken for that by empty batches (`stream.batches`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from faust.types import TP

from surveillance.bulk.order import EventTimeMerge, Partition
from surveillance.engine.records import Record

#: Input events held at most (a worker catching up on a long outage: ~1 kB each).
HELD_LIMIT = 50_000
#: Wall seconds without a new event after which held events go anyway.
STALL_SECONDS = 10.0
#: The agent is handed an empty batch after this many seconds without an event, to look
#: at what it holds again.
IDLE_SECONDS = 1.0


class InputOrder:
    def __init__(self, inputs: Collection[str], limit: int = HELD_LIMIT,
                 stall_seconds: float = STALL_SECONDS) -> None:
        self.inputs = tuple(inputs)
        self.limit = limit
        self.stall_seconds = stall_seconds
        self._merge = EventTimeMerge(self.inputs)
        #: (topic, partition, offset) -> the Faust event of a held record.
        self._events: dict[tuple[str, int, int], Any] = {}
        #: Per input partition, the next offset expected (after the last one received)
        #: and the first one received.
        self._next: dict[Partition, int] = {}
        self._first: dict[Partition, int] = {}
        self._heard = 0.0

    def __len__(self) -> int:
        return len(self._merge)

    def add(self, records: Iterable[tuple[Record, Any]], now: float) -> list[Any]:
        """Input records received, with their events (each partition's in offset order);
        the events of those received before (to acknowledge, not to take again).

        Faust delivers again what it delivered while it awaited the seek to the
        committed offsets after an assignment (`stream.app._hold_streams_until_seeked`):
        an offset received already is held or taken; one before the first received of
        its partition was not (taken as new)."""
        again = []
        for record, event in records:
            tp = (record.topic, record.partition)
            if self._first.get(tp, record.offset + 1) <= record.offset < self._next[tp]:
                again.append(event)
                continue
            self._first[tp] = min(self._first.get(tp, record.offset), record.offset)
            self._next[tp] = max(self._next.get(tp, 0), record.offset + 1)
            self._events[record.topic, record.partition, record.offset] = event
            self._merge.add((record,))
            self._heard = now
        return again

    def open_(self, assigned: Iterable[Partition], highwater: Callable[[Partition], int | None],
              started: Mapping[Partition, int | None]) -> set[Partition]:
        """The assigned input partitions that may hold records not received here:
        `highwater` the broker's reported log end (None: not fetched yet), `started` the
        offset each was read from (None: from the start)."""
        out = set()
        for tp in assigned:
            if tp[0] not in self.inputs:
                continue
            high = highwater(tp)
            expected = self._next.get(tp)
            if expected is None:
                expected = started.get(tp) or 0
            if high is None or expected < high:
                out.add(tp)
        return out

    def release(self, open_: Collection[Partition], now: float
                ) -> list[tuple[Record, Any]]:
        """The held records whose turn has come, in order, with their events; the
        earliest anyway while over `limit`, or stalled (see above)."""
        out = self._merge.release(open_)
        if len(self._merge) > self.limit or (
                len(self._merge) and now - self._heard >= self.stall_seconds):
            out += self._merge.release(())
        return [(r, self._events.pop((r.topic, r.partition, r.offset))) for r in out]

    def take(self, records: list[Record], batch: list[Any], consumer: Any, now: float
             ) -> list[Record]:
        """A Faust batch's input records (`records`, of its events `batch`) in: the
        records whose turn has come out (held ones of earlier batches too); `batch`
        becomes their events and those delivered again, the only ones acknowledged with
        it (`stream.batches`). `consumer`: Faust's, for the assignment, the high
        watermarks and the offsets it started from."""
        again = self.add(zip(records, batch, strict=True), now)
        assigned = [(tp.topic, tp.partition) for tp in consumer.assignment()]
        # Before a partition's first record is read, Faust's read offset is the committed
        # one it was sought to.
        started = consumer._read_offset
        released = self.release(
            self.open_(assigned, lambda tp: consumer.highwater(TP(*tp)), started), now)
        batch[:] = [*again, *(event for _, event in released)]
        return [record for record, _ in released]

    def forget(self) -> None:
        """Partitions were revoked: Faust reads every assigned partition again from its
        committed offset, so nothing held (never acknowledged) is kept."""
        self._merge = EventTimeMerge(self.inputs)
        self._events.clear()
        self._next.clear()
        self._first.clear()
