"""The case agent killed between a batch's two writes: pure code.

The worker's case agent (`stream.app.case_agent`) reads the join's `cases.adjudicated`
records and hands each batch's effects to the same `stream.staging.Staging` as the
ingest agent: the table changes (case records, horizon summaries, the tools' snapshots)
sent first, the batch's records (alerts, `snapshots.published`) once those are
acknowledged. Killed between the two, the restarted worker recovers the case table from
the changelogs, rebuilds its monitor and drift banks from it (`_ensure_monitor`:
`CaseStage.rebuild`) and reads the batch's cases again from the committed offsets.

Here the join's output of a drifting simulation (the alert scenario of
`tests.test_backfill_crashes`) is read by the case stage in batches, through the
worker's staging over a log (`tests.test_worker_crash_order`), killed after the first
write of a batch that raised an alert, restarted, reading again from a batch at or
before it. The counts (the case table) and the alerts on the log are compared with those
of one uninterrupted read.

Stopped cleanly at a batch end the restart is the uninterrupted read (the first test): the
worker writes every tool's pending snapshot when it stops (`stream.app._snapshots_at_stop`,
`Engine.snapshot`), so each loads. Before that (session 14's `/tmp` restart) every
snapshot was refused ("the case table has changed since it was written"): snapshots are
throttled to one per tool per `snapshot_seconds` (60) of the batch's monotonic clock,
which stands at 0.0 here, so each tool's last was its first batch's (offset 100; 300 for
dr-screen) while the table was at offset 4,500; the running digest equalled the one
recomputed from the changelogs, so nothing else differed. A live worker's were up to a
minute old at a stop in the same way. Replayed from their case records, the tools raised
`baseline_deviation:ich-triage:5.2.1:site-c:sensitivity:30d:2026-07-10` and missed
`version_change:ich-triage:5.3.0` (`PerformanceMonitor.rebuild` is approximate: it starts
a newly assigned tool without its verdicts and episodes, so an ongoing deviation is
alerted again under another day's id, and takes every record in the table silently:
after batch 44 the table held 7 ich-triage 5.3.0 records waiting for their day's
evaluation (the monitor had seen only 5.2.1), so 5.3.0 was never a change).

Killed between the two writes (each of 3 kill points), the killed batch's alerts were
lost before session 15's `engine.case_sent`: with a snapshot every batch
(`snapshot_seconds=0`) every tool loads the snapshot of the killed batch's first write,
and the one difference was the killed batch's own alert, missing
(`baseline_deviation:ich-triage:5.2.1:all:sensitivity:30d:2026-07-08` at batch 44,
`version_change:ich-triage:5.3.0` at batch 55 with the commit 2 behind): the state that
raised it is on the log, the alert is not, and the re-read batch's cases are not newer
than the recovered records, so nothing raises it again. Now the batch's alerts and
published days are saved with its state in its first write and sent again first by the
restarted case stage (the join's remedy, `engine.join_sent`): the same alerts, every
field, at each kill point (`snapshot-every-batch`).

With the snapshots throttled (60 s, the default: `snapshots-throttled`, strict xfail) the
killed batch's snapshots are not written, every tool is refused and replayed from its
case records, and the replay still differs (measured with the saved alerts sent again,
session 15): killed at batch 44, `version_change:ich-triage:5.3.0` missing and
`baseline_deviation:ich-triage:5.2.1:site-c:sensitivity:30d:2026-07-10` extra; at 55
(commit 2 behind) `...:site-c:sensitivity:30d:2026-07-12` extra (the batch's own
`version_change`, lost before, is now sent again); at 69 (commit 1 behind)
`...:5.2.1:site-c:sensitivity:30d:2026-07-15` and `...:5.3.0:all:sensitivity:30d:2026-07-15`
extra. Counts are equal at each. What differs is `PerformanceMonitor.rebuild` (above),
not a lost write. The replayed tools also skipped a day of published figures each
(measured in session 17, now asserted too): a replayed tool's evaluation went on from the
latest case day its records held (the windows cannot be read before it), past the day it
was to evaluate next: killed at batch 44, dr-screen's 07-08 and the triage tools' 07-09
were never published; at 55, 07-10 and 07-11; at 69, 07-14 (three tools).

Now a replayed tool whose refused snapshot says which day it was to evaluate next (none
yet: its first case day) goes on from that day: the monitor takes at the rebuild only the
records in effect before it, the rest wait for their days' evaluations, as the case
revisions did (`engine.evaluation.DailyEvaluation.defer`). Every day is published at
each kill point, and the alerts are the uninterrupted ones at 55 and 69 (the xfails
pass); at 44 one field differs, `version_change:ich-triage:5.3.0`'s raised_at: the
uninterrupted worker read the version's 00:13 case after that day's evaluation and took
a 01:34 case first, which no stored record can tell (strict xfail).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from datetime import datetime
from typing import Any

import msgspec
import pytest
from faust.types import TP

from surveillance.bulk import changelog
from surveillance.engine.cases import CaseStage
from surveillance.engine.config import EngineConfig
from surveillance.engine.horizon import case_records
from surveillance.engine.pipeline import CASE_SNAPSHOTS, CASE_TABLE
from surveillance.engine.records import Record
from surveillance.observe.metric_labels import StateRebuild
from surveillance.stream.case_rewind import CaseRewind
from surveillance.stream.outbox import Sendable
from surveillance.stream.topics import ALERTS, CASES_ADJUDICATED, SNAPSHOTS
from tests.test_backfill_crashes import stream
from tests.test_case_rewind import OnFaustThread
from tests.test_worker_crash_order import (
    CHANGELOGS,
    TABLES,
    Killed,
    LogOutbox,
    Worker,
    _recovered,
    read_until_killed,
)

CASE_BATCH = 100


def _cases() -> tuple[EngineConfig, list[Record], datetime]:
    """The `cases.adjudicated` records one uninterrupted join makes of the stream, as the
    case agent reads them (one partition), and the wall time they are read at."""
    config = EngineConfig.plain(1)
    events, _ = stream()
    offsets: dict[str, int] = {}
    inputs = []
    for e in sorted(events, key=lambda e: e.arrival):
        offsets[e.topic] = offsets.get(e.topic, -1) + 1
        inputs.append(Record(e.topic, 0, offsets[e.topic], e.key, e.value))
    now = max(e.arrival for e in events)
    log: list[Sendable] = []
    join = Worker(config, {n: {} for n in TABLES}, LogOutbox(log))
    join.engine.join.keep_sent = True
    asyncio.run(join.read(inputs, now))
    cases = [r for r in log if r.topic == CASES_ADJUDICATED]
    return config, [Record(CASES_ADJUDICATED, 0, i, r.key, r.value,
                           list((r.headers or {}).items())) for i, r in enumerate(cases)], now


class CaseWorker(Worker):
    """The case agent: the worker's staging over the case stage, in batches."""

    def __init__(self, config: EngineConfig, tables: dict[str, dict[str, Any]],
                 outbox: LogOutbox) -> None:
        super().__init__(config, tables, outbox)
        self.engine.cases.keep_sent = True  # as the worker's (`stream.app`)

    async def read(self, records: list[Record], now: datetime) -> None:
        for start in range(0, len(records), CASE_BATCH):
            out = self.engine.process(records[start:start + CASE_BATCH], now, 0.0)
            await self.staging.apply(out)


