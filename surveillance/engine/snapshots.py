"""Snapshots of the case stage's per-tool state, so a rebuild restores instead of replaying.

Without them a worker that takes over a tool's partition (a rebalance, a restart, a
crashed backfill resumed) rebuilds the monitor and drift bank by replaying every case
record in the horizon (~430 us each), and the rebuilt monitor is only close to the one
it replaces: none of its verdicts, warnings and episodes, charts fed final outcomes only,
CUSUM signal numbers restarted (`PerformanceMonitor.rebuild`), so alerts differ.

A snapshot is one record per tool in the `case_snapshots` table (its changelog partition
is the tool's `cases.adjudicated` partition), written at the end of every batch that
changed the tool's state, once, through `Output.changes` like every table change, so the
Faust worker and the bulk runner both persist it. A state over `PART_BYTES` (the record
size Kafka takes by default) goes in several records: the tool's own says how many and
the hash of the whole, the others are keyed `part_key(tool, n)`; parts missing or not
matching the hash (a crash persisted some) make the tool replay. It holds, exactly (`state_codec`):
the monitor's state of the tool (windows, versions with their charts and label-free
tests, verdicts, warnings, episodes, placements), the tool's drift bank, the next day
the daily evaluation will evaluate and the case revisions waiting for it
(`clinical.evaluation_order`), the cases held ahead of their clock, and a digest of
the tool's records in the case table as they were when it was written.

It also holds the case clock of its partition (`SourceWatermark.state`) and the next
`cases.adjudicated` offset of that partition. The bulk runner writes every changed tool's
snapshot once it is caught up (a worker taking over then loads them all) and sends a
batch's snapshots only after the table changes they were taken after are acknowledged;
a restarted runner first rewinds the case table to each snapshot (`engine.rewind`) and reads the
tool's partition again from the snapshot's offset.

On a rebuild the digest is recomputed from the case table. Equal: the snapshot is the
state after exactly those records, so it is loaded and nothing is replayed. Different
(a crash persisted the batch's case records and not its snapshot, or the reverse), an
unknown format, or code that changed any module whose classes a snapshot holds (`CODE`):
the tool is rebuilt by replay, as without snapshots, with a log line saying why. The
ledger counts and the horizon's index are always rebuilt from the records: they are a
pass over them, microseconds each.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
import sys
import zlib
from collections.abc import Iterable
from datetime import date
from typing import Any

import msgspec

from surveillance.clinical.monitor import PerformanceMonitor
from surveillance.engine import snapshot_classes, state_codec
from surveillance.engine.drift import DriftBanks
from surveillance.engine.evaluation import DailyEvaluation
from surveillance.engine.snapshot_classes import CLASSES
from surveillance.engine.state_codec import StateCodecError, decode, encode_json
from surveillance.engine.tables import Table
from surveillance.stats.drift_features import FEATURES_BY_NAME
from surveillance.stream.ahead import AheadCases
from surveillance.stream.case_features import WORKER_DRIFT
from surveillance.stream.watermark import SourceWatermark

log = logging.getLogger(__name__)

TABLE = "case_snapshots"
_DECODE = msgspec.json.Decoder().decode
#: The record layout (the keys below); a snapshot with another is rebuilt by replay.
FORMAT = 3  # 3: the case clock and offset; 2: the evaluation's next day and waiting revisions
#: A tool's packed state is cut into records of at most this many bytes: Kafka's and
#: Faust's producers refuse records over 1 MB by default. At a 2M-exam/yr system a busy
#: tool's state is several MB (its agreement windows keep every case of the last 90 days).
PART_BYTES = 900_000
#: A snapshot bigger than this in all is not written (its tool is rebuilt by replay):
#: a bound on what one tool may add to a batch, about 20 times the largest measured.
MAX_STATE_BYTES = 64_000_000

def _code_digest() -> str:
    """A digest of the source of every module whose classes a snapshot holds: a snapshot
    written by other code (an upgrade) is not trusted to mean the same, and is rebuilt."""
    digest = hashlib.sha256()
    modules = ({c.__module__ for c in snapshot_classes.SNAPSHOT_CLASSES}
               | {__name__, snapshot_classes.__name__, state_codec.__name__})
    for module in sorted(modules):
        path = getattr(sys.modules[module], "__file__", None)
        digest.update(module.encode())
        if path is not None:
            with open(path, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()[:16]


CODE = _code_digest()


def record_digest(case_id: str, revision: int) -> int:
    """One case record's share of its tool's digest (summed modulo 2**64, so it can be
    kept as records come and go)."""
    data = f"{case_id}\x00{revision}".encode()
    return zlib.crc32(data) | zlib.adler32(data) << 32


def table_digests(records: Iterable[tuple[str, Any]]) -> dict[str, int]:
    """Each tool's digest over (case id, record) pairs."""
    out: dict[str, int] = {}
    for case_id, record in records:
        out[record.tool] = (out.get(record.tool, 0) + record_digest(case_id, record.revision)
                            ) % 2**64
    return out


