"""End-to-end throughput of one worker process on the embedded broker, with its ceiling.

    .venv/bin/python benchmarks/throughput.py [--days 90] [--scale 1.0] [--partitions 4]

1. Starts the embedded broker, creates the topics, starts ONE worker and waits until it
   holds its partitions.
2. Produces the simulator's stream (AI results + reports) and measures the time until
   the worker has counted every case: end-to-end input events per second (validate,
   pseudonymize, extract labels, join, adjudicate, count, with table changelogs). The
   stream starts on 2026-07-01, or earlier when `--days` would carry it past today
   (`simulate.past_start`): the service dead-letters events dated in the future.
3. In the same run, on the same broker, consumes the same input topics with a bare
   aiokafka consumer (no processing): the ceiling the broker and client allow.
4. And with a Faust agent that does nothing (`faust_floor_app.py`: the worker's settings
   and batch iteration, its own consumer group): the floor Faust's per-record cost puts
   under any Faust worker on this machine, before the service does any work.
5. The bulk runner (`surveillance backfill`, aiokafka in batches, the same engine) on the
   same events in a second embedded broker (the live worker's internal records would
   otherwise be read by it too): end-to-end from its start to its last output (its last
   committed batch, or later the drift alerts of tools a calibration held),
   then a worker started on its state must hold every case (counts exact). In
   `--bulk-processes` processes (default 2: the join in one, the case stage in the other;
   with `--tool-split`, the join and the lighter half of the tools in one, the other tools
   in the other: `bulk.ownership.tool_split`), then, for scale, in
   one process on a third broker; the CPU of the runner processes together, and the
   runner's own count from its restore to its last batch.
6. Per-stage costs of the engine, in process (cProfile over the same events, each event
   a batch with the records it leads to, `engine.local`): CPU per input event per stage;
   and without the profiler: ingest, join, case records read back, whole engine.
The live worker's process CPU (user + system, from /proc; with its drift calibration
process, a child) is printed per input event beside its wall rate, with the load
average at the end of its run: the machine is often shared, and CPU per event moves far
less with the load than events/s does. The live rate ends once every case is counted and
no tool waits for its calibration (its drift alerts still to come).
`--live-only` runs steps 1-3 (for iterating on the worker); `--bulk-only` the bulk runner
in `--bulk-processes` processes alone (for iterating on it; no final line). With
`--digest` (and `--bulk-only`), after the backfill, a SHA-256 each (16 hex digits) of the
alerts, the state snapshots and `cases.adjudicated` it wrote (each topic's values sorted):
two trees or layouts with equal digests wrote the same outputs. The bulk lines
give each runner process's CPU to its last batch and to its first (start-up), the CPU
spent before the runner started (imports), the broker's CPU and the load average.
7. The codec alone, timed without the profiler: msgspec decode + validate (`contracts.wire`)
   against json + pydantic on the same input events, and the encode of one changed table
   key (join state, case record) as the changelog takes it.
Prints all of it with the machine it ran on, and ends with the line
`live end-to-end L events/s; bulk end-to-end B events/s; ceiling C events/s; bulk ratio R;
counts exact`. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.topic_read

from surveillance.embedded import EmbeddedBroker
from surveillance.embedded.broker import free_port
from surveillance.simulate import Faults, Scenario, past_start, simulate
from surveillance.stream.produce import produce
from surveillance.stream.runner import WorkerProcess, combined_counts, wait_for_counts
from surveillance.stream.topics import AI_RESULTS, REPORTS_FINAL, all_topics, create_topics
from tests.topic_read import read_records

#: The outcomes a worker counts per tool (`/surveillance/counts`) and the simulator's truth
#: gives (its `no_report` is a case still pending).
OUTCOMES = ("TP", "FP", "TN", "FN", "indeterminate")


async def raw_consume_rate(bootstrap: str, expected: int) -> float:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        AI_RESULTS, REPORTS_FINAL, bootstrap_servers=bootstrap, group_id=None,
        auto_offset_reset="earliest", max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=32 * 1024 * 1024,
    )
    await consumer.start()
    n, started = 0, time.perf_counter()
    try:
        while n < expected:
            batch = await consumer.getmany(timeout_ms=2000, max_records=20_000)
            if not batch:
                break
            n += sum(len(v) for v in batch.values())
    finally:
        await consumer.stop()
    return n / (time.perf_counter() - started)


def process_cpu(pid: int) -> float:
    """User + system CPU seconds a live process has used (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds of a live process and of its live children together (the worker's drift
    calibrations run in a child: `stream.calibration_process`), and of the children."""
    children = 0.0
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            children += sum(process_cpu(int(c)) for c in task.read_text().split())
        except OSError:
            continue
    return process_cpu(pid) + children, children


def faust_floor_rate(bootstrap: str, expected: int, state: Path) -> float:
    """Records/s through a Faust agent that does nothing, on the same broker and topics."""
    out = state / "faust-floor.json"
    env = {
        **os.environ,
        "FLOOR_BOOTSTRAP": bootstrap,
        "FLOOR_EXPECTED": str(expected),
        "FLOOR_OUT": str(out),
        "FLOOR_WEB_PORT": str(free_port()),
        "FLOOR_DATADIR": str(state / "faust-floor"),
    }
    here = Path(__file__).resolve().parent
    with open(state / "faust-floor.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "faust", "-A", "faust_floor_app", "worker", "-l", "warn"],
            cwd=here, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 600
        while not out.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    if not out.exists():
        raise SystemExit(f"the Faust floor agent did not finish; see {state / 'faust-floor.log'}")
    result = json.loads(out.read_text())
    return float(result["events"]) / float(result["seconds"])


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Bulk:
    rate: float  # input events/s, from the runner's start to its last output
    exact: bool
    cpu: float  # process CPU seconds of the runner processes together, start-up included
    busy_cpu: float  # the same from each process's start to the last output (wall's end)
    line: str  # the runner's `backfill done` line
    broker_cpu: float  # process CPU seconds of the broker while the runner ran
    load: tuple[float, float, float]  # the load average when the runner ended
    differ: str  # the tools whose counts are not the truth's: counted against expected
    digests: str = ""  # `outputs_digest`, when asked for


def outputs_digest(bootstrap: str) -> str:
    """The alerts (once each, by id), the snapshots and `cases.adjudicated`: per topic its
    count and the SHA-256 of its values sorted (their order across partitions and
    batches is not an output)."""
    import hashlib

    from surveillance.demo import read_alerts
    from surveillance.stream.topics import CASES_ADJUDICATED, SNAPSHOTS

    alerts = sorted(json.dumps(a.model_dump(mode="json"), sort_keys=True)
                    for a in read_alerts(bootstrap))
    parts = [("alerts", alerts)] + [
        (name, sorted(r.value.decode() for r in read_records(bootstrap, [topic])))
        for name, topic in (("snapshots", SNAPSHOTS), ("cases.adjudicated", CASES_ADJUDICATED))]
    return "; ".join(f"{name} {len(values)} "
                     f"{hashlib.sha256(chr(10).join(values).encode()).hexdigest()[:16]}"
                     for name, values in parts)


def bulk_rate(events: list, expected: dict[str, int], partitions: int, state: Path,
              processes: int, extra: tuple[str, ...] = (), digest: bool = False) -> Bulk:
    """The bulk runner in `processes` processes on a broker of its own, then a worker on
    its state (counts exact?). CPU from the operating system (the runner's children
    included: it waits for them) and from the runner's own `backfill done` line."""
    with EmbeddedBroker(log_dir=state / f"bulk-{processes}") as broker:
        create_topics(broker.bootstrap, all_topics("surveillance", partitions))
        produce(broker.bootstrap, ((e.topic, e.key, e.value) for e in events))
        cpu_before = children_cpu()  # the broker is a child too, but still running
        broker_pid = broker._proc.pid if broker._proc is not None else 0
        broker_before = process_cpu(broker_pid)
        runner = WorkerProcess(broker.bootstrap, state / f"bulk-{processes}",
                               command="backfill",
                               args=("--idle-seconds", "2", "--processes", str(processes),
                                     *extra)).start()
        assert runner.proc is not None
        if runner.proc.wait(timeout=3600) != 0:
            raise SystemExit(f"the backfill failed:\n{runner.log_tail()}")
        cpu = children_cpu() - cpu_before
        broker_cpu = process_cpu(broker_pid) - broker_before
        load = os.getloadavg()
        done = [ln for ln in runner.log_tail().splitlines() if ln.startswith("backfill done")]
        seconds = float(done[-1].split(" in ")[1].split(" s,")[0])
        busy_cpu = float(done[-1].split(" CPU ")[1].split(" s ")[0])  # all processes
        digests = outputs_digest(broker.bootstrap) if digest else ""
        worker = WorkerProcess(broker.bootstrap, state / f"bulk-{processes}").start()
        try:
            counts = wait_for_counts([worker], expected, timeout=600)
        finally:
            worker.stop()
    differ = differences(counts, expected)
    return Bulk(len(events) / seconds, not differ, cpu, busy_cpu, done[-1], broker_cpu, load,
                differ, digests)


def differences(counts: dict[str, dict[str, int]], expected: dict[str, int]) -> str:
    """The tools whose case count is not the truth's, each `tool counted/expected` ("" when
    all are equal; "no answer" when the worker never reported ready)."""
    if not counts:
        return "no answer from the worker (not ready)"
    return ", ".join(f"{tool} {counts.get(tool, {}).get('cases', 0)}/{n}"
                     for tool, n in sorted(expected.items())
                     if counts.get(tool, {}).get("cases") != n)


def print_bulk(label: str, run: Bulk, events: int) -> None:
    counted = "exact" if run.exact else f"INCOMPLETE: {run.differ}"
    print(f"bulk runner, {label}: {run.rate:,.0f} events/s "
          f"(counts {counted}); process CPU of the runner "
          f"processes together {run.cpu / events * 1e6:,.1f} µs per input event "
          f"({run.cpu:.1f} s, start-up, final idle wait and any calibration after the "
          f"last batch included), "
          f"{run.busy_cpu / events * 1e6:,.1f} µs from the restore to the last "
          f"batch; the broker's CPU meanwhile {run.broker_cpu:.1f} s; load average "
          f"{run.load[0]:.2f} {run.load[1]:.2f} {run.load[2]:.2f}\n  {run.line}")


def stage_costs(events: list, partitions: int) -> list[tuple[str, float]]:
    """CPU µs per input event of each engine stage, in process (cProfile, cumulative),
    with the collector set as the worker and the bulk runner set it."""
    import cProfile
    import gc
    import pstats

    from surveillance.engine import collector
    from surveillance.engine.config import EngineConfig
    from surveillance.engine.local import LocalPipeline

    threshold = gc.get_threshold()
    collector.for_long_lived_state()

    path = LocalPipeline(EngineConfig.plain(partitions))
    profile = cProfile.Profile(time.process_time)  # CPU: the machine may be shared
    profile.enable()
    for e in events:
        path.feed(e)
    profile.disable()
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    wanted = {
        "ingest (decode, validate, pseudonymize, label)": ("ingest.py", "accept"),
        "join (apply, clocks, expiry, emit)": ("join.py", "join_one"),
        "case records read back (read_case)": ("internal.py", "read_case"),
        "CaseRecord.as_dict (within table changes)": ("ledger.py", "as_dict"),
        "monitor.on_case": ("monitor.py", "on_case"),
        "drift bank update": ("drift_bank.py", "update"),
        "drift bank advance": ("drift_bank.py", "advance"),
        "daily evaluation": ("evaluation.py", "maybe"),
        "table changes (dump per key per batch)": ("tables.py", "changes"),
        "whole engine (Engine.process)": ("pipeline.py", "process"),
    }
    wanted |= {
        "  of which join state decode (from_dict)": ("join.py", "from_dict"),
        "  of which join state encode (as_dict)": ("join.py", "as_dict"),
    }
    out = []
    for label, (file, name) in wanted.items():
        total = sum(v[3] for (f, _, n), v in stats.items() if f.endswith(file) and n == name)
        out.append((label, total / len(events) * 1e6))
    out += plain_stage_costs(events, partitions) + codec_costs(events, path.tables)
    gc.set_threshold(*threshold)
    return out


def plain_stage_costs(events: list, partitions: int) -> list[tuple[str, float]]:
    """CPU µs per input event, no profiler (cProfile inflates the many small calls): ingest
    alone; ingest + join (each event one batch, its join-state change applied, `cases.join`
    forwards looped back); the case records read back (`read_case`, per input event, of
    the cases the join emitted); the whole engine in process (`engine.local`). The join
    is the second less the first."""
    from surveillance.engine.config import EngineConfig
    from surveillance.engine.local import LocalPipeline
    from surveillance.engine.pipeline import JOIN_TABLE, Engine
    from surveillance.engine.records import Record
    from surveillance.stream import internal, topics
    from surveillance.stream.ingest import join_partition

    config = EngineConfig.plain(partitions)
    records = [Record(e.topic, join_partition(e.key.decode(errors="replace"), partitions), i,
                      e.key, e.value) for i, e in enumerate(events)]
    started = time.process_time()
    for e in events:
        config.ingest.accept(e.topic, e.value, e.arrival, partitions)
    ingest = time.process_time() - started

    join_state: dict[str, Any] = {}
    engine = Engine(config, join_state, {}, {})
    cases: list[tuple[bytes, list[tuple[str, bytes]], datetime]] = []
    started = time.process_time()
    for event, record in zip(events, records, strict=True):
        pending = [record]
        while pending:
            out = engine.process(pending, event.arrival, 0.0)
            out.apply_to({JOIN_TABLE: join_state})
            pending = [Record(p.topic, p.partition or 0, 0, p.key, p.value)
                       for p in out.produce if p.topic == topics.CASES_JOIN]
            cases += [(p.value, list((p.headers or {}).items()), event.arrival)
                      for p in out.produce if p.topic == topics.CASES_ADJUDICATED]
    joined = time.process_time() - started

    started = time.process_time()
    for value, headers, now in cases:
        internal.read_case(value, headers, partitions, now, config.dates)
    read = time.process_time() - started

    path = LocalPipeline(EngineConfig.plain(partitions))
    started = time.process_time()
    for e in events:
        path.feed(e)
    whole = time.process_time() - started
    n = len(events) / 1e6
    return [("no profiler: ingest", ingest / n), ("no profiler: join", (joined - ingest) / n),
            (f"no profiler: case records read back ({len(cases)} cases)", read / n),
            ("no profiler: whole engine in process (engine.local)", whole / n)]


def codec_costs(events: list, tables: dict[str, dict[str, Any]]) -> list[tuple[str, float]]:
    """CPU µs, no profiler: decode + validate per input event both ways, and the encode of
    one changed key per table (the changelog value)."""
    from surveillance.bulk import changelog
    from surveillance.clinical.join import JoinState
    from surveillance.clinical.ledger import CaseRecord
    from surveillance.contracts import AIResult, ReportFinal, wire

    structs = {AI_RESULTS: wire.AIResult, REPORTS_FINAL: wire.ReportFinal}
    models = {AI_RESULTS: AIResult, REPORTS_FINAL: ReportFinal}

    def cpu(run: Any, items: list) -> float:
        started = time.process_time()
        for item in items:
            run(item)
        return (time.process_time() - started) / max(len(items), 1) * 1e6

    taken = sum(wire.fast(e.value, structs[e.topic]) is not None for e in events)
    joins = [JoinState.from_dict(v) for v in tables["join_state"].values()]
    records = [CaseRecord.from_dict(v) for v in tables["case_state"].values()]
    changed = [kv for table in ("join_state", "case_state") for kv in tables[table].items()]
    return [
        ("codec, no profiler: msgspec decode + validate + screen (contracts.wire.fast), "
         f"{taken}/{len(events)} taken", cpu(lambda e: wire.fast(e.value, structs[e.topic]),
                                             events)),
        ("codec, no profiler: json.loads + pydantic model_validate (before)",
         cpu(lambda e: models[e.topic].model_validate(json.loads(e.value)), events)),
        ("encode per changed key: join state (msgspec to_builtins)",
         cpu(JoinState.as_dict, joins)),
        ("encode per changed key: case record (shallow dict)", cpu(CaseRecord.as_dict, records)),
        ("changelog JSON per changed key, bulk runner (msgspec)",
         cpu(lambda kv: changelog.encode(*kv), changed)),
        ("changelog JSON per changed key with json.dumps (before)",
         cpu(lambda kv: (json.dumps(kv[0]).encode(), json.dumps(kv[1]).encode()), changed)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--live-only", action="store_true",
                        help="the live worker and the ceiling only")
    parser.add_argument("--bulk-processes", type=int, default=2,
                        help="the bulk runner's processes (it is also run with 1, for scale)")
    parser.add_argument("--bulk-only", action="store_true",
                        help="the bulk runner in --bulk-processes processes only (for "
                        "iterating on it; no live worker, ceiling or per-stage costs)")
    parser.add_argument("--no-calibration-process", action="store_true",
                        help="the bulk runner calibrates drift in its case-stage process "
                        "(as before the calibration process; for a comparison)")
    parser.add_argument("--tool-split", action="store_true",
                        help="the bulk runner's two processes share the case stage's tools "
                        "(`surveillance backfill --tool-split`)")
    parser.add_argument("--digest", action="store_true",
                        help="with --bulk-only: digests of the alerts, snapshots and "
                        "cases.adjudicated the backfill wrote")
    args = parser.parse_args()

    load_at_start = os.getloadavg()
    # The worker and the runner date-check events against the wall clock: a stream that
    # reached past today would have its latest cases dead-lettered ("in the future").
    start = past_start(args.days, datetime.now(UTC).date())
    events, truth = simulate(days=args.days, seed=7, start=start, scenario=Scenario(),
                             faults=Faults(), volume_scale=args.scale)
    expected = {tool: t.cases for tool, t in truth.items()}
    # Every case and every outcome (a case counts once its AI result is joined, its
    # outcome once its report is): the live rate is to the last report joined.
    outcomes = {tool: {o: t.final_outcomes.get(o, 0) for o in OUTCOMES}
                for tool, t in truth.items()}
    state = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    extra = (("--no-calibration-process",) if args.no_calibration_process else ()) + (
        ("--tool-split",) if args.tool_split else ())
    if args.bulk_only:
        bulk = bulk_rate(events, expected, args.partitions, state, args.bulk_processes,
                         extra, args.digest)
        print(f"events: {len(events)} input events ({sum(expected.values())} cases) from "
              f"{start}")
        print_bulk(f"{args.bulk_processes} processes", bulk, len(events))
        if bulk.digests:
            print(f"outputs: {bulk.digests}")
        print("load average (1, 5, 15 min): at start {:.2f} {:.2f} {:.2f}; at end {:.2f} "
              "{:.2f} {:.2f}".format(*load_at_start, *os.getloadavg()))
        return
    with EmbeddedBroker(log_dir=state) as broker:
        create_topics(broker.bootstrap, all_topics("surveillance", args.partitions))
        worker = WorkerProcess(broker.bootstrap, state).start()
        try:
            deadline = time.monotonic() + 60
            while combined_counts([worker]) is None and time.monotonic() < deadline:
                time.sleep(0.1)
            assert worker.proc is not None
            cpu_before, child_before = tree_cpu(worker.proc.pid)
            started = time.perf_counter()
            produce(broker.bootstrap, ((e.topic, e.key, e.value) for e in events))
            produced = time.perf_counter() - started
            counts = wait_for_counts([worker], expected, timeout=900, settle=0.0,
                                     outcomes=outcomes)
            elapsed = time.perf_counter() - started
            worker_cpu, child_cpu = tree_cpu(worker.proc.pid)
            worker_cpu, child_cpu = worker_cpu - cpu_before, child_cpu - child_before
            load = os.getloadavg()
        finally:
            worker.stop()
        ok = all(counts.get(t, {}).get("cases") == n for t, n in expected.items()) and all(
            counts.get(t, {}).get(k, 0) == n for t, want in outcomes.items()
            for k, n in want.items())
        ceiling = asyncio.run(raw_consume_rate(broker.bootstrap, len(events)))
        floor = None if args.live_only else faust_floor_rate(broker.bootstrap, len(events),
                                                             state)
    live = len(events) / elapsed
    missing = "" if ok else ": " + (differences(counts, expected) or "outcomes differ")
    live_line = (f"end-to-end: {live:,.0f} input events/s ({elapsed:.1f}s; counts "
                 f"{'exact' if ok else 'INCOMPLETE' + missing}); worker CPU "
                 f"{worker_cpu / len(events) * 1e6:,.0f} µs per input event "
                 f"({worker_cpu:.1f} s, of which its calibration process {child_cpu:.1f} s); "
                 f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if floor is None:
        print(f"events: {len(events)} input events ({sum(expected.values())} cases) from "
              f"{start}")
        print(f"produce: {len(events) / produced:,.0f} events/s (kafka-python producer)")
        print(live_line)
        print(f"ceiling (bare aiokafka consume, same broker): {ceiling:,.0f} events/s")
        return
    bulk = bulk_rate(events, expected, args.partitions, state, args.bulk_processes,
                     extra)
    alone = bulk_rate(events, expected, args.partitions, state, 1)
    costs = stage_costs(events, args.partitions)

    cpu = platform.processor() or platform.machine()
    print(f"machine: {platform.system()} {platform.machine()} {cpu}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    print(f"events: {len(events)} input events ({sum(expected.values())} cases) from "
          f"{start}, {args.partitions} partitions, 1 worker process")
    print(f"produce: {len(events) / produced:,.0f} events/s (kafka-python producer)")
    print(live_line)
    print(f"ceiling (bare aiokafka consume, same broker): {ceiling:,.0f} events/s")
    print(f"Faust floor (an agent that does nothing, same broker, worker settings): "
          f"{floor:,.0f} events/s")
    for label, run in ((f"{args.bulk_processes} processes", bulk), ("1 process", alone)):
        print_bulk(label, run, len(events))
    print("load average (1, 5, 15 min): at start {:.2f} {:.2f} {:.2f}; at end {:.2f} {:.2f} "
          "{:.2f}".format(*load_at_start, *os.getloadavg()))
    print("engine per-stage CPU per input event (in process, cProfile: inflates small calls):")
    for label, micros in costs:
        print(f"  {label}: {micros:,.1f} µs")
    exact = "exact" if ok and bulk.exact and alone.exact else "NOT exact"
    print(f"live end-to-end {live:,.0f} events/s; bulk end-to-end {bulk.rate:,.0f} events/s; "
          f"ceiling {ceiling:,.0f} events/s; bulk ratio {bulk.rate / ceiling:.3f}; "
          f"counts {exact}")


if __name__ == "__main__":
    main()