def _alerts(log: list[Sendable]) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for r in log:
        if r.topic == ALERTS:
            alert = msgspec.json.decode(r.value or b"")
            out.setdefault(alert["alert_id"], alert)
    return out


def _published(log: list[Sendable]) -> set[tuple[str, str]]:
    """(tool, day) of every day's figures on the log (`snapshots.published`)."""
    out = set()
    for r in log:
        if r.topic == SNAPSHOTS:
            batch = msgspec.json.decode(r.value or b"")
            out.add((batch["tool_id"], batch["at"][:10]))
    return out


def _counts(log: list[Sendable]) -> dict[str, Counter[str]]:
    """Per tool the outcome counts of the case table the log's changelogs recover."""
    counts: dict[str, Counter[str]] = {}
    for _, record in case_records(_recovered(log)[CASE_TABLE].items(), {0}):
        counts.setdefault(record.tool, Counter())[record.outcome] += 1
    return counts


def _stop(worker: CaseWorker) -> None:
    """The worker stopped cleanly (`stream.app._snapshots_at_stop`): every tool's pending
    snapshot written."""
    asyncio.run(worker.staging.apply(worker.engine.snapshot()))


def _snapshots(log: list[Sendable]) -> dict[str, dict[str, object]]:
    """Per tool, the snapshot the log's changelogs recover, but its write's offset."""
    return {tool: {k: v for k, v in saved.items() if k != "offset"}
            for tool, saved in _recovered(log)[CASE_SNAPSHOTS].items()}


