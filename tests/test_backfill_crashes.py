"""A backfill killed again and again, then a Faust worker: the same as one uninterrupted run.

Two runs of the same 21-day faulty stream (duplicates, invalid events, corrections; a
sensitivity drop, a model update, a new scanner software and an outage, so the monitor
raises alerts and the daily evaluation writes snapshots), each on its own embedded broker
and its own PostgreSQL database. Two thirds of the stream are a backlog that
`surveillance backfill` (a child process, as an operator runs it) replays; then the live
third is sent and a Faust worker (`stream.runner.WorkerProcess`) takes over: it recovers
the backfill's tables and offsets and counts the live third from there, read in event
time (`stream.input_order`). Finally the store writer stores every case, alert and
snapshot in the run's database.

- reference: the backfill runs once, to the end;
- crashed: the runner dies after its second batch's outputs are acknowledged but before
  its commit (`--crash-point flushed`), then, restarted, right after a commit
  (`committed`), then it is SIGKILLed at random moments (`KILLS` times, each once a
  random number of records has been written since its start, so anywhere in a batch:
  during the engine, between the sends of its outputs and changelog, before or after the
  commit), and finally restarted to the end.

The counts and every stored case, AI result, event id and model version must be those of
the reference run (first test; what may differ between any two runs is said there, and
at `NOT_OUTCOMES`). So must which alerts fire, which metric snapshot figures are published
on which days, and the cases' outcomes (second test); and so must the alerts' contents and
the figures' values (third test, which says what makes them equal). The kill points come
from a seed printed at the start; `BACKFILL_CRASH_SEED=<seed>` replays the same ones (a kill
lands once a number of records is written, so the moment within the processes' work
still varies).

Long: 160 s of wall time on a lightly loaded 2-core machine, 240 s at load 14 (the two
runs side by side; two brokers, seven runner processes, two workers, two store writers).
It covers what the earlier `test_backfill_runner.py` did (the two chosen crash points, the
worker recovering without re-reading: it reads the live third only, exact counts), which
it replaces.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from psycopg.rows import dict_row

from surveillance.demo import read_alerts
from surveillance.embedded import EmbeddedBroker, EmbeddedPostgres
from surveillance.embedded.log_end import probe_log_end
from surveillance.simulate import Faults, Scenario, SimEvent, ToolTruth, simulate
from surveillance.store.migrate import migrate
from surveillance.store.writer import WriterSettings, WriterTopics, run_writer
from surveillance.stream import topics
from surveillance.stream.runner import WorkerProcess, wait_for_counts
from tests.test_pipeline_integration import (
    PARTITIONS,
    assert_exact,
    assert_no_crash,
    expected_counts,
    metric_samples,
    send,
)

pytestmark = pytest.mark.integration

APP = "surveillance"
#: `BACKFILL_CRASH_KILLS=<n>` kills more often (each kill correspondingly sooner): a search
#: for a rare kill point, as `BACKFILL_CRASH_SEED` replays one.
KILLS = int(os.environ.get("BACKFILL_CRASH_KILLS") or 3)
RUNNER_ARGS = ("--idle-seconds", "3", "--max-records", "500")
#: What the runner writes while it works: a kill is placed by how much of it is on the log.
WRITTEN = (topics.CASES_JOIN, topics.CASES_ADJUDICATED,
           *(topics.changelog(APP, t) for t in topics.TABLES))
STORED = WriterTopics()
#: Every table the store writer fills, with the columns compared (None: all of them but
#: the time a row was stored; a reject is known by its source offset, which differs
#: between runs whose topics hold different duplicates, so only its topic and reason).
TABLES: dict[str, str | None] = {
    "cases": None, "ai_results": None, "ai_event_ids": None, "model_versions": None,
    "metric_snapshots": None, "alerts": None, "adverse_events": None,
    "store_rejects": "topic, reason",
}
UNSTORED_COLUMNS = {"stored_at", "rejected_at"}
#: The `cases` columns that are not outcomes: which of the join's revisions of a case came
#: last and from which report. Every other column (the outcome, the label, the AI result,
#: tool, version, site, scanner, dates) is an outcome and must be equal. A case's revision
#: counts the changes the join saw: its AI result read before its report (pending, then
#: labelled: two) or after it (labelled at once: one); a correction that keeps the label
#: is no change, so the case keeps the report (and its time and status) it was labelled by
#: first. Kafka orders no two topics, so these differ between any two runs, two
#: uninterrupted ones included (487 revisions in one such comparison); the first test
#: checks that such a report is one of the same study's.
NOT_OUTCOMES = ("revision", "report_event_id", "labelled_at", "label_status")


@dataclass
class Outcome:
    counts: dict[str, dict[str, int]]
    alerts: dict[str, dict[str, Any]]  # alert id -> the alert, every field
    rows: dict[str, list[dict[str, Any]]]  # table -> its rows, by column
    written: int  # records the backfill(s) wrote to internal topics and changelogs


def inputs_processed(worker: WorkerProcess) -> float:
    samples = metric_samples(worker, "surveillance_events_processed_total")
    return sum(v for labels, v in samples.items()
               if dict(labels).get("topic") in (topics.AI_RESULTS, topics.REPORTS_FINAL))


def stream() -> tuple[list[SimEvent], dict[str, ToolTruth]]:
    return simulate(
        days=21, seed=5,
        scenario=Scenario(model_update_day=8, sensitivity_drop_day=2, drop_tool="ich-triage",
                          drop_to=0.5, new_scanner_software_day=10, outage_day=5),
        faults=Faults(duplicate_rate=0.02, invalid_rate=0.01, correction_rate=0.01),
    )


@contextmanager
def database(postgres: EmbeddedPostgres) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres.admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        url = f"postgresql://postgres@127.0.0.1:{postgres.port}/{name}"
        migrate(url)
        yield url
    finally:
        with psycopg.connect(postgres.admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def _ends(bootstrap: str, names: tuple[str, ...]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in names for p in range(PARTITIONS)]
        # The embedded broker reports the base offset of a partition's last batch.
        return await probe_log_end(bootstrap, await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


def written(bootstrap: str) -> int:
    return sum(asyncio.run(_ends(bootstrap, WRITTEN)).values())


def quiet(bootstrap: str, names: tuple[str, ...], seconds: float, timeout: float) -> None:
    """Wait until nothing more is written to `names` for `seconds`."""
    deadline = time.monotonic() + timeout
    last, since = asyncio.run(_ends(bootstrap, names)), time.monotonic()
    while time.monotonic() - since < seconds:
        assert time.monotonic() < deadline, f"{names} still written to after {timeout} s"
        time.sleep(0.5)
        now = asyncio.run(_ends(bootstrap, names))
        if now != last:
            last, since = now, time.monotonic()


def backfill(broker: EmbeddedBroker, tmp_path: Path, *args: str) -> WorkerProcess:
    runner = WorkerProcess(broker.bootstrap, tmp_path, command="backfill",
                           args=(*RUNNER_ARGS, *args)).start()
    assert runner.proc is not None
    return runner


async def _kill_after(broker: EmbeddedBroker, tmp_path: Path, records: int) -> int | None:
    """Start the runner and SIGKILL it once `records` more are on the logs it writes; how
    many it had written when it died (None: it finished before that, and was not killed).

    The records are counted as they arrive, by one consumer assigned to every partition
    the runner writes and placed at their ends before it starts: a kill lands within a
    fetch (tens of milliseconds) of its target. (Polling the log ends instead costs a
    ListOffsets and a probe per look, up to a second under load, in which the runner
    writes thousands of records: kills then overshoot, and the backlog can run out
    before the last one.)"""
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                                fetch_max_wait_ms=10, max_partition_fetch_bytes=1 << 20)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in WRITTEN for p in range(PARTITIONS)]
        consumer.assign(tps)
        ends = await probe_log_end(broker.bootstrap, await consumer.end_offsets(tps))
        for tp, end in ends.items():
            consumer.seek(tp, end)
        runner = backfill(broker, tmp_path)
        seen = 0
        try:
            while seen < records and runner.alive():
                batch = await consumer.getmany(timeout_ms=20)
                seen += sum(len(got) for got in batch.values())
        finally:
            runner.kill()
    finally:
        await consumer.stop()
    assert runner.proc is not None
    if runner.proc.returncode == 0:
        print(f"the runner finished before {records} records were written (it wrote "
              f"{seen}): no more kills")
        return None
    assert runner.proc.returncode == -9, runner.log_tail()
    return seen


def crash_repeatedly(broker: EmbeddedBroker, tmp_path: Path, seed: int, backlog: int) -> bool:
    """The two chosen crash points, then `KILLS` random SIGKILLs, each after between 5% and
    25% (with 3 kills; with n, 15/n% and 75/n%) as many records written as the backlog has
    events: together less than the backfill writes (about 1.8 records per event), so each
    kill comes before the end. Whether the last one landed (if the runner finishes first,
    which a slow start-up and a fast runner can make happen, the kills stop there)."""
    for point in ("flushed", "committed"):
        runner = backfill(broker, tmp_path, "--crash-after-batch", "2", "--crash-point", point)
        assert runner.proc is not None and runner.proc.wait(timeout=300) == 137, (
            runner.log_tail())
    rng = np.random.default_rng(seed)
    for target in rng.integers(backlog * 3 // (20 * KILLS), backlog * 3 // (4 * KILLS), KILLS):
        died = asyncio.run(_kill_after(broker, tmp_path, int(target)))
        if died is None:
            return False
        print(f"SIGKILL after {died} records written (target {target})")
    return True


async def _store(bootstrap: str, url: str) -> None:
    """The store writer, until it has committed every record of the topics it reads."""
    settings = WriterSettings(group_id="crash-test-store", batch_size=500)
    stop = asyncio.Event()
    task = asyncio.create_task(run_writer(bootstrap, url, stop, settings=settings))
    names = (STORED.cases, STORED.alerts, STORED.snapshots, STORED.adverse_events)
    ends = await _ends(bootstrap, names)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=settings.group_id,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        # At the log ends, and no longer moving.
        loop = asyncio.get_running_loop()
        deadline, last, since = loop.time() + 120, None, loop.time()
        while True:
            committed = {tp: await consumer.committed(tp) or 0 for tp in ends}
            if committed != last:
                last, since = committed, loop.time()
            elif all(committed[tp] >= end for tp, end in ends.items()) and (
                    loop.time() - since >= 3):
                break
            assert not task.done(), task.exception()
            assert loop.time() < deadline, {
                tp: (n, ends[tp]) for tp, n in committed.items() if n < ends[tp]}
            await asyncio.sleep(0.5)
    finally:
        await consumer.stop()
        stop.set()
        await asyncio.wait_for(task, 30)


def dump(url: str) -> dict[str, list[dict[str, Any]]]:
    out = {}
    with psycopg.connect(url, row_factory=dict_row) as conn:
        for table, chosen in TABLES.items():
            columns = chosen or ", ".join(
                f'"{c["column_name"]}"' for c in conn.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_name = %s ORDER BY ordinal_position", (table,))
                if c["column_name"] not in UNSTORED_COLUMNS)
            out[table] = conn.execute(f"SELECT {columns} FROM {table}").fetchall()
    return out


def rows(outcome: Outcome, table: str, leaving_out: tuple[str, ...] = ()) -> set[str]:
    return {repr(sorted((k, v) for k, v in row.items() if k not in leaving_out))
            for row in outcome.rows[table]}


def run(tmp_path: Path, postgres: EmbeddedPostgres, backlog: list[SimEvent],
        live: list[SimEvent], truth: dict[str, ToolTruth],
        crash_seed: int | None = None) -> Outcome:
    """One run on its own broker and database; with `crash_seed`, crash the backfill on
    the way."""
    started = time.monotonic()
    with EmbeddedBroker(log_dir=tmp_path) as broker, database(postgres) as url:
        topics.create_topics(broker.bootstrap, topics.all_topics(APP, PARTITIONS))
        send(broker, backlog)
        killed = crash_seed is not None and crash_repeatedly(
            broker, tmp_path, crash_seed, len(backlog))
        runner = backfill(broker, tmp_path)
        assert runner.proc is not None and runner.proc.wait(timeout=600) == 0, runner.log_tail()
        done = [line for line in runner.log_tail().splitlines() if "backfill done" in line][-1]
        print(f"{tmp_path.name}: {done}")
        taken, records = int(done.split()[2]), int(done.split()[5].lstrip("("))
        # Uninterrupted: the whole backlog; restarted: what was not committed before (the
        # join can have committed every input event while the case stage was behind: the
        # last restart then takes only internal records; it takes none if the runner
        # finished before the last kill).
        assert (taken == len(backlog) if crash_seed is None
                else taken < len(backlog) and (records > 0 or not killed)), done
        backfilled = written(broker.bootstrap)
        print(f"{tmp_path.name}: backfilled at {time.monotonic() - started:.0f} s")

        # The live third waits on the broker when the worker starts: it takes over a
        # backlog, as a worker does after a backfill (or an outage), and reads it in
        # event time (`stream.input_order`). Sent to a running worker as one burst, the
        # order would depend on how the fetches met the producer's sends, which no live
        # source does at this rate.
        send(broker, live)
        worker = WorkerProcess(broker.bootstrap, tmp_path).start()
        try:
            counts = wait_for_counts([worker], expected_counts(truth), timeout=240)
            assert_exact(truth, counts)
            # From the backfill's offsets on: its tables recovered, the backlog not re-read.
            assert inputs_processed(worker) == len(live)
            quiet(broker.bootstrap, (topics.ALERTS, topics.SNAPSHOTS), 5, 120)
            assert_no_crash(worker)
        finally:
            worker.stop()
        print(f"{tmp_path.name}: the worker counted the live events at "
              f"{time.monotonic() - started:.0f} s")
        asyncio.run(_store(broker.bootstrap, url))
        print(f"{tmp_path.name}: stored at {time.monotonic() - started:.0f} s")
        alerts = {a.alert_id: a.model_dump(mode="json") for a in read_alerts(broker.bootstrap)}
        return Outcome(counts, alerts, dump(url), backfilled)


@dataclass
class Runs:
    reference: Outcome
    crashed: Outcome
    seed: int
    #: Report event id -> the ids of every report of its study (an original, corrections).
    reports: dict[str, frozenset[str]]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, postgres: EmbeddedPostgres) -> Runs:
    seed = int(os.environ.get("BACKFILL_CRASH_SEED") or secrets.randbelow(2**32))
    print(f"\ncrash seed {seed} (BACKFILL_CRASH_SEED={seed} replays these kill points)")
    events, truth = stream()
    cut = len(events) * 2 // 3
    backlog, live = events[:cut], events[cut:]
    base = tmp_path_factory.mktemp("crashes")
    # The two runs side by side (each waits on its processes most of the time).
    with ThreadPoolExecutor(2) as pool:
        uninterrupted = pool.submit(run, base / "reference", postgres, backlog, live, truth)
        crashing = pool.submit(run, base / "crashed", postgres, backlog, live, truth, seed)
        reference, crashed = uninterrupted.result(), crashing.result()
    print(f"{len(backlog)} backlog events, {len(live)} live; the backfill wrote "
          f"{reference.written} records uninterrupted, {crashed.written} crashed; "
          f"{len(reference.alerts)} alerts; stored rows "
          f"{ {t: len(r) for t, r in reference.rows.items()} }")
    studies: dict[bytes, set[str]] = {}
    for e in events:
        if e.valid and e.topic == topics.REPORTS_FINAL:
            studies.setdefault(e.key, set()).add(str(e.event_id))
    reports = {i: frozenset(ids) for ids in studies.values() for i in ids}
    return Runs(reference, crashed, seed, reports)


def test_a_backfill_killed_at_random_points_then_a_worker_count_and_store_as_one_run(
    runs: Runs,
) -> None:
    """Counts, and every stored case, AI result, event id, model version and reject, equal
    those of the uninterrupted run; but, as between any two runs, a case's revision
    number and, where its study's report was corrected without changing the label, which
    of those reports it names.

    A case's revision counts the outcome changes the join saw: its AI result read before
    its report (pending, then labelled: two) or after it (labelled at once: one). A
    correction that keeps the label is no change: the case keeps the report it was
    labelled by, the original if the AI result was read between the two, the correction if
    after both. Kafka orders no two topics, so both differ between any two runs (also two
    uninterrupted ones: 487 revisions in one such comparison)."""
    reference, crashed, seed = runs.reference, runs.crashed, runs.seed
    assert crashed.counts == reference.counts, seed
    assert reference.rows["cases"] and reference.rows["model_versions"]
    assert rows(crashed, "cases", NOT_OUTCOMES) == rows(reference, "cases", NOT_OUTCOMES), (
        seed, differing(crashed, reference, "cases", "case_id", NOT_OUTCOMES))
    after = {r["case_id"]: r for r in crashed.rows["cases"]}
    other_report = 0
    for case in reference.rows["cases"]:
        ours = after[case["case_id"]]
        if ours["report_event_id"] != case["report_event_id"]:
            other_report += 1
            assert ours["report_event_id"] in runs.reports.get(case["report_event_id"], ()), (
                seed, case["case_id"])
        else:
            assert (ours["labelled_at"], ours["label_status"]) == (
                case["labelled_at"], case["label_status"]), (seed, case["case_id"])
    print(f"cases labelled by another report of their study: {other_report}")
    for table in ("ai_results", "ai_event_ids", "model_versions", "adverse_events",
                  "store_rejects"):
        assert rows(crashed, table) == rows(reference, table), (table, seed)


def test_a_backfill_killed_at_random_points_then_a_worker_alerts_on_the_same_days(
    runs: Runs,
) -> None:
    """The same alerts fire (by alert id: tool, version, site, metric, window and day, on
    the broker and stored), the cases' outcomes (`NOT_OUTCOMES`) are the same, and the same
    metric snapshot figures are published on the same days as in the uninterrupted run.
    Their contents (an alert's n and interval, a figure's value) are compared by the next
    test."""
    reference, crashed, seed = runs.reference, runs.crashed, runs.seed
    assert len(reference.alerts) >= 3 and reference.rows["metric_snapshots"]
    differences = []
    if crashed.alerts.keys() != reference.alerts.keys():
        differences.append(
            f"alerts only after the crashes {sorted(crashed.alerts.keys() - reference.alerts)}"
            f", only uninterrupted {sorted(reference.alerts.keys() - crashed.alerts)}")
    stored = ({r["alert_id"] for r in crashed.rows["alerts"]},
              {r["alert_id"] for r in reference.rows["alerts"]})
    if stored[0] != stored[1]:
        differences.append(f"stored alerts only after the crashes {sorted(stored[0] - stored[1])}"
                           f", only uninterrupted {sorted(stored[1] - stored[0])}")
    after, before = rows(crashed, "cases", NOT_OUTCOMES), rows(reference, "cases", NOT_OUTCOMES)
    if after != before:
        differences.append(f"cases: {len(after - before)} rows only after the crashes, "
                           f"{len(before - after)} only uninterrupted")
    differences += published_differences(crashed, reference)
    print("\n".join(differences))
    assert not differences, f"seed {seed}"


def test_a_backfill_killed_at_random_points_then_a_worker_alert_values_as_one_run(
    runs: Runs,
) -> None:
    """Alerts (every field, on the broker and stored) and every metric snapshot figure's value equal
    those of the uninterrupted run (which alerts fire and which figures are published, on which
    days, are also asserted by the test before). What makes them equal:
    - the runner sends a chunk's records first and its table changes only once those are
      acknowledged, the case snapshots last (`bulk.runner.BulkRunner._persist`): no table
      change is on the log before the records it made. A kill anywhere leaves each join
      key and each tool's case state either before the batch (the batch read again makes
      the same revisions, alerts and figures again, with the same ids: dropped as not newer,
      or stored once) or past it with its records already on the log. The other way round,
      the join, finding a re-read batch's inputs in its state, re-sent each case as it stood
      after the batch: a revision whose record was lost in the kill never reached the case
      stage (seed 120301379: an ich-triage case labelled FN by its report and TN by a
      correction the next day came only as TN, and its day's 30-day window counted it
      pending: 5.3.0 on 07-11, 95 cases against 96; also 240348326, 1113946987: 3 of 6 runs
      failed so), and the alerts and figures of a batch whose case snapshot was on the log
      were never made again;
    - the daily evaluation is fixed by event time (`engine.evaluation`): a day's cases
      reach the monitor at its evaluation point in (effect time, case id) order;
    - the bulk runner takes its input records in one event-time order over every input
      partition, whatever the fetches brought (`bulk.order.EventTimeMerge`), and so does
      the worker that takes over (`stream.input_order`): read as the fetches fall, the
      join read days of AI results before their reports, so the case clock passed days
      whose reports were unread, and a case whose AI result came after its report and a
      label-keeping correction was labelled at the correction's time (seed 3261777734,
      before: the worker's last day, 07-19, n=704 against 703);
    - a runner's snapshots go to the changelog after the table changes they were taken
      after are acknowledged, hold their partition's next offset, and are all written
      when the backfill is caught up; a restarted runner rewinds the case table to each
      tool's snapshot and reads its partition again from the snapshot's offset
      (`engine.rewind.Rewind`);
    - while it reads a rewound partition again, it writes no snapshot of its tools before
      the partition's end at the restart (`CaseSnapshots.reread`). Before, a snapshot
      written mid re-read held some rewound records as rewound and others as made again,
      a state no point of the changelog holds: after the next kill the tool was replayed,
      and the days it had evaluated since its earlier snapshot were never published again
      (seed 1754246176: lvo-triage and ptx-triage 07-04 to 07-11 missing);
    - a tool with case records and no snapshot at all (killed before its first was
      written, which a re-read of its partition also holds back) is rewound to empty and
      its partition read again from offset 0 (`engine.rewind.Rewind`). Replayed from its
      records instead, its daily evaluation started at the latest case day they held,
      and the days it had evaluated since the last day on the log were never published
      (CI seed 3299872936: ich-triage's 07-04, every figure);
    - the re-read partition's case clock is restored from the snapshots at or before the
      offset it is read from, not from a later snapshot of another tool of the partition,
      which ran the clock ahead of the re-read and evaluated the rewound tool's days short
      of their cases (seed 481752004: ich-triage 5.3.0 on 07-11, n=95 against 96);
    - the join re-emits a case read again as it was emitted (the report that labelled
      it), saying its partition has reached no more than its own AI time;
    - the snapshot holds the case clock (`SourceWatermark.state`), so a restarted process
      and the worker taking over go on from the clock they left; a quiet join partition
      stops holding the case clock back only when also a day behind the others;
    - each join partition's clock is saved with the join table at the offsets a batch
      starts and ends at (`bulk.join_clocks`), and a restarted runner's join goes on from
      the one at its committed offsets, so a batch read again is stamped as it was first
      read. Restored from the join table, which held the batch read again, the clock
      stood at the batch's end; a report read again re-emitted its case (the table held
      its AI result, read later in the batch) stamped up to a day past where the join had
      been, the case clock passed a day's evaluation point, and a case of that day still
      to be re-emitted came after it: the day's figures were one case short (CI seed
      2635837757: ich-triage 5.2.1 on 07-08, 502 cases against 503; before it, in 4 of
      12 runs, ich-triage 5.3.0 on 07-11, 95 against 96)."""
    reference, crashed, seed = runs.reference, runs.crashed, runs.seed
    assert len(reference.alerts) >= 3 and reference.rows["metric_snapshots"]
    differences = []
    for alert_id in sorted(crashed.alerts.keys() | reference.alerts.keys()):
        ours, theirs = crashed.alerts.get(alert_id), reference.alerts.get(alert_id)
        if ours != theirs:
            differences.append(f"alert {alert_id}: {describe(ours)} vs {describe(theirs)}")
    for table, leaving_out in (("alerts", ()), ("cases", NOT_OUTCOMES)):
        after, before = rows(crashed, table, leaving_out), rows(reference, table, leaving_out)
        if after != before:
            differences.append(f"{table}: {len(after - before)} rows only after the crashes, "
                               f"{len(before - after)} only uninterrupted")
    differences += published_differences(crashed, reference)
    # The figures' values: every figure of every day.
    days = sorted({d[:3] for d in snapshot_days(crashed) ^ snapshot_days(reference)})
    if days:
        differences.append(
            f"metric snapshot values differ on (tool, day, kind): {days[:12]}; the first: "
            f"{first_figures(crashed, reference, days[0])}")
    print("\n".join(differences))
    assert not differences, f"seed {seed}"


def published_differences(crashed: Outcome, reference: Outcome) -> list[str]:
    """Which figures only one run published (a few of each), if any."""
    after, before = published_figures(crashed), published_figures(reference)
    if after == before:
        return []
    return [f"figures published only after the crashes {sorted(after - before)[:4]}"
            f", only uninterrupted {sorted(before - after)[:4]}"]


def published_figures(outcome: Outcome) -> set[tuple[str, ...]]:
    """Which figure each stored metric snapshot is, on which day: all of its row but its
    id and its values."""
    return {tuple(str(row[c]) for c in ("tool_id", "at", "kind", "software_version", "site",
                                        "window", "metric", "detector", "subgroup"))
            for row in outcome.rows["metric_snapshots"]}


def snapshot_days(outcome: Outcome) -> set[tuple[str, str, str, str]]:
    """(tool, day, kind, a digest of that day's figures of that kind) of the stored
    metric snapshots: which days differ, when some do."""
    out: dict[tuple[str, str, str], list[str]] = {}
    for row in outcome.rows["metric_snapshots"]:
        figures = {k: v for k, v in row.items() if k not in ("snapshot_id", "at")}
        out.setdefault((row["tool_id"], str(row["at"]), row["kind"]), []).append(
            repr(sorted(figures.items())))
    return {(*key, hashlib.sha256("".join(sorted(v)).encode()).hexdigest()[:8])
            for key, v in out.items()}


def first_figures(crashed: Outcome, reference: Outcome, day: tuple[str, str, str]) -> str:
    """The figures of one (tool, day, kind) that only one run has: (site, window, metric,
    value, n), a few of each."""
    def figures(outcome: Outcome) -> set[tuple[Any, ...]]:
        return {(r["software_version"], r["site"], r["window"], r["metric"], r["value"], r["n"])
                for r in outcome.rows["metric_snapshots"]
                if (r["tool_id"], str(r["at"]), r["kind"]) == day}
    ours, theirs = figures(crashed), figures(reference)
    return (f"only after the crashes {sorted(ours - theirs, key=repr)[:4]}, only "
            f"uninterrupted {sorted(theirs - ours, key=repr)[:4]}")


def differing(crashed: Outcome, reference: Outcome, table: str, key: str,
              leaving_out: tuple[str, ...] = ()) -> str:
    """How the rows of `table` differ: how many, and the columns of the first."""
    after = {r[key]: {c: v for c, v in r.items() if c not in leaving_out}
             for r in crashed.rows[table]}
    before = {r[key]: {c: v for c, v in r.items() if c not in leaving_out}
              for r in reference.rows[table]}
    changed = sorted(k for k in after.keys() & before.keys() if after[k] != before[k])
    columns = [c for c in before[changed[0]] if after[changed[0]][c] != before[changed[0]][c]
               ] if changed else []
    first = ({c: (after[changed[0]][c], before[changed[0]][c]) for c in columns}
             if changed else None)
    return (f"{len(after.keys() - before.keys())} only after the crashes, "
            f"{len(before.keys() - after.keys())} only uninterrupted, {len(changed)} "
            f"changed, the first {changed[:1]}: {first}")


def describe(alert: dict[str, Any] | None) -> str:
    return "none" if alert is None else f"{alert['raised_at']} {alert['summary']}"
