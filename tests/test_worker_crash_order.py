"""A worker killed between a batch's two sends loses no case revision: pure code.

The worker hands each batch's effects to `stream.staging.Staging`, which writes the table
changes to the stores and sends the changelog records and the batch's records through
`stream.outbox.Outbox.send` as two writes, the second only once the first is
acknowledged. A SIGKILL between the two leaves the first on the log and not the second;
the batch's events are not acknowledged, so the restarted worker recovers its tables from
the changelogs and reads the batch again from the committed offsets.

Here the worker's own `Staging` and `Outbox.send` run over the engine; only the broker
write (`Outbox._write`) is replaced by a list (the log) and a kill after the batch's first
write. The restart folds the changelog records of the log into fresh tables (as Faust's
recovery does: the last record per key) and reads the inputs again from a committed
point at or before the killed batch; the case stage is modelled by what the ledger takes
(each case's revisions newer than the last it took, `clinical.ledger.CaseLedger.apply`).

Changelogs first (the worker's order, `stream.outbox`), without more, the killed batch's
state is on the log and its records are not: the re-read finds every input of the batch
in the join state and re-emits each case as it stands, so a revision the batch made and
superseded (a case labelled, then relabelled by a correction) never reaches the case
stage. Swapping the two writes alone is no fix live: the first read took the inputs as
they arrived, the re-read takes the uncommitted ones in event time (`InputOrder`), the
join numbers a case's revisions otherwise, and the case stage keeps a revision the join
has superseded (2 to 13 cases at each of 56 kill points swept).

The worker saves each batch's cases per join partition with the batch's state, in the
same changelog write (`engine.join_sent`), and a worker assigned the partition sends them
again before anything else of it: every test here passes so (8 fixed kill points, a
seeded sweep over others, some killed twice), and fails without it (`keep_sent` off: the
first 8 kill points and 7 of the first 8 draws of the sweep).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import pytest

from surveillance.bulk import changelog
from surveillance.bulk.order import EventTimeMerge
from surveillance.contracts.wire import AdjudicatedCase
from surveillance.engine import join_sent
from surveillance.engine.config import EngineConfig
from surveillance.engine.pipeline import (
    ADVERSE_TABLE,
    CASE_SNAPSHOTS,
    CASE_TABLE,
    JOIN_TABLE,
    Engine,
)
from surveillance.engine.records import Produce, Record
from surveillance.simulate import Faults, simulate
from surveillance.stream import internal
from surveillance.stream.ingest import Rejected
from surveillance.stream.input_order import InputOrder
from surveillance.stream.outbox import Outbox, Sendable
from surveillance.stream.staging import Staging
from surveillance.stream.topics import AI_RESULTS, CASES_ADJUDICATED, REPORTS_FINAL

APP = "crash-order"
TABLES = (JOIN_TABLE, CASE_TABLE, ADVERSE_TABLE, CASE_SNAPSHOTS)
CHANGELOGS = {name: changelog.topic(APP, name) for name in TABLES}
BATCH = 50


class Killed(Exception):
    """The worker died here (SIGKILL): nothing after this write reaches the broker."""


class LogOutbox(Outbox):
    """The worker's outbox (`send`: its order) with the broker replaced by `log`; the
    write numbered `kill_at` is not made and the worker dies."""

    def __init__(self, log: list[Sendable], kill_at: int | None = None) -> None:
        super().__init__({})
        self.log = log
        self.kill_at = kill_at
        self.writes = 0

    async def start(self) -> Outbox:
        self._producer = object()
        return self

    async def stop(self) -> None:
        self._producer = None

    async def _write(self, producer: Any, records: Iterable[Sendable]
                     ) -> dict[tuple[str, int], int]:
        records = list(records)
        if not records:
            return {}
        if self.writes == self.kill_at:
            raise Killed
        self.writes += 1
        self.log.extend(records)
        return {}


def _arrived(seed: int = 3, faults: Faults | None = None) -> tuple[list[Record], datetime]:
    """A join partition's input records as the source systems sent them (each topic's
    offsets in arrival order), corrections included; and the wall time the backlog is
    read at (once every one has arrived)."""
    events, _ = simulate(days=6, seed=seed, faults=faults or Faults(correction_rate=0.2))
    offsets: dict[str, int] = {}
    records = []
    for e in sorted(events, key=lambda e: e.arrival):
        offsets[e.topic] = offsets.get(e.topic, -1) + 1
        records.append(Record(e.topic, 0, offsets[e.topic], e.key, e.value))
    return records, max(e.arrival for e in events)


def _backlog() -> tuple[list[Record], datetime]:
    """`_arrived` in the order the worker's `InputOrder` takes a backlog (its
    `EventTimeMerge`, every partition read to its end): the first 1,200."""
    records, now = _arrived()
    merge = EventTimeMerge((AI_RESULTS, REPORTS_FINAL))
    merge.add(records)
    return merge.release(())[:1200], now


class Worker:
    """The engine's join and the worker's staging over `tables` (the stores)."""

    def __init__(self, config: EngineConfig, tables: dict[str, dict[str, Any]],
                 outbox: LogOutbox) -> None:
        self.tables = tables
        self.engine = Engine(config, *(tables[n] for n in TABLES))
        self.engine.join.keep_sent = True  # as the worker's (`stream.app`)
        self.staging = Staging(tables, CHANGELOGS, outbox)

    async def read(self, records: list[Record], now: datetime) -> None:
        for start in range(0, len(records), BATCH):
            out = self.engine.process(records[start:start + BATCH], now, 0.0)
            await self.staging.apply(out)


def _recovered(log: list[Sendable]) -> dict[str, dict[str, Any]]:
    """The tables as Faust recovers them from the changelog records on the log."""
    tables: dict[str, dict[str, Any]] = {name: {} for name in TABLES}
    for name, topic in CHANGELOGS.items():
        changelog.apply(tables, name, [(r.key, r.value) for r in log if r.topic == topic])
    return tables


def _accepted(config: EngineConfig, log: list[Sendable], now: datetime
              ) -> list[tuple[str, int, AdjudicatedCase, datetime]]:
    """What the case stage takes of the `cases.adjudicated` records on the log, in order:
    each case's revisions newer than the last it took."""
    last: dict[str, int] = {}
    out = []
    for r in log:
        if r.topic != CASES_ADJUDICATED:
            continue
        read = internal.read_case(r.value, list((r.headers or {}).items()),
                                  config.partitions, now, config.dates)
        assert not isinstance(read, Rejected), read
        case = read[0]
        if case.revision > last.get(case.case_id, -1):
            last[case.case_id] = case.revision
            out.append((case.case_id, case.revision, case, read[2]))
    return out


