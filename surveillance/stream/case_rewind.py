"""A restarted worker's case table put back as each tool's snapshot saw it (`engine.rewind`).

Snapshots are throttled (`EngineConfig.snapshot_seconds`, 60 s), so a worker killed
between a batch's two writes leaves case records on the changelog that are newer than
its tools' last snapshots. The next owner refused those snapshots ("the case table has
changed since it was written") and replayed the tools from their records, and a replayed
monitor raises other alerts (`PerformanceMonitor.rebuild` is approximate). The bulk
runner's remedy, done by the worker once its tables are recovered and before Faust seeks
the streams to their committed offsets (`stream.app._hold_streams_until_seeked`):

1. `needed`: a tool of an owned `cases.adjudicated` partition whose snapshot does not
   match the case table (its digest over the records).
2. The owned partitions of the case table's changelog read from their start through a
   `Rewind` (Faust's recovery may have read only a tail, after the local store's offset,
   so the history the rewind follows is read here), and the value each rewound tool's
   changed keys had at its snapshot's point put back in the table's store (`put_back`).
   Not on the changelog: it still holds the killed batch's values, so a worker killed
   again before the re-read has made them again rewinds the same way.
3. Each such partition committed back to the earliest snapshot offset of its rewound
   tools, if before the committed offset (before the values are put back: a failed
   commit leaves the tools to be replayed, as before), and Faust's own seek then reads
   it again from there, through the normal path. The re-read makes the rewound changes
   again through the loaded state (the same alerts, under the same ids); the other
   tools' records it reads again are not newer than their stored revisions and are
   dropped. No snapshot of the partition is written until the re-read has passed its end
   at the restart, and its case clock starts from the snapshots at or before the
   re-read's start (`CaseSnapshots.reread`).

The changelog is read as `stream.case_history.Held` records (a case's tool, partition,
revision and offset, not its ~5 kB of features), and the values put back are read again
at their offsets: the memory is ~220 bytes per owned record (measured: 222 with a
40-character key), ~0.5 GB for a 2M-exam/yr system, not the table decoded (~11 GiB).

Costs: step 1 is the pass over the owned case records the rebuild makes anyway (they
are handed to it when nothing is rewound, `stream.app._read_at_seek`); a rewind reads
the owned case-table changelog partitions from their start once (~10 µs per record),
the put-back values again, and the rebuild reads the owned records after it.

`tests/test_worker_case_rewind_process.py` kills real workers between a case batch's two
writes and restarts them with it through Faust's seek to the lowered commit: the alerts
and figures of an uninterrupted worker (without the rewind they differ), and the pure
harness (`tests/test_worker_case_crash.py`, `tests/test_case_rewind.py`) runs this code
at three kill points. With it on for the whole suite (session 19),
`test_pipeline_integration`'s SIGKILLs ended some runs with cases short or left pending:
one input partition's committed offset stayed at the killed worker's, and a run of ~900
records after it never reached the join (the records after the run did). The rewind read
its committed offsets through Faust's `seek_to_committed`, which seeks *every* assigned
partition, the inputs' too, in the middle of Faust's recovery; they are now read without
a seek (`committed_offsets`). That test's `case-rewind` case asserts the rewind was made
and every input partition committed to its log end: with the seek it failed 2 of 6 runs,
without it 0 of 40 (session 20).
On by default since session 21, after fresh-clone runs of the whole suite with it on
(`SURVEILLANCE_STREAM__CASE_REWIND=false` turns it off). Off, or when a rewind cannot be
made (retention, an eviction since the snapshot, the broker, fewer records to read again
than cases it would remove), a replayed tool goes on from the day its refused snapshot
was to evaluate next (`DailyEvaluation.defer`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from faust.types import TP

from surveillance.bulk import changelog
from surveillance.clinical.ledger import CaseRecord
from surveillance.engine.cases import CaseStage
from surveillance.engine.rewind import Rewind
from surveillance.engine.snapshots import FORMAT, table_digests
from surveillance.kafka_clients import client_options
from surveillance.observe.metric_labels import StateRebuild
from surveillance.settings import get_settings
from surveillance.stream import case_history, topics
from surveillance.stream.case_history import Held
from surveillance.stream.table_stores import write_change

log = logging.getLogger(__name__)


def snapshots_of(store: Mapping[str, Any], tools: Iterable[str]) -> dict[str, Any]:
    """tool -> its stored snapshot record (without its parts), of `tools` that have one."""
    return {tool: saved for tool in tools if (saved := store.get(tool)) is not None}


def needed(snapshots: Mapping[str, Any], digests: Mapping[str, int]) -> set[str]:
    """The tools with case records (`digests`: per tool, over its records in the table)
    that have a snapshot a rewind could restore that does not match them, or none at all
    (killed before its first was written, or while its drift waited for a calibration:
    it is rewound to empty, `engine.rewind`)."""
    return {tool for tool, digest in digests.items()
            if (saved := snapshots.get(tool)) is None
            or (saved.get("format") == FORMAT and saved.get("offset") is not None
                and saved.get("digest") != digest)}


def rebuilt(tools: Iterable[str], loaded: Collection[str], rewound: Collection[str]
            ) -> dict[str, StateRebuild]:
    """How each tool with case records was rebuilt (`surveillance_tool_state_rebuilds`):
    `loaded` from its snapshot, after a rewind to it if in `rewound`; else replayed."""
    return {tool: (StateRebuild.REPLAYED if tool not in loaded else
                   StateRebuild.REWOUND if tool in rewound else StateRebuild.SNAPSHOT)
            for tool in sorted(tools)}


async def committed_offsets(consumer: Any, tps: Iterable[TP]) -> dict[TP, int | None]:
    """The group's committed offsets of `tps` (None: none committed), read from the broker
    on Faust's consumer thread (its aiokafka consumer runs on that thread's loop) without
    moving any partition: Faust's `seek_to_committed` seeks every assigned partition, the
    input topics' too, mid-recovery, and lost a run of an input partition's records (the
    module's docstring)."""
    thread = consumer._thread  # Faust's consumer thread: its aiokafka consumer runs there

    async def read() -> dict[TP, int | None]:
        client = thread._ensure_consumer()
        return {tp: await client.committed(tp) for tp in tps}

    result: dict[TP, int | None] = await thread.call_thread(read)
    return result


def put_back(store: Any, undo: Mapping[str, dict[str, Any] | None]) -> None:
    """A rewind's values into the case table's store (None: the key removed)."""
    for key, value in undo.items():
        write_change(store, key, value, value["partition"] if value is not None else 0)


class CaseRewind:
    """The worker's rewind over its case table's and snapshot table's stores and its case
    stage: `before_seek` once the tables are recovered, before Faust seeks the streams to
    their committed offsets."""

    def __init__(self, case_store: Any, snapshot_store: Any, cases: CaseStage) -> None:
        self.case_store = case_store
        self.snapshot_store = snapshot_store
        self.cases = cases
        #: The tools the last `before_seek` rewound to their snapshots.
        self.rewound: set[str] = set()
        #: Each tool's digest over the records the last `before_seek` returned (None when
        #: it returned none): the rebuild from those records takes them as they are.
        self.digests: dict[str, int] | None = None

    def how_rebuilt(self) -> dict[str, StateRebuild]:
        """How the case stage's last rebuild rebuilt each tool with case records."""
        return rebuilt(self.cases.snapshots.digests, self.cases.restored, self.rewound)

    async def before_seek(self, consumer: Any,
                          owned_records: Callable[[], list[tuple[str, CaseRecord]]]
                          ) -> list[tuple[str, CaseRecord]] | None:
        """Rewind the owned case partitions if a tool's snapshot does not match the case
        table; commit those partitions back to the rewound snapshots' offsets and hold
        their snapshots during the re-read (`CaseSnapshots.reread`). The owned records it
        read if no rewind was needed (the rebuild's, `stream.app`); else None (dropped
        before the changelog is read, so the two are never in memory together)."""
        self.rewound, self.digests = set(), None
        owned = {tp.partition for tp in consumer.assignment()
                 if tp.topic == topics.CASES_ADJUDICATED}
        if not owned:
            return None
        records = owned_records()
        digests = table_digests(records)
        snapshots = snapshots_of(self.snapshot_store, digests)
        mismatched = needed(snapshots, digests)
        if not mismatched:
            self.digests = digests
            return records
        # Not held beside the changelog's records: the rebuild reads them again.
        del records
        follow = Rewind(snapshots)
        try:
            await self._history(sorted(owned), follow.change)
        except Exception:  # the broker: the tools are replayed, as without a rewind
            log.warning("the case table's changelog could not be read to rewind it; the "
                        "tools whose snapshots do not match are rebuilt by replay",
                        exc_info=True)
            return None
        # A tool whose offset to read again from has left the log (retention; a tool
        # never snapshotted is read again from offset 0) is replayed instead.
        cases = [TP(topics.CASES_ADJUDICATED, p) for p in sorted(owned)]
        log_starts = await consumer.earliest_offsets(*cases)
        undo, seek = follow.undo({tp.partition: at for tp, at in log_starts.items()})
        if not seek:
            return None
        whole = await self._whole(undo)
        if whole is None:
            return None
        tps = [TP(topics.CASES_ADJUDICATED, p) for p in sorted(seek)]
        committed = await committed_offsets(consumer, tps)
        ends = await consumer.highwaters(*tps)
        # Each case the rewind removes is made again by a record of the re-read: fewer
        # records than that (a topic recreated under kept changelogs, a state written
        # without its records) and the rewind would lose cases for good.
        removed = sum(value is None for value in whole.values())
        if removed > sum(max(ends[tp] - seek[tp.partition], 0) for tp in tps):
            log.warning("case table not rewound: it would remove %d cases that the %s "
                        "records to read again cannot make again; the tools are rebuilt "
                        "by replay", removed, "cases.adjudicated")
            return None
        starts, back = {}, {}
        for tp in tps:
            at = committed.get(tp)
            if at is not None and 0 <= at <= seek[tp.partition]:
                starts[tp] = at
            else:
                starts[tp] = back[tp] = seek[tp.partition]
        # The commit first: without it the partitions would not be read again, and the
        # tools loaded from their snapshots would lack the rewound changes for good.
        if back and not await consumer._commit(back):  # Faust's seek to them follows
            log.warning("the rewound partitions' offsets were not committed; their tools "
                        "are rebuilt by replay")
            return None
        put_back(self.case_store, whole)
        for tp in tps:
            self.cases.snapshots.reread(tp.partition, starts[tp], ends[tp])
        self.rewound = mismatched
        log.warning("case table rewound to its tools' snapshots; cases.adjudicated read "
                    "again from %s", " ".join(f"{tp.partition}@{o}" for tp, o in back.items())
                    or "the committed offsets")
        return None

    async def _whole(self, undo: Mapping[str, Any]) -> dict[str, dict[str, Any] | None] | None:
        """The rewind's values whole: a `Held` one read again at its offset. None, with
        the reason logged, if one cannot be (the tools are then replayed)."""
        wanted: dict[int, set[int]] = {}
        for value in undo.values():
            if isinstance(value, Held):
                wanted.setdefault(value.partition, set()).add(value.offset)
        try:
            found = await self._values(wanted) if wanted else {}
        except Exception:  # the broker
            log.warning("the values to rewind the case table to could not be read; the "
                        "tools whose snapshots do not match are rebuilt by replay",
                        exc_info=True)
            return None
        whole: dict[str, dict[str, Any] | None] = {}
        for key, value in undo.items():
            if isinstance(value, Held):
                value = found.get((value.partition, value.offset))
                if value is None:  # compacted away since it was read
                    log.warning("a value to rewind the case table to has left its "
                                "changelog; the tools are rebuilt by replay")
                    return None
            whole[key] = value
        return whole

    async def _history(self, partitions: list[int], watch: changelog.Watch) -> None:
        """The case table's changelog `partitions` read from their start to their end now,
        each change told to `watch` in log order, its records as `Held`s."""
        await case_history.follow(_options(), get_settings().stream.app_id, partitions, watch)

    async def _values(self, wanted: Mapping[int, Collection[int]]
                      ) -> dict[tuple[int, int], Any]:
        return await case_history.values(_options(), get_settings().stream.app_id, wanted)


def _options() -> dict[str, Any]:
    settings = get_settings()
    return {"bootstrap_servers": settings.kafka.bootstrap, **client_options(settings.kafka)}
