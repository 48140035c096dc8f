"""A restarted backfill's join table put back as it stood at the committed input offsets:
pure.

A runner killed after a batch's join-table changes were persisted but before the batch's
commit reads the batch's inputs again. On the table with those changes, each input is one
the join has seen: it re-emits its cases as they stand, with what later inputs of the
batch did to them. A case revision the batch made and a later input of the same batch
revised again (a report and its correction, an AI result and its report) was then never
emitted again: lost in the crash (the table written, its record not sent), the case stage
never had it (crash test seed 120301379: an ich-triage case labelled FN by its report and
TN by a correction the next day came only as TN; its day's 30-day window counted it
pending, 95 cases against 96). Put back as it stood at the commit, the table makes the
join read the batch as it first did: the same revisions, the same contents.

Each batch writes, after its changes, one record per join partition it read
(`bulk.join_clocks`: the partition's clock and input offsets at the batch's start and end).
`JoinRewind` follows the join table's changelog while it is restored: per partition, from
each of its last `KEPT` such records (and from the log's start), each changed key's value
there. The point to go back to is the latest record whose end offsets are the committed
ones (or the log's start, when nothing was ever committed): every change after it is of a
batch not committed. Compaction can have removed a value the rewind would put back (a key
changed again later), so a partition whose changelog has an offset gap is not rewound
(`changelog.restore`'s `gapless`): its batch is then read again on the table as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from surveillance.engine.join import CLOCK_KEY_PREFIX, is_clock_key

#: Saved-clock records kept as points to go back to, per partition: the match is the
#: last or the one before it (a batch not committed), more after a batch tried twice.
KEPT = 8


class JoinRewind:
    def __init__(self) -> None:
        #: Per partition: (the saved-clock record there, None at the log's start; each key
        #: changed since, with its value there, None: absent), oldest first.
        self._points: dict[int, list[tuple[Mapping[str, Any] | None,
                                           dict[str, Any]]]] = {}

    def _of(self, partition: int) -> list[tuple[Mapping[str, Any] | None,
                                                dict[str, Any]]]:
        found = self._points.get(partition)
        if found is None:
            found = self._points[partition] = [(None, {})]
        return found

    def change(self, key: str, before: Any, after: Any) -> None:
        """One join-table changelog record, in log order."""
        if is_clock_key(key):
            if after is not None:
                points = self._of(int(key[len(CLOCK_KEY_PREFIX):]))
                points.append((after, {}))
                del points[:-KEPT]
            return
        value = after if after is not None else before
        if value is None:
            return
        for _, changed in self._of(int(value["partition"])):
            changed.setdefault(key, before)

    def undo(self, partition: int, committed: Mapping[str, int | None]
             ) -> dict[str, Any] | None:
        """The values to put back (None: remove) for `partition`'s table to stand at the
        `committed` offsets; None when no point matches them (nothing to go back to)."""
        never = all(offset is None for offset in committed.values())
        for point, changed in reversed(self._of(partition)):
            if point is None:
                matches = never
            else:
                after: Mapping[str, Any] = point.get("after") or {}
                matches = bool(after.get("offsets") == committed)
            if matches:
                found: dict[str, Any] = changed
                return found
        return None