def part_key(tool: str, part: int) -> str:
    """The key of a tool's snapshot part `part` (1, 2, ...; part 0 is the record keyed by
    the tool itself, which says how many there are)."""
    return f"{_PART_PREFIX}{part}:{tool}"


_PART_PREFIX = "~part:"


def is_part(key: str) -> bool:
    return key.startswith(_PART_PREFIX)


def _drift_externals(banks: DriftBanks) -> dict[str, object]:
    out: dict[str, object] = {"drift_config": WORKER_DRIFT, "calibrations": banks.calibrations}
    out.update((f"feature:{name}", spec) for name, spec in FEATURES_BY_NAME.items())
    return out


class CaseSnapshots:
    """The case stage's snapshot table: digests kept as records change, snapshots
    written for the tools changed in a batch, and read back on a rebuild."""

    def __init__(self, table: Table[dict[str, Any]] | None, every_seconds: float = 0.0) -> None:
        self.table = table
        self.every_seconds = every_seconds
        #: Per tool, the monotonic time its snapshot was last written.
        self._written: dict[str, float] = {}
        #: Per tool, the digest of its records in the case table.
        self.digests: dict[str, int] = {}
        #: Tools whose state changed since their last snapshot, and their partition.
        self.dirty: dict[str, int] = {}
        #: Of those, the ones changed in this batch: a batch writes only those (a Faust
        #: table writes to the changelog partition of one of the batch's records).
        self.touched: set[str] = set()
        #: Tools whose state the codec cannot write (logged once; rebuilt by replay).
        self._unwritable: set[str] = set()
        #: Per `cases.adjudicated` partition read again after a rewind (`engine.rewind`),
        #: the offset its tools' snapshots wait for, and the one it is read from (`reread`).
        self.rereading: dict[int, int] = {}
        self.reread_from: dict[int, int] = {}

    def stored(self, tool: str, case_id: str, before: int | None, after: int | None,
               partition: int) -> None:
        """A record of `tool` changed in the case table: revision `before` (None: none) to
        `after` (None: deleted)."""
        if self.table is None:
            return
        digest = self.digests.get(tool, 0)
        if before is not None:
            digest -= record_digest(case_id, before)
        if after is not None:
            digest += record_digest(case_id, after)
        self.digests[tool] = digest % 2**64
        self.changed(tool, partition)

    def changed(self, tool: str, partition: int) -> None:
        if self.table is not None:
            self.dirty[tool] = partition
            self.touched.add(tool)

    def reread(self, partition: int, start: int, until: int) -> None:
        """`partition` is read again from `start` after its case table was rewound: its
        case clock is restored from the snapshots at or before `start` (`CaseStage`), and
        no snapshot of its tools is written before the offset `until` (its end at the
        restart). The re-read
        makes the rewound records again over several batches; a snapshot written
        between held some of them as rewound and others as made again, a state the
        changelog (which still has the crashed batch's values) never held, so the next
        restart could not rewind to it and replayed the tool: the days it had evaluated
        since the earlier snapshot were never published again."""
        self.rereading[partition] = until
        self.reread_from[partition] = start

    def write(self, monitor: PerformanceMonitor, drift: DriftBanks,
              evaluation: DailyEvaluation, ahead: dict[int, AheadCases],
              sources: dict[int, SourceWatermark], offsets: dict[int, int],
              mono: float | None) -> None:
        """The snapshot of every tool changed in this batch, unless its last one was
        written less than `every_seconds` before `mono` or its drift is held for
        thresholds; with `mono` None, of every tool changed since its last one and not
        held."""
        touched, self.touched = self.touched, set()
        if self.table is None:
            self.dirty.clear()
            return
        # A tool held for its thresholds (`engine.drift`) is written once released: a
        # snapshot never holds the drift calls queued meanwhile.
        holding = set(drift.held)
        for partition, until in list(self.rereading.items()):
            if offsets.get(partition, 0) >= until:
                del self.rereading[partition]
            else:
                holding.update(t for t, p in self.dirty.items() if p == partition)
        self.touched.update(tool for tool in touched if tool in holding)
        due = [(tool, partition) for tool, partition in self.dirty.items()
               if tool not in holding and (mono is None or (
                   tool in touched
                   and mono - self._written.get(tool, -math.inf) >= self.every_seconds))]
        for tool, partition in due:
            del self.dirty[tool]
            if mono is not None:
                self._written[tool] = mono
            baseline = monitor.settings.registry.get(tool)
            externals = {id(monitor.settings): "settings", **_ids(_drift_externals(drift))}
            if baseline is not None:
                externals[id(baseline)] = "baseline"
            held = [c for c in ahead[partition].held() if c.tool_id == tool
                    ] if partition in ahead else []
            try:
                state = encode_json({"monitor": monitor.tool_state(tool),
                                     "drift": drift.banks.get(tool), "ahead": held,
                                     "waiting": evaluation.queue.of_tool(tool),
                                     "deferred": evaluation.deferred.get(tool, [])},
                                    CLASSES, externals)
            except StateCodecError as e:
                if tool not in self._unwritable:
                    self._unwritable.add(tool)
                    log.warning("no snapshot of %s (it will be rebuilt by replay): %s", tool, e)
                self._delete(tool, partition)  # an older one would be stale
                continue
            packed = base64.b64encode(zlib.compress(state, 1)).decode()
            if len(packed) > MAX_STATE_BYTES:
                if tool not in self._unwritable:
                    self._unwritable.add(tool)
                    log.warning("no snapshot of %s (it will be rebuilt by replay): %d bytes, "
                                "over the %d a snapshot may take", tool, len(packed),
                                MAX_STATE_BYTES)
                self._delete(tool, partition)
                continue
            day = evaluation.next_day.get(tool)
            clock = sources.get(partition)
            chunks = [packed[i:i + PART_BYTES] for i in range(0, len(packed), PART_BYTES)]
            before = self._parts(tool)
            self.table.put(tool, {
                "format": FORMAT, "code": CODE, "tool": tool,
                "digest": self.digests.get(tool, 0),
                "evaluated": None if day is None else day.toordinal(),
                "clock": None if clock is None else clock.state(),
                # The next `cases.adjudicated` offset of its partition: a restart that
                # rewinds the case table to this snapshot re-reads from there (`engine.rewind`).
                "offset": offsets.get(partition),
                "state": chunks[0] if chunks else "",
                # The other parts are their own records, written in the same batch; a
                # crash can persist some and not others, which the hash finds on load.
                "parts": len(chunks),
                "sha256": hashlib.sha256(packed.encode()).hexdigest(),
            }, partition)
            for part in range(1, len(chunks)):
                self.table.put(part_key(tool, part), {"tool": tool, "state": chunks[part]},
                               partition)
            for part in range(max(len(chunks), 1), before):
                self.table.delete(part_key(tool, part), partition)

    def evaluated(self, tool: str) -> tuple[bool, date | None]:
        """Whether `tool`'s stored snapshot says which day it was to evaluate next (even
        if it is not used), and that day (None: none evaluated yet when it was written)."""
        saved = None if self.table is None else self.table.get(tool)
        if not saved or saved.get("unwritable") or "evaluated" not in saved:
            return False, None
        day = saved["evaluated"]
        return True, None if day is None else date.fromordinal(day)

    def _parts(self, tool: str) -> int:
        """How many parts the tool's stored snapshot has (0: none)."""
        saved = None if self.table is None else self.table.get(tool)
        return 0 if saved is None else int(saved.get("parts", 1))

    def _delete(self, tool: str, partition: int) -> None:
        """No snapshot of `tool`: a marker in its place, so a restart replays the tool
        (a tool without any is rewound to empty and read again, `engine.rewind`)."""
        assert self.table is not None
        for part in range(1, self._parts(tool)):
            self.table.delete(part_key(tool, part), partition)
        self.table.put(tool, {"tool": tool, "format": FORMAT, "unwritable": True}, partition)

    def _packed(self, saved: dict[str, Any]) -> str | None:
        """The packed state of a stored snapshot, its parts joined; None if a part is
        missing or they are not the parts it was written with (a partly persisted write)."""
        assert self.table is not None
        chunks = [saved["state"]]
        for part in range(1, int(saved.get("parts", 1))):
            stored = self.table.get(part_key(saved["tool"], part))
            if stored is None:
                return None
            chunks.append(stored["state"])
        packed = "".join(chunks)
        expected = saved.get("sha256")  # written since snapshots have parts
        if expected is not None and hashlib.sha256(packed.encode()).hexdigest() != expected:
            return None
        return packed

    def load(self, tool: str, monitor: PerformanceMonitor, drift: DriftBanks
             ) -> dict[str, Any] | None:
        """`tool`'s snapshot, decoded, if it matches the case table (`digests`, recomputed
        by the caller); None, with the reason logged, when it must be rebuilt by replay."""
        saved = None if self.table is None else self.table.get(tool)
        if saved is None:
            return None
        why = ""
        if saved.get("unwritable"):
            why = "its state could not be written"
        elif saved.get("format") != FORMAT:
            why = f"its format {saved.get('format')!r} is not {FORMAT}"
        elif saved.get("code") != CODE:
            why = "it was written by other code of the state's classes (an upgrade)"
        elif saved.get("digest") != self.digests.get(tool, 0):
            why = "the case table has changed since it was written (a partly persisted batch)"
        if not why:
            baseline = monitor.settings.registry.get(tool)
            externals = {"settings": monitor.settings, **_drift_externals(drift)}
            if baseline is not None:
                externals["baseline"] = baseline
            packed = self._packed(saved)
            if packed is None:
                why = "its parts are missing or not the ones it was written with"
            else:
                try:
                    raw = _DECODE(zlib.decompress(base64.b64decode(packed)))
                    state: dict[str, Any] = decode(raw, CLASSES, externals)
                except (StateCodecError, ValueError, zlib.error) as e:
                    why = str(e)
        if why:
            log.warning("snapshot of %s not used, rebuilding it from its case records: %s",
                        tool, why)
            return None
        state["evaluated"] = saved["evaluated"]
        state["clock"] = saved["clock"]
        state["offset"] = saved.get("offset")
        return state

    @staticmethod
    def install(tool: str, state: dict[str, Any], monitor: PerformanceMonitor,
                drift: DriftBanks, evaluation: DailyEvaluation, ahead: AheadCases) -> None:
        """Put a loaded snapshot (`load`) in place of the tool's state."""
        monitor.restore_tool(tool, state["monitor"])
        bank = state["drift"]
        if bank is not None:
            bank.calibrate_inline = drift.calibrate_inline
            drift.banks[tool] = bank
        if state["evaluated"] is not None:
            evaluation.next_day[tool] = date.fromordinal(state["evaluated"])
        evaluation.queue.restore(tool, state["waiting"])
        deferred = [tuple(step) for step in state.get("deferred") or ()]
        if deferred:  # a replayed tool's records still waiting for their days
            evaluation.deferred[tool] = deferred
        else:
            evaluation.deferred.pop(tool, None)
        ahead.restore(state["ahead"])


def _ids(named: dict[str, object]) -> dict[int, str]:
    return {id(obj): name for name, obj in named.items()}