def _restart_order(backlog: list[Record]) -> list[Record]:
    """`backlog` in the order the restarted worker's `InputOrder` takes it (every input
    partition read to its end)."""
    order = InputOrder((AI_RESULTS, REPORTS_FINAL))
    order.add(((r, r) for r in backlog), 0.0)
    return [r for r, _ in order.release((), 0.0)]


def read_until_killed(worker: Worker, outbox: LogOutbox, records: list[Record], batch: int,
                      killed: int, now: datetime) -> None:
    """`worker` reads `records` in batches of `batch`, killed in batch `killed`: its first
    write made, then killed."""
    asyncio.run(worker.read(records[:killed * batch], now))
    outbox.kill_at = outbox.writes + 1
    with pytest.raises(Killed):
        asyncio.run(worker.read(records[killed * batch:(killed + 1) * batch], now))


def _crashed(config: EngineConfig, first: list[Record], again: list[Record],
             killed: int, now: datetime) -> list[Sendable]:
    """The log of a worker that reads `first` in batches and is killed after the first
    write of batch `killed` (its events never acknowledged), restarted from the
    changelogs on the log, and then reads `again` (from its committed offsets on)."""
    log: list[Sendable] = []
    outbox = LogOutbox(log)
    worker = Worker(config, {n: {} for n in TABLES}, outbox)
    read_until_killed(worker, outbox, first, BATCH, killed, now)
    restarted = Worker(config, _recovered(log), LogOutbox(log))
    asyncio.run(restarted.read(again, now))
    return log


def _uninterrupted(config: EngineConfig, records: list[Record], now: datetime
                   ) -> list[tuple[str, int, AdjudicatedCase, datetime]]:
    whole: list[Sendable] = []
    asyncio.run(Worker(config, {n: {} for n in TABLES}, LogOutbox(whole)).read(records, now))
    return _accepted(config, whole, now)


#: (batch committed, batch killed): Faust commits the acknowledged offsets on a timer, so
#: the commit can be batches behind the kill.
KILLS = [(10, 11), (9, 12), (4, 16), (20, 23)]


@pytest.mark.parametrize(("committed", "killed"), KILLS)
def test_a_worker_killed_reading_a_backlog_loses_no_revision(
        committed: int, killed: int) -> None:
    """A worker reading a backlog (both reads in `InputOrder`'s event-time order), killed
    between the two writes of batch `killed`, restarted, reading again from batch
    `committed`: the case stage takes, case by case, the revisions (content and stamp)
    it takes of one uninterrupted read: the killed batch's cases, saved with its state,
    are sent again first, and the re-read re-emits the cases of the inputs the state
    holds as they stand (dropped as not newer)."""
    config = EngineConfig.plain(1)
    records, now = _backlog()
    log = _crashed(config, records, records[committed * BATCH:], killed, now)
    assert _accepted(config, log, now) == _uninterrupted(config, records, now)


