"""The worker's rewind (`stream.case_rewind.CaseRewind.before_seek`) on a two-record
history: what it commits, puts back and holds, and what it leaves alone when its commit
fails. The whole path over a killed case agent is `tests/test_worker_case_crash.py`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from faust.types import TP

from surveillance.bulk import changelog
from surveillance.clinical.ledger import CaseRecord
from surveillance.engine.config import EngineConfig
from surveillance.engine.pipeline import Engine
from surveillance.engine.snapshots import FORMAT, record_digest, table_digests
from surveillance.observe.metric_labels import StateRebuild
from surveillance.stream.case_rewind import CaseRewind, rebuilt
from surveillance.stream.topics import CASES_ADJUDICATED

CASES = TP(CASES_ADJUDICATED, 0)


class OnFaustThread:
    """What `stream.case_rewind.committed_offsets` asks of Faust's consumer: its consumer
    thread (`call_thread`) and that thread's aiokafka consumer (`committed`), all this
    one fake, whose committed offset is `at`."""

    at: int

    @property
    def _thread(self) -> OnFaustThread:
        return self

    def _ensure_consumer(self) -> OnFaustThread:
        return self

    async def call_thread(self, fun: Callable[[], Awaitable[Any]]) -> Any:
        return await fun()

    async def committed(self, tp: TP) -> int:
        return self.at


class Consumer(OnFaustThread):
    def __init__(self, committed: int, commits: bool = True) -> None:
        self.at = committed  # the group's committed offset
        self.commits = commits

    def assignment(self) -> set[TP]:
        return {CASES, TP("other", 0)}

    async def highwaters(self, *tps: TP) -> dict[TP, int]:
        return {tp: 12 for tp in tps}

    async def earliest_offsets(self, *tps: TP) -> dict[TP, int]:
        return {tp: 0 for tp in tps}

    async def _commit(self, offsets: dict[TP, int]) -> bool:
        if self.commits:
            self.at = offsets[CASES]
        return self.commits


class History(CaseRewind):
    """Case "a" of tool "t" stored at revision 1 (the snapshot's point, offset 5), then
    at revision 2 by a batch whose snapshot was not written."""

    async def _history(self, partitions: list[int], watch: changelog.Watch) -> None:
        assert partitions == [0]
        changelog.apply({"t": {}}, "t", [
            changelog.encode("a", _record(1)), changelog.encode("a", _record(2))], watch)


def _record(revision: int) -> dict[str, Any]:
    return CaseRecord(revision=revision, outcome="TP", tool="t", version="1", site="s",
                      partition=0, inference_ts=0.0).as_dict()


def _rewind(consumer: Consumer) -> tuple[dict[str, Any], Engine, CaseRewind]:
    table = {"a": _record(2)}
    engine = Engine(EngineConfig.plain(1), {}, table, {}, {})
    snapshots = {"t": {"format": FORMAT, "digest": record_digest("a", 1), "offset": 5}}
    rewind = History(table, snapshots, engine.cases)
    rewind.rewound = {"left from an earlier assignment"}
    asyncio.run(rewind.before_seek(
        consumer, lambda: [(k, CaseRecord.from_dict(v)) for k, v in table.items()]))
    return table, engine, rewind


def test_a_rewound_partition_is_committed_back_to_the_snapshot_and_held() -> None:
    consumer = Consumer(committed=8)
    table, engine, rewind = _rewind(consumer)
    assert consumer.at == 5
    assert table == {"a": _record(1)}
    assert engine.cases.snapshots.reread_from == {0: 5}
    assert engine.cases.snapshots.rereading == {0: 12}
    assert rewind.rewound == {"t"}


def test_a_commit_already_before_the_snapshot_stays() -> None:
    consumer = Consumer(committed=3)
    table, engine, rewind = _rewind(consumer)
    assert consumer.at == 3
    assert table == {"a": _record(1)}
    assert engine.cases.snapshots.reread_from == {0: 3}
    assert rewind.rewound == {"t"}


def test_a_failed_commit_puts_nothing_back() -> None:
    consumer = Consumer(committed=8, commits=False)
    table, engine, rewind = _rewind(consumer)
    assert consumer.at == 8
    assert table == {"a": _record(2)}  # the tool is replayed, as without a rewind
    assert engine.cases.snapshots.reread_from == {}
    assert rewind.rewound == set()  # not told as rewound (`surveillance_tool_state_rebuilds`)


def test_records_whose_snapshots_match_come_back_with_their_digests() -> None:
    """No rewind needed: `before_seek` returns the records it read and keeps the digests
    it took of them, which the rebuild from those records takes instead of taking them
    again (`stream.app._ensure_monitor`); a rewind returns no records and no digests."""
    table = {"a": _record(2), "b": {**_record(1), "tool": "u"}}
    engine = Engine(EngineConfig.plain(1), {}, table, {}, {})
    snapshots = {"t": {"format": FORMAT, "digest": record_digest("a", 2), "offset": 5},
                 "u": {"format": FORMAT, "digest": record_digest("b", 1), "offset": 5}}
    rewind = History(table, snapshots, engine.cases)
    rewind.digests = {"left from": 1}
    records = asyncio.run(rewind.before_seek(
        Consumer(committed=8),
        lambda: [(k, CaseRecord.from_dict(v)) for k, v in table.items()]))
    assert records is not None and rewind.rewound == set()
    assert rewind.digests == {"t": record_digest("a", 2), "u": record_digest("b", 1)}
    assert rewind.digests == table_digests(records)  # the oracle: taken afresh
    _, _, rewound = _rewind(Consumer(committed=8))
    assert rewound.rewound == {"t"} and rewound.digests is None


def test_each_tool_is_told_as_loaded_rewound_or_replayed() -> None:
    """`surveillance_tool_state_rebuilds`' status per tool with records: a tool not
    loaded is replayed, whether or not a rewind was tried for it."""
    how = rebuilt(["c", "a", "b", "d"], loaded={"a", "b"}, rewound={"b", "c"})
    assert how == {"a": StateRebuild.SNAPSHOT, "b": StateRebuild.REWOUND,
                   "c": StateRebuild.REPLAYED, "d": StateRebuild.REPLAYED}
    assert list(how) == ["a", "b", "c", "d"]


class NeverSnapshotted(CaseRewind):
    """Cases "a" and "b" of tool "t", which has no snapshot: rewound to empty, its
    partition read again from offset 0."""

    async def _history(self, partitions: list[int], watch: changelog.Watch) -> None:
        changelog.apply({"t": {}}, "t", [changelog.encode("a", _record(1)),
                                         changelog.encode("b", _record(1))], watch)


class Ends(Consumer):
    def __init__(self, end: int) -> None:
        super().__init__(committed=end)
        self.end = end

    async def highwaters(self, *tps: TP) -> dict[TP, int]:
        return {tp: self.end for tp in tps}


@pytest.mark.parametrize("end", [0, 1, 2])
def test_no_rewind_removes_more_cases_than_the_re_read_can_make_again(end: int) -> None:
    """A state without the records that made it (a topic recreated under kept
    changelogs): removing "a" and "b" to read `end` records again would lose cases."""
    table = {"a": _record(1), "b": _record(1)}
    engine = Engine(EngineConfig.plain(1), {}, table, {}, {})
    consumer = Ends(end)
    asyncio.run(NeverSnapshotted(table, {}, engine.cases).before_seek(
        consumer, lambda: [(k, CaseRecord.from_dict(v)) for k, v in table.items()]))
    if end < 2:  # kept as it is: the tool is replayed from its records
        assert table == {"a": _record(1), "b": _record(1)} and consumer.at == end
    else:
        assert table == {} and consumer.at == 0
        assert engine.cases.snapshots.reread_from == {0: 0}
