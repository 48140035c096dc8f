"""A restarted bulk runner's case table put back as each tool's snapshot saw it.

A crash can leave the case table past a tool's last snapshot (the batch's case records
persisted, its snapshot not, or later batches without one: snapshots are throttled).
`Rewind` follows each tool's digest through the case table's changelog while it is
restored and keeps, from the last point where the digest equals the snapshot's, the
values the tool's changed keys had there (`engine.snapshots` says what a snapshot holds).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from surveillance.engine.horizon import is_summary
from surveillance.engine.snapshots import FORMAT, record_digest

log = logging.getLogger(__name__)

class Rewind:
    """The case table as each tool's snapshot saw it, found in the table's changelog.

    A bulk runner killed mid-batch leaves, per tool, its last snapshot (written after the
    table changes and records of the chunk it was taken at) and the case table with some
    of the next chunks' changes on top (each chunk's are persisted once its records are
    acknowledged, so those records, its alerts and figures, are on the log). Replaying the
    tool from its records would lose what the monitor held (verdicts, episodes, the
    revisions a case went through before its latest), so alerts would differ. The
    changelog has the history: fed its records in log order (`change`), this follows each
    tool's digest, and from the last point where it equals the snapshot's keeps the
    values its changed keys had there. Putting those back (`undo`) gives the table the
    snapshot was written against, so the tool is loaded; reading its partition again
    from the snapshot's offset (or the committed one, if earlier) then makes those
    changes again, through the same monitor state (the other tools' records read again
    are not newer than their stored revisions: dropped).

    A tool with case records and no snapshot at all (killed before its first was written:
    the first batches of a backfill, or while its drift waited for a calibration, which
    holds its snapshots, `engine.snapshots`) is rewound to empty and its partition read
    again from offset 0. Replayed instead, it started its daily evaluation at the latest
    case day its records held, so the days it had evaluated since the last day published
    before the kill were never published (CI seed 3299872936: ich-triage's 07-04 missing).
    A tool whose snapshot could not be written (`CaseSnapshots` leaves a marker) is replayed.

    The horizon's summaries (evicted counts, per partition, shared by its tools) are not
    rewound: a tool one of whose records left the table after that point (an eviction), or
    whose evicted counts changed (an eviction or a re-admitted correction), is not rewound
    but replayed. So is a tool whose point is no longer in the log (compacted away), or
    whose partition of `cases.adjudicated` no longer holds the offset to read again from
    (retention: `undo`'s `log_starts`).
    """

    def __init__(self, snapshots: Mapping[str, Any]) -> None:
        self._target = {tool: saved["digest"] for tool, saved in snapshots.items()
                        if saved and saved.get("format") == FORMAT
                        and saved.get("offset") is not None}
        self._offset = {tool: snapshots[tool]["offset"] for tool in self._target}
        #: Every key of the snapshot table: a tool not among them has never had one.
        self._saved = set(snapshots)
        self._partition: dict[str, int] = {}
        self._digest: dict[str, int] = {}
        #: Per tool, since its digest last equalled the snapshot's: each changed key's
        #: value there (None: absent). A tool without an entry has not reached it yet.
        self._undo: dict[str, dict[str, dict[str, Any] | None]] = {
            tool: {} for tool, digest in self._target.items() if digest == 0}
        #: Per tool with an entry in `_undo`: its evicted counts there.
        self._counts_at: dict[str, list[tuple[Any, ...]]] = {tool: [] for tool in self._undo}
        #: Tools a record of which left the table since that point.
        self._left: set[str] = set()
        self._summaries: dict[str, dict[str, Any]] = {}

    def change(self, key: str, before: dict[str, Any] | None,
               after: dict[str, Any] | None) -> None:
        """One case-table changelog record, in log order: `key` from `before` to `after`
        (None: absent)."""
        if is_summary(key):
            self._summaries[key] = after or {}
            # A batch writes its summaries after its records and before its snapshot: a
            # tool still at its snapshot's digest is at the snapshot's point with these.
            for tool in self._undo:
                if self._digest.get(tool, 0) == self._target[tool]:
                    self._counts_at[tool] = self._counts(tool)
            return
        record = after or before
        if record is None:
            return
        tool = record["tool"]
        if tool not in self._target:
            if tool in self._saved:  # another format, no offset, or not writable
                return
            # Never snapshotted: its point is the empty table, before the whole log.
            self._target[tool], self._offset[tool] = 0, 0
            self._undo[tool], self._counts_at[tool] = {}, []
        self._partition[tool] = record["partition"]
        digest = self._digest.get(tool, 0)
        if before is not None:
            digest -= record_digest(key, before["revision"])
        if after is not None:
            digest += record_digest(key, after["revision"])
        digest %= 2**64
        self._digest[tool] = digest
        undo = self._undo.get(tool)
        if undo is not None:
            undo.setdefault(key, before)
            if after is None:
                self._left.add(tool)
        if digest == self._target[tool]:
            self._undo[tool] = {}
            self._counts_at[tool] = self._counts(tool)
            self._left.discard(tool)

    def _counts(self, tool: str) -> list[tuple[Any, ...]]:
        return sorted(tuple(row) for summary in self._summaries.values()
                      for row in summary.get("evicted", ()) if row[0] == tool)

    def undo(self, log_starts: Mapping[int, int] | None = None
             ) -> tuple[dict[str, dict[str, Any] | None], dict[int, int]]:
        """Key -> the value to put back (None: remove), for every tool that can be rewound
        and is not at its snapshot's point already; and per `cases.adjudicated` partition
        of those, the offset to read again from (the earliest of their snapshots').
        `log_starts`: per partition, its first offset still on the log (retention); a
        tool whose offset is before it cannot be read again, so is not rewound."""
        out: dict[str, dict[str, Any] | None] = {}
        seek: dict[int, int] = {}
        for tool, undo in sorted(self._undo.items()):
            if undo and log_starts is not None and (
                    self._offset[tool] < log_starts.get(self._partition[tool], 0)):
                log.warning("case table of %s not rewound to its snapshot: offset %d of its "
                            "partition is no longer on the log (replayed instead)", tool,
                            self._offset[tool])
                continue
            if undo and tool not in self._left and self._counts(tool) == self._counts_at[tool]:
                log.warning("case table of %s rewound by %d records to %s (a crashed "
                            "batch; the re-read makes them again)", tool, len(undo),
                            "its snapshot" if tool in self._saved else "empty (no snapshot)")
                out.update(undo)
                partition = self._partition[tool]
                seek[partition] = min(seek.get(partition, self._offset[tool]),
                                      self._offset[tool])
        return out, seek