def _restarted(config: EngineConfig, log: list[Sendable]) -> CaseWorker:
    """A case agent started on the tables the log's changelogs recover, its case stage
    rebuilt (as `stream.app._ensure_monitor`)."""
    tables = _recovered(log)
    restarted = CaseWorker(config, tables, LogOutbox(log))
    restarted.engine.cases.rebuild(
        case_records(tables[CASE_TABLE].items(), {0}), {0},
        full=lambda tools: [(k, r) for k, r in case_records(tables[CASE_TABLE].items(), {0})
                            if r.tool in tools])
    return restarted


class LogConsumer(OnFaustThread):
    """What the worker's rewind asks of Faust's consumer (`CaseRewind.before_seek`), over
    `cases.adjudicated` partition 0: its committed offset (moved by `_commit`), start and
    end."""

    def __init__(self, committed: int, end: int) -> None:
        self.tp = TP(CASES_ADJUDICATED, 0)
        self.at = committed  # the group's committed offset
        self.end = end

    def assignment(self) -> set[TP]:
        return {self.tp}

    async def highwaters(self, *tps: TP) -> dict[TP, int]:
        return {tp: self.end for tp in tps}

    async def earliest_offsets(self, *tps: TP) -> dict[TP, int]:
        return {tp: 0 for tp in tps}

    async def _commit(self, offsets: dict[TP, int]) -> bool:
        self.at = offsets[self.tp]
        return True


class LogRewind(CaseRewind):
    """The worker's rewind, its case-table changelog read from the log."""

    def __init__(self, log: list[Sendable], tables: dict[str, dict[str, Any]],
                 cases: CaseStage) -> None:
        super().__init__(tables[CASE_TABLE], tables[CASE_SNAPSHOTS], cases)
        self.log = log

    async def _history(self, partitions: list[int], watch: changelog.Watch) -> None:
        assert partitions == [0]
        changelog.apply({CASE_TABLE: {}}, CASE_TABLE, [
            (r.key, r.value) for r in self.log if r.topic == CHANGELOGS[CASE_TABLE]], watch)


def _rewound(config: EngineConfig, log: list[Sendable], committed: int, end: int
             ) -> tuple[CaseWorker, int, dict[str, StateRebuild]]:
    """A case agent restarted after a kill with the worker's rewind
    (`SURVEILLANCE_STREAM__CASE_REWIND`): the tables recovered from the log's changelogs;
    the rewind (`stream.case_rewind`) before the seek, the partition's commit `committed`
    and end `end`; the case stage rebuilt (as `stream.app._ensure_monitor`). And the offset
    it reads from: the committed one after the rewind (Faust seeks there), and how each
    tool was rebuilt (`surveillance_tool_state_rebuilds`)."""
    tables = _recovered(log)
    restarted = CaseWorker(config, tables, LogOutbox(log))
    consumer = LogConsumer(committed, end)
    rewind = LogRewind(log, tables, restarted.engine.cases)
    asyncio.run(rewind.before_seek(
        consumer, lambda: case_records(tables[CASE_TABLE].items(), {0})))
    restarted.engine.cases.rebuild(
        case_records(tables[CASE_TABLE].items(), {0}), {0},
        full=lambda tools: [(k, r) for k, r in case_records(tables[CASE_TABLE].items(), {0})
                            if r.tool in tools])
    return restarted, consumer.at, rewind.how_rebuilt()


@pytest.fixture(scope="module")
def joined() -> tuple[EngineConfig, list[Record], datetime]:
    return _cases()


@pytest.fixture(scope="module", params=[0.0, 60.0], ids=["snapshot-every-batch",
                                                         "snapshots-throttled"])