@pytest.mark.parametrize(("committed", "killed"), KILLS)
def test_a_live_worker_killed_loses_no_revision(committed: int, killed: int) -> None:
    """Live: the worker first reads the inputs as they arrive; killed between the two
    writes of batch `killed`, restarted at once, it reads the backlog of uncommitted
    inputs (from batch `committed` to the end of the batch it had processed after the
    killed one, whose sends waited) through its `InputOrder`, then the rest live as it
    arrives. The case stage takes, case by case, the revisions it takes of one
    uninterrupted read of the same inputs: as they arrived up to the killed batch's end,
    then the next batch as the restart reads it (nothing of it had been sent), then the
    rest as they arrive. The uncommitted inputs the state holds are read again in
    another order than the first read's, but only re-emit their cases as they stand."""
    config = EngineConfig.plain(1)
    records, now = _arrived()
    records = records[:1500]
    end, waiting = (killed + 1) * BATCH, (killed + 2) * BATCH
    again = _restart_order(records[committed * BATCH:waiting]) + records[waiting:]
    log = _crashed(config, records, again, killed, now)
    read = records[:end] + _restart_order(records[end:waiting]) + records[waiting:]
    assert _accepted(config, log, now) == _uninterrupted(config, read, now)


def _crashed_twice(config: EngineConfig, first: list[Record], again: list[Record],
                   killed: int, killed_again: int, committed_again: int, now: datetime
                   ) -> list[Sendable]:
    """`_crashed`, and the restarted worker killed too, after the first write of its own
    batch `killed_again` (0: the one that sends the saved cases again), restarted from
    the log, reading `again` once more from its batch `committed_again` (<= that)."""
    log: list[Sendable] = []
    outbox = LogOutbox(log)
    worker = Worker(config, {n: {} for n in TABLES}, outbox)
    read_until_killed(worker, outbox, first, BATCH, killed, now)
    outbox = LogOutbox(log)
    restarted = Worker(config, _recovered(log), outbox)
    read_until_killed(restarted, outbox, again, BATCH, killed_again, now)
    last = Worker(config, _recovered(log), LogOutbox(log))
    asyncio.run(last.read(again[committed_again * BATCH:], now))
    return log


@pytest.mark.parametrize("draw", range(12))
def test_a_worker_killed_at_random_points_loses_no_revision(draw: int) -> None:
    """A seeded sweep: simulations with many corrections and addenda (and duplicates and
    invalid events), a worker reading live or a backlog, killed between the two writes
    of a random batch, its commit a random number of batches behind; every third draw
    the restarted worker is killed again (while it sends the saved cases again, or
    later) and restarted once more. The case stage takes, case by case, the revisions of
    one uninterrupted read (as in the tests above)."""
    rng = random.Random(1_000 + draw)
    faults = Faults(correction_rate=rng.choice((0.2, 0.4)), duplicate_rate=0.05,
                    invalid_rate=0.02)
    config = EngineConfig.plain(1)
    records, now = _arrived(seed=rng.randrange(1, 50), faults=faults)
    records = records[:1500]
    killed = rng.randrange(1, len(records) // BATCH - 3)
    committed = rng.randrange(max(0, killed - 6), killed + 1)
    if draw % 2:  # a backlog: both reads in event time
        records = _restart_order(records)
        again = records[committed * BATCH:]
        read = records
    else:  # live: as it arrives; the restart reads its uncommitted inputs in event time
        end, waiting = (killed + 1) * BATCH, (killed + 2) * BATCH
        again = _restart_order(records[committed * BATCH:waiting]) + records[waiting:]
        read = records[:end] + _restart_order(records[end:waiting]) + records[waiting:]
    if draw % 3:
        log = _crashed(config, records, again, killed, now)
    else:
        killed_again = rng.randrange(0, 3)
        log = _crashed_twice(config, records, again, killed, killed_again,
                             rng.randrange(0, killed_again + 1), now)
    accepted = _accepted(config, log, now)
    assert accepted == _uninterrupted(config, read, now)
    assert any(revision > 1 for _, revision, _, _ in accepted)  # corrections relabelled


def test_a_large_batch_s_cases_are_saved_in_parts_and_read_back_whole() -> None:
    """Over `PART_BYTES` of cases go in several changelog records, each under the
    broker's record limit; read back, they are the cases as sent, in order."""
    cases = [Produce(CASES_ADJUDICATED, b"tool", b'{"case": %d, "x": "%s"}' % (i, b"y" * 900),
                     headers={"h": str(i).encode()}) for i in range(1000)]
    saved = join_sent.records(3, cases, {"at": None})
    assert len(saved) > 3
    assert all(len(changelog.encode(k, v)[1] or b"") < 1_000_000 for k, v in saved)
    backing = {"~sent:3/9": {"cases": [["stale", "{}", {}]]}, **dict(saved)}
    read = join_sent.saved(backing, 3)
    assert read is not None
    assert read[0] == cases
    assert read[1] == {"at": None}
    assert join_sent.saved({}, 3) is None