def uninterrupted(joined: tuple[EngineConfig, list[Record], datetime],
                  request: pytest.FixtureRequest
                  ) -> tuple[EngineConfig, list[Record], datetime, list[Sendable], list[int]]:
    """The case records, one uninterrupted case agent's log (stopped cleanly at the end),
    and the batches that raised an alert; with a snapshot every batch
    (`snapshot_seconds` 0) or the default throttling (60 s)."""
    config, cases, now = joined
    config = replace(config, snapshot_seconds=request.param)
    log: list[Sendable] = []
    outbox = LogOutbox(log)
    worker = CaseWorker(config, {n: {} for n in TABLES}, outbox)
    alerting = []
    for batch in range(0, (len(cases) + CASE_BATCH - 1) // CASE_BATCH):
        before = len(_alerts(log))
        asyncio.run(worker.read(cases[batch * CASE_BATCH:(batch + 1) * CASE_BATCH], now))
        if len(_alerts(log)) > before:
            alerting.append(batch)
    _stop(worker)
    return config, cases, now, log, alerting


@pytest.mark.parametrize("which", [0, -1])
def test_a_case_agent_stopped_at_a_batch_end_loads_its_snapshots_and_alerts_the_same(
        uninterrupted: tuple[EngineConfig, list[Record], datetime, list[Sendable], list[int]],
        which: int) -> None:
    """Stopped cleanly at the end of an alerting batch (`which` of them), every write
    made, restarted, reading on from the next batch: every tool loaded from its snapshot
    (none replayed), and the same counts, alerts (every field) and final snapshots as the
    uninterrupted case agent."""
    config, cases, now, whole, alerting = uninterrupted
    stopped = alerting[which] + 1
    log: list[Sendable] = []
    worker = CaseWorker(config, {n: {} for n in TABLES}, LogOutbox(log))
    asyncio.run(worker.read(cases[:stopped * CASE_BATCH], now))
    _stop(worker)
    restarted = _restarted(config, log)
    assert restarted.engine.cases.restored == sorted(_counts(log))
    asyncio.run(restarted.read(cases[stopped * CASE_BATCH:], now))
    _stop(restarted)
    assert _counts(log) == _counts(whole)
    assert _alerts(log) == _alerts(whole)
    assert _snapshots(log) == _snapshots(whole)


@pytest.mark.parametrize(("behind", "which"), [(0, 0), (2, 1), (1, -1)])
def test_a_case_agent_killed_between_its_writes_loses_no_alert(
        uninterrupted: tuple[EngineConfig, list[Record], datetime, list[Sendable], list[int]],
        behind: int, which: int, request: pytest.FixtureRequest) -> None:
    """Killed after the changelog write of an alerting batch (`which` of them), its
    commit `behind` batches back: the same counts, the same alerts (every field) and the
    same days' figures published as by the uninterrupted case agent. The batch's alerts
    were saved with its state and are sent again first (`engine.case_sent`). Restarted
    without the rewind (the test below has it): with throttled snapshots, the replay."""
    config, cases, now, whole, alerting = uninterrupted
    if config.snapshot_seconds > 0 and (behind, which) == (0, 0):
        request.applymarker(pytest.mark.xfail(strict=True, reason=(
            "without the rewind (off, or its fallback) throttled snapshots leave every "
            "tool to be replayed from its case records; "
            "replayed from the day its snapshot was to evaluate next, the alerts are the "
            "same but for version_change:ich-triage:5.3.0's raised_at (00:13:35 against "
            "01:34:22): a record holds no read time, and the uninterrupted worker read "
            "the 00:13 case after that day's evaluation")))
    assert len(alerting) >= 3
    killed = alerting[which]
    log: list[Sendable] = []
    outbox = LogOutbox(log)
    worker = CaseWorker(config, {n: {} for n in TABLES}, outbox)
    read_until_killed(worker, outbox, cases, CASE_BATCH, killed, now)
    tables = _recovered(log)
    restarted = CaseWorker(config, tables, LogOutbox(log))
    restarted.engine.cases.rebuild(  # as `stream.app._ensure_monitor`
        case_records(tables[CASE_TABLE].items(), {0}), {0},
        full=lambda tools: [(k, r) for k, r in case_records(tables[CASE_TABLE].items(), {0})
                            if r.tool in tools])
    asyncio.run(restarted.read(cases[max(0, killed - behind) * CASE_BATCH:], now))
    _stop(restarted)
    assert _counts(log) == _counts(whole)
    assert sorted(_published(whole) - _published(log)) == []
    assert _alerts(log) == _alerts(whole)


@pytest.mark.parametrize("uninterrupted", [60.0], indirect=True, ids=["snapshots-throttled"])
@pytest.mark.parametrize(("behind", "which"), [(0, 0), (2, 1), (1, -1)])
def test_a_case_agent_killed_between_its_writes_rewinds_and_loses_nothing(
        uninterrupted: tuple[EngineConfig, list[Record], datetime, list[Sendable], list[int]],
        behind: int, which: int) -> None:
    """The test above with throttled snapshots, restarted with the worker's rewind (on by
    default, `stream.case_rewind`): the case table put back to the tools' snapshots, the
    partition committed back to their offset (here 100, each tool's first snapshot's) and
    read again from there; every tool loads its snapshot (none replayed), and the counts,
    alerts (every field) and published days are the uninterrupted ones at each kill point."""
    config, cases, now, whole, alerting = uninterrupted
    assert config.snapshot_seconds > 0 and len(alerting) >= 3
    killed = alerting[which]
    log: list[Sendable] = []
    outbox = LogOutbox(log)
    worker = CaseWorker(config, {n: {} for n in TABLES}, outbox)
    read_until_killed(worker, outbox, cases, CASE_BATCH, killed, now)
    restarted, start, how = _rewound(config, log, max(0, killed - behind) * CASE_BATCH,
                                     len(cases))
    assert start < max(0, killed - behind) * CASE_BATCH  # read again from a snapshot
    assert restarted.engine.cases.restored == sorted(_counts(log))  # none replayed
    # Told so: the tools whose snapshots the killed batch left behind rewound, the rest
    # loaded as written.
    assert sorted(how) == sorted(_counts(log)) and StateRebuild.REWOUND in how.values()
    assert StateRebuild.REPLAYED not in how.values()
    asyncio.run(restarted.read(cases[start:], now))
    _stop(restarted)
    assert _counts(log) == _counts(whole)
    assert sorted(_published(whole) - _published(log)) == []
    assert _alerts(log) == _alerts(whole)


@pytest.mark.parametrize("uninterrupted", [60.0], indirect=True, ids=["snapshots-throttled"])
def test_a_replayed_tools_deferred_revisions_are_in_its_snapshot(
        uninterrupted: tuple[EngineConfig, list[Record], datetime, list[Sendable], list[int]],
        ) -> None:
    """A tool replayed after a kill keeps its records in effect from its refused
    snapshot's day waiting (`DailyEvaluation.defer`); a snapshot written meanwhile holds
    them, and a worker loading it waits for the same ones."""
    config, cases, now, _, alerting = uninterrupted
    log: list[Sendable] = []
    outbox = LogOutbox(log)
    worker = CaseWorker(config, {n: {} for n in TABLES}, outbox)
    read_until_killed(worker, outbox, cases, CASE_BATCH, alerting[0], now)
    restarted = _restarted(config, log)
    deferred = restarted.engine.cases.evaluation.deferred
    assert restarted.engine.cases.restored == [] and len(deferred) == 4
    _stop(restarted)  # every tool's snapshot written, its deferred revisions with it
    loaded = _restarted(config, log)
    assert loaded.engine.cases.restored == sorted(deferred)
    assert loaded.engine.cases.evaluation.deferred == deferred


# With throttled snapshots the killed worker's tools are replayed (the test above), so
# this one runs with a snapshot every batch only.
@pytest.mark.parametrize("uninterrupted", [0.0], indirect=True, ids=["snapshot-every-batch"])
def test_a_case_agent_killed_again_before_it_sent_the_saved_alerts_loses_none(
        uninterrupted: tuple[EngineConfig, list[Record], datetime, list[Sendable], list[int]],
        ) -> None:
    """Killed after the first write of the first alerting batch, restarted, and killed
    again after the first write of its first batch (the saved alerts, sent again in its
    second write, never sent): the saved alerts were saved again in that first write, so
    the third worker sends them, and the alerts are the uninterrupted case agent's."""
    config, cases, now, whole, alerting = uninterrupted
    assert config.snapshot_seconds == 0
    killed = alerting[0]
    log: list[Sendable] = []
    outbox = LogOutbox(log)
    read_until_killed(CaseWorker(config, {n: {} for n in TABLES}, outbox), outbox, cases,
                      CASE_BATCH, killed, now)
    again = LogOutbox(log, kill_at=1)
    second = CaseWorker(config, _recovered(log), again)
    second.engine.cases.rebuild(
        case_records(second.tables[CASE_TABLE].items(), {0}), {0})
    assert second.engine.cases.again  # what it sends first
    with pytest.raises(Killed):
        asyncio.run(second.read(cases[killed * CASE_BATCH:(killed + 1) * CASE_BATCH], now))
    assert _alerts(log) != _alerts(whole)  # the killed batch's alert is still not sent
    third = _restarted(config, log)
    asyncio.run(third.read(cases[killed * CASE_BATCH:], now))
    assert _counts(log) == _counts(whole)
    assert _alerts(log) == _alerts(whole)
