"""State bounded by time: the worker's memory and rebalance rebuild after five years.

Targets (issue #17): after a simulated five-year backfill of a 2M-exam/yr system (~30M
input events, 6M a year), the worker's resident memory stays under 2 GiB and a
rebalance rebuild takes under 60 s.

1. Flat. The engine in-process (`engine.local`, the worker's whole path) over `--days`
   simulated days at `--volume-scale`, with the default 180-day case horizon: case
   records, join entries and this process's RSS every 30 days. Once the horizon (and the
   join's 120-day retention) is passed the state stops growing, so the state after five
   years is the state after one: what the table holds is a function of the last 180
   days of volume (and a few weeks per live model version), not of history.
2. Five years at full volume. That steady state, scaled to 2M exams/yr times
   `--state-scale` (cloned records, new keys), is written to the tables' changelog
   topics on the embedded broker as a compacted changelog holds it (one record per live
   key: what `cleanup.policy=compact`, set on every changelog by `topics create`, leaves
   after the tombstones' retention; the embedded broker itself does not compact). Then
   a real worker (`surveillance worker`, a child process) starts on it, as after a
   rebalance onto a new machine: the seconds until it answers /surveillance/counts ready
   with every case counted (with `rocksdb://` the partitions Faust assigns it, here all
   of them, pre-seeded from the changelogs by a plain consumer in Faust's recovery,
   `stream.preseed_recovery`, then Faust's table recovery of what is left, then the
   monitor, ledger and drift banks rebuilt from the owned records;
   `--without-preseed` adds a new worker recovering through Faust alone), its peak RSS
   (VmHWM), and its CPU. With `--store memory://` and `rocksdb://` (rocksdict, on disk),
   and an empty state for the baseline. The changelogs hold each tool's snapshot too, as
   a worker leaves them, so the case stage loads them (the line says how many tools
   replayed instead). With `rocksdb://` the same worker is then restarted on its store:
   Faust recovers only the changelogs after the offsets it kept (a restart on the same
   host; a standby promoted on a rebalance reads the same way). Figures at
   `--state-scale` below 1 are also extrapolated linearly in the state's size (baseline
   + per-record cost / scale).

A measurement, not a test. Prints the load average: the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import math
import os
import re
import resource
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import rocksdict
from aiokafka import AIOKafkaProducer

from surveillance.bulk import changelog
from surveillance.embedded import EmbeddedBroker
from surveillance.embedded.broker import free_port
from surveillance.engine.config import EngineConfig
from surveillance.engine.horizon import case_records, is_summary
from surveillance.engine.local import LocalPipeline
from surveillance.engine.pipeline import (
    ADVERSE_TABLE,
    CASE_SNAPSHOTS,
    CASE_TABLE,
    JOIN_TABLE,
    Engine,
)
from surveillance.simulate import simulate
from surveillance.stream.ingest import join_partition
from surveillance.stream.runner import WorkerProcess
from surveillance.stream.topics import all_topics, create_topics

EVENTS_PER_YEAR = 30_000_000 / 5  # a 2M-exam/yr system: ~30M input events in five years
GIB = 1 << 30
APP_ID = "surveillance"
OFFSET_KEY = b"__faust\0offset__"  # where Faust's RocksDB store keeps a partition's offset


def rss_bytes(pid: int | str = "self") -> tuple[int, int]:
    """(current, peak) resident set size of a process, from /proc."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                  .splitlines() if ":" in line)
    return (int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024)


def cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and of its children that ended and were waited for (the
    worker's pre-seed processes, `stream.preseed_processes`)."""
    parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(t) for t in parts[11:15]) / os.sysconf("SC_CLK_TCK")


def flat(days: int, volume_scale: float, partitions: int
         ) -> tuple[LocalPipeline, float, list[tuple[int, int, int, int]]]:
    """Phase 1: (the pipeline at the end, input events per simulated day, rows)."""
    events, truth = simulate(days=days, seed=17, volume_scale=volume_scale)
    path = LocalPipeline(EngineConfig.plain(partitions, snapshots=False))
    start = events[0].arrival
    rows: list[tuple[int, int, int, int]] = []
    mark = 30
    cpu = time.process_time()
    for event in events:
        if (event.arrival - start) >= timedelta(days=mark):
            rows.append(_row(path, mark))
            mark += 30
        path.feed(event)
    rows.append(_row(path, days))
    cpu = time.process_time() - cpu
    counted = {tool: c["cases"] for tool, c in path.engine.cases.ledger.per_tool().items()}
    exact = counted == {tool: t.cases for tool, t in truth.items()}
    print(f"engine in-process: {len(events)} events in {cpu:.0f} s of CPU "
          f"({cpu / len(events) * 1e6:.0f} us/event); ledger counts equal the simulator's "
          f"truth: {exact}")
    return path, len(events) / days, rows


def _row(path: LocalPipeline, day: int) -> tuple[int, int, int, int]:
    cases = sum(1 for k in path.tables[CASE_TABLE] if not is_summary(k))
    return day, cases, len(path.tables[JOIN_TABLE]), rss_bytes()[0]


def table_values(days: int) -> dict[str, list[bytes]]:
    """Per table, the values the engine writes for `days` simulated days (`flat`, one
    partition set of 4), as its changelog holds them: `case_state`, the case records
    (JSON, ~870 bytes each, the drift features ~600 of them; the horizon's summaries
    left out), and `join_state`, the join's pending states."""
    path, _, _ = flat(days, 1.0, 4)
    out = {"case_state": [changelog.encode("", v)[1] for k, v in path.tables[CASE_TABLE].items()
                          if not is_summary(k)],
           "join_state": [changelog.encode("", v)[1] for v in path.tables[JOIN_TABLE].values()]}
    for name, values in out.items():
        if not values:
            raise SystemExit(f"the simulation left no {name} values: give more --days")
    return out


def scaled_state(path: LocalPipeline, factor: float, partitions: int
                 ) -> tuple[dict[str, list[tuple[int, str, dict[str, Any]]]], dict[str, int]]:
    """The pipeline's tables cloned `factor` times (new keys): per table, (changelog
    partition, key, value); and the case totals per tool the worker must count."""
    out: dict[str, list[tuple[int, str, dict[str, Any]]]] = {t: [] for t in changelog.TABLES}
    expected: Counter[str] = Counter()
    cases = [(k, v) for k, v in path.tables[CASE_TABLE].items() if not is_summary(k)]
    joins = list(path.tables[JOIN_TABLE].items())
    for copy in range(math.ceil(factor)):
        share = min(factor - copy, 1.0)
        for key, value in cases[: round(len(cases) * share)]:
            accession, tool = key.rsplit(":", 1)
            out[CASE_TABLE].append((value["partition"], f"{accession}x{copy}:{tool}", value))
            expected[tool] += 1
        for key, value in joins[: round(len(joins) * share)]:
            clone = f"{key}x{copy}"
            out[JOIN_TABLE].append((join_partition(key, partitions), clone, value))
    for key, value in path.tables[CASE_TABLE].items():
        if is_summary(key):  # the evicted counts, once (they are counts, not records)
            out[CASE_TABLE].append((int(key.rsplit(":", 1)[1]), key, value))
            for tool, _version, _site, _outcome, n in value["evicted"]:
                expected[tool] += n
    for key, value in path.tables[ADVERSE_TABLE].items():
        out[ADVERSE_TABLE].append((value["partition"], key, value))
    return out, dict(expected)


def _digest(table: str, key: bytes, value: bytes) -> int:
    """One table entry's share of a store digest (a sum: the order of entries is free)."""
    return int.from_bytes(hashlib.blake2b(b"\0".join((table.encode(), key, value)),
                                          digest_size=8).digest(), "big")


@dataclass
class StoreDigest:
    """What a worker's table stores must hold: per table, its entries and the sum of
    their `_digest`s (mod 2**64), over the key and value bytes as the changelog has them."""

    entries: Counter[str] = field(default_factory=Counter)
    sums: Counter[str] = field(default_factory=Counter)

    def add(self, table: str, key: bytes, value: bytes) -> None:
        self.entries[table] += 1
        self.sums[table] = (self.sums[table] + _digest(table, key, value)) % 2**64


def stores_digest(state_dir: Path) -> StoreDigest:
    """The digest of a stopped worker's RocksDB table stores (`<table>-<partition>.db`
    under its Faust data directory), each partition's kept offset left out."""
    out = StoreDigest()
    options = rocksdict.Options(raw_mode=True)
    for path in sorted(state_dir.glob("faust/v*/tables/*-*.db")):
        table = path.name.rsplit("-", 1)[0]
        db = rocksdict.Rdict(str(path), options=options,
                             access_type=rocksdict.AccessType.read_only())
        try:
            for key, value in db.items():
                if key != OFFSET_KEY:
                    out.add(table, key, value)
        finally:
            db.close()
    return out


def state_check(worker_dir: Path, written: StoreDigest) -> str:
    """Whether a stopped worker's stores hold exactly the state written (the state of
    the worker it replaces), and their size on disk, said in one phrase."""
    held = stores_digest(worker_dir)
    disk = sum(f.stat().st_size for f in worker_dir.rglob("*.sst")) / 2**20
    if held == written:
        return (f"stores equal the state written ({sum(held.entries.values()):,} entries, "
                f"{disk:,.0f} MiB of SST files)")
    return "stores DIFFER from the state written: " + ", ".join(
        f"{t} {held.entries[t]:,} entries (written {written.entries[t]:,})"
        f"{'' if held.sums[t] == written.sums[t] else ', digest differs'}"
        for t in sorted(set(held.entries) | set(written.entries)))


async def write_changelogs(bootstrap: str, state: dict[str, list[tuple[int, str, Any]]],
                           digest: StoreDigest) -> int:
    # A long request timeout: at full scale (~3M records) on a loaded machine the
    # embedded broker took over aiokafka's default 40 s to answer a produce request.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20,
                                max_batch_size=1 << 20, max_request_size=8 << 20,
                                request_timeout_ms=600_000)
    await producer.start()
    n = 0
    try:
        for table, rows in state.items():
            topic = changelog.topic(APP_ID, table)
            pending = []
            for partition, key, value in rows:
                k, v = changelog.encode(key, value)
                if v is not None:
                    digest.add(table, k, v)
                pending.append(await producer.send(topic, v, key=k, partition=partition))
                n += 1
                if len(pending) >= 20_000:
                    await asyncio.gather(*pending)
                    pending = []
            await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return n


Leg = tuple[float, int, float, bool, int, str, float, str]
PRESEEDED = re.compile(r"pre-seeded from their changelogs: (\d+) records in ([\d.]+) s "
                       r"\([^)]*\); CPU ([\d.]+) s")
REBUILT = re.compile(r"case stage rebuilt from (\d+) case records in ([\d.]+) s \(read "
                     r"([\d.]+) s; CPU ([\d.]+) s\)")


def _what_it_did(log: str) -> str:
    """The worker's pre-seed (each step's records, seconds and CPU summed) and its case
    stage's rebuild, from its log."""
    steps = PRESEEDED.findall(log)
    seeded = (f"pre-seed read {sum(int(n) for n, _, _ in steps):,} records in "
              f"{sum(float(s) for _, s, _ in steps):.1f} s (CPU "
              f"{sum(float(c) for _, _, c in steps):.1f} s, {len(steps)} step(s))"
              if steps else "no pre-seed")
    rebuilt = REBUILT.search(log)
    return seeded + ("; case stage rebuilt from {:,} records in {} s (reading them {} s; "
                     "CPU {} s)".format(int(rebuilt[1]), *rebuilt.groups()[1:])
                     if rebuilt else "")


def rebuild(bootstrap: str, store: str, expected: dict[str, int], state_dir: Path,
            timeout: float, web_port: int | None = None, preseed: bool = True,
            broker_pid: int | None = None, written: StoreDigest | None = None) -> Leg:
    """A worker started on the changelogs: (seconds until every case is counted, peak
    RSS, CPU seconds, counts exact, tools replayed instead of loaded from a snapshot, what
    its pre-seed and rebuild did, CPU seconds the broker spent meanwhile, whether its
    stores hold the state `written`, checked once it is stopped). The same `web_port` and
    `state_dir` again: the same worker restarted on its host (its disk-backed store kept).
    `preseed`: the RocksDB stores brought to the changelogs' ends in Faust's recovery
    (`stream.preseed_recovery`)."""
    worker = WorkerProcess(bootstrap, state_dir, env={
        "SURVEILLANCE_STREAM__STORE": store,
        "SURVEILLANCE_STREAM__PRESEED_TABLES": str(preseed).lower()}, web_port=web_port)
    log_start = worker.log_path.stat().st_size if worker.log_path.exists() else 0
    broker_cpu = cpu_seconds(broker_pid) if broker_pid else float("nan")
    started = time.perf_counter()
    worker.start()
    assert worker.proc is not None
    pid = worker.proc.pid
    exact = False
    try:
        deadline = started + timeout
        while time.perf_counter() < deadline and worker.alive():
            answer = worker.counts()
            if answer is not None and answer.get("ready"):
                totals = {t: int(c.get("cases", 0)) for t, c in answer["tools"].items()}
                exact = totals == {t: n for t, n in expected.items() if n}
                if exact or not expected:
                    break
            time.sleep(0.1)
        seconds = time.perf_counter() - started
        peak = rss_bytes(pid)[1] if worker.alive() else 0
        cpu = cpu_seconds(pid) if worker.alive() else float("nan")
        broker_cpu = cpu_seconds(broker_pid) - broker_cpu if broker_pid else float("nan")
        if not worker.alive():
            print(worker.log_tail())
    finally:
        worker.stop()
    print(f"  (a worker leg, {store}: load average at its end {os.getloadavg()})")
    log = worker.log_path.read_text(errors="replace")[log_start:]
    replayed = log.count("rebuilding it from its case records")
    state = (state_check(worker.state_dir, written)
             if written is not None and store.startswith("rocksdb:") else "stores not checked")
    return seconds, peak, cpu, exact, replayed, _what_it_did(log), broker_cpu, state


def with_snapshots(state: dict[str, list[tuple[int, str, Any]]], partitions: int) -> None:
    """The case stage rebuilt by replay from the scaled state, in this process, then its
    per-tool snapshots (`engine.snapshots`) added to `state` as a worker leaves them."""
    tables: dict[str, dict[str, Any]] = {t: {} for t in changelog.TABLES}
    for table, rows in state.items():
        for _partition, key, value in rows:
            tables[table][key] = value
    engine = Engine(EngineConfig.plain(partitions, snapshots=False),
                    *(tables[t] for t in changelog.TABLES))
    owned = set(range(partitions))
    records = case_records(tables[CASE_TABLE].items(), owned)
    wall, cpu = time.perf_counter(), time.process_time()
    engine.cases.rebuild(records, owned)
    print(f"case stage rebuilt by replay (no snapshots) in this process: {len(records):,} "
          f"records in {time.perf_counter() - wall:.1f} s (CPU {time.process_time() - cpu:.1f} s"
          f", {(time.process_time() - cpu) / len(records) * 1e6:.0f} us/record)")
    wall, cpu = time.perf_counter(), time.process_time()
    out = engine.snapshot()
    cpu = time.process_time() - cpu
    sizes: Counter[str] = Counter()  # a tool's record and its parts (`snapshots.PART_BYTES`)
    parts: Counter[str] = Counter()
    for c in out.changes:
        if c.value is None:
            continue
        sizes[c.value["tool"]] += len(msgspec.json.encode(c.value))
        parts[c.value["tool"]] += 1
    print(f"snapshots written: {len(sizes)} tools in {time.perf_counter() - wall:.2f} s "
          f"(CPU {cpu:.2f} s, {cpu / max(len(sizes), 1) * 1e3:.0f} ms per tool); record sizes "
          + ", ".join(f"{tool} {n / 1e3:,.0f} kB in {parts[tool]} record(s)"
                      for tool, n in sorted(sizes.items())))
    state[CASE_SNAPSHOTS] = [(c.partition, c.key, c.value) for c in out.changes
                             if c.table == CASE_SNAPSHOTS and c.value is not None]


def bulk_reload(bootstrap: str, partitions: int, queue: Any) -> None:
    """In a fresh process: the bulk runner's reload (every changelog read to its end into
    dicts), then the case stage rebuilt from the owned records; (seconds of each, CPU
    seconds of each, peak RSS) onto `queue`."""
    from surveillance.bulk.runner import BulkRunner

    wall, cpu = time.perf_counter(), time.process_time()
    tables = asyncio.run(changelog.restore({"bootstrap_servers": bootstrap}, APP_ID,
                                           partitions))
    restore = (time.perf_counter() - wall, time.process_time() - cpu)
    runner = BulkRunner(EngineConfig.plain(partitions, snapshots=False), APP_ID,
                        {"bootstrap_servers": bootstrap})
    runner.tables = tables
    engine = Engine(runner.config, *(tables[t] for t in changelog.TABLES))
    wall, cpu = time.perf_counter(), time.process_time()
    owned = set(range(partitions))
    engine.cases.rebuild(runner._owned_cases(owned), owned)
    rebuilt = (time.perf_counter() - wall, time.process_time() - cpu)
    cases = sum(c["cases"] for c in engine.cases.ledger.per_tool().values())
    print(f"bulk reload: tools loaded from their snapshots: {engine.cases.restored}")
    queue.put((restore, rebuilt, rss_bytes()[1], cases))


def bulk_reload_in_child(bootstrap: str, partitions: int
                         ) -> tuple[tuple[float, float], tuple[float, float], int, int]:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=bulk_reload, args=(bootstrap, partitions, queue))
    child.start()
    try:
        result: tuple[tuple[float, float], tuple[float, float], int, int] = queue.get()
    finally:  # also when this process is told to stop (`_stop_on_sigterm`)
        if child.is_alive() and sys.exc_info()[0] is not None:
            child.terminate()
        child.join()
    return result


def _stop_on_sigterm() -> None:
    """SIGTERM (and SIGHUP) end this process as Ctrl-C does: by an exception, so that
    the `finally` and `with` blocks stop the worker and the broker it started (each in a
    session of its own, so the signal does not reach them). Once: a second signal must
    not cut that cleanup short."""
    def stop(signum: int, _frame: Any) -> None:
        for each in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(each, signal.SIG_IGN)
        raise SystemExit(128 + signum)

    for each in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(each, stop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=400)
    parser.add_argument("--volume-scale", type=float, default=1.0)
    parser.add_argument("--state-scale", type=float, default=0.1,
                        help="fraction of a 2M-exam/yr system's state to build (1: all)")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--stores", default="rocksdb://,memory://")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--without-preseed", action="store_true",
                        help="also a new worker on rocksdb:// without the pre-seed (Faust's "
                             "recovery reads the whole changelog: ~7 min at 0.25)")
    parser.add_argument("--bulk-reload", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure the bulk runner's reload (a few minutes at 0.1)")
    args = parser.parse_args()
    _stop_on_sigterm()

    print(f"load average at start: {os.getloadavg()}; {os.cpu_count()} cores")
    path, per_day, rows = flat(args.days, args.volume_scale, args.partitions)
    print("day  case records  join entries  RSS of this process (MiB)")
    for day, cases, joins, rss in rows:
        print(f"{day:>4} {cases:>13,} {joins:>13,} {rss / 2**20:>10,.0f}")
    factor = EVENTS_PER_YEAR / 365 / per_day * args.state_scale
    state, expected = scaled_state(path, factor, args.partitions)
    print(f"simulated {per_day:,.0f} input events/day; a 2M-exam/yr system has "
          f"{EVENTS_PER_YEAR / 365:,.0f}: state x{factor:.2f} (state scale {args.state_scale}):"
          f" {len(state[CASE_TABLE]):,} case-table and {len(state[JOIN_TABLE]):,} join-table "
          f"records, {sum(expected.values()):,} cases counted")
    del path
    with_snapshots(state, args.partitions)
    tmp = Path(tempfile.mkdtemp(prefix="bench-state-bounds-"))
    try:
        results = _legs(args, state, expected, tmp)
    finally:  # the workers' stores (GBs at full scale); their logs stay
        for data in tmp.glob("*/worker-*/faust"):
            shutil.rmtree(data, ignore_errors=True)
    report(args, results, tmp)


def _legs(args: argparse.Namespace, state: dict[str, list[tuple[int, str, Any]]],
          expected: dict[str, int], tmp: Path) -> dict[tuple[str, str], Leg]:
    """The broker, the changelogs written, then each worker leg (and the bulk reload)."""
    stores = args.stores.split(",")
    results: dict[tuple[str, str], Leg] = {}
    with EmbeddedBroker(log_dir=tmp) as broker:
        create_topics(broker.bootstrap, all_topics(APP_ID, args.partitions))
        for store in stores:
            results[store, "empty"] = rebuild(broker.bootstrap, store, {}, tmp / "empty",
                                              args.timeout, broker_pid=broker.pid)
        began = time.perf_counter()
        digest = StoreDigest()
        written = asyncio.run(write_changelogs(broker.bootstrap, state, digest))
        print(f"wrote {written:,} changelog records in {time.perf_counter() - began:.0f} s")
        del state
        if args.bulk_reload:
            (r_s, r_cpu), (b_s, b_cpu), b_rss, b_cases = bulk_reload_in_child(
                broker.bootstrap, args.partitions)
            print(f"bulk runner's reload (changelogs into dicts): {r_s:.1f} s (CPU "
                  f"{r_cpu:.1f} s); case stage rebuilt from them: {b_s:.1f} s (CPU "
                  f"{b_cpu:.1f} s); peak RSS {b_rss / 2**20:,.0f} MiB; {b_cases:,} cases "
                  f"counted (expected {sum(expected.values()):,})")
        for store in stores:
            port = free_port()
            where = tmp / store.split(":")[0]
            results[store, "new"] = rebuild(broker.bootstrap, store, expected, where,
                                            args.timeout, port, broker_pid=broker.pid,
                                            written=digest)
            if store != "memory://":  # in memory nothing survives a restart
                results[store, "restart"] = rebuild(broker.bootstrap, store, expected, where,
                                                    args.timeout, port, broker_pid=broker.pid,
                                                    written=digest)
            if store != "memory://" and args.without_preseed:
                results[store, "faust"] = rebuild(broker.bootstrap, store, expected,
                                                  tmp / "faust-recovery", args.timeout,
                                                  preseed=False, broker_pid=broker.pid,
                                                  written=digest)
    return results


def report(args: argparse.Namespace, results: dict[tuple[str, str], Leg], tmp: Path
           ) -> None:
    stores = args.stores.split(",")
    print(f"workers' logs: {tmp}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"load average at end: {os.getloadavg()}; this process's peak RSS {peak:.1f} GiB")
    legs = {"new": "a new worker (the whole changelog recovered)",
            "restart": "the same worker restarted on its host (the changelog's tail)",
            "faust": "a new worker without the pre-seed (Faust's recovery reads it all)"}
    scaled = "" if args.state_scale == 1 else " (extrapolated linearly)"
    for store in stores:
        base_s, base_rss, base_cpu, *_ = results[store, "empty"]
        print(f"{store:<11} empty state: ready in {base_s:.1f} s, peak RSS "
              f"{base_rss / 2**20:,.0f} MiB, CPU {base_cpu:.1f} s")
        for leg, what in legs.items():
            if (store, leg) not in results:
                continue
            s, rss, cpu, exact, replayed, seeded, broker_cpu, held = results[store, leg]
            full_s = base_s + (s - base_s) / args.state_scale
            full_cpu = base_cpu + (cpu - base_cpu) / args.state_scale
            full_rss = base_rss + (rss - base_rss) / args.state_scale
            print(f"{store:<11} {what}, state x{args.state_scale}: ready in {s:.1f} s "
                  f"(CPU {cpu:.1f} s), peak RSS {rss / 2**20:,.0f} MiB, counts exact: "
                  f"{exact}, tools replayed instead of loaded from snapshots: {replayed}; "
                  f"{seeded}; the broker's CPU meanwhile {broker_cpu:.1f} s; {held}")
            print(f"{store:<11} {what}, 2M exams/yr after five years{scaled}: rebuild "
                  f"{full_s:.0f} s wall, {full_cpu:.0f} s CPU (target < 60 s: "
                  f"{'met' if max(full_s, full_cpu) < 60 else 'NOT met'}); peak RSS "
                  f"{full_rss / GIB:.2f} GiB (target < 2 GiB: "
                  f"{'met' if full_rss < 2 * GIB else 'NOT met'})")


if __name__ == "__main__":
    main()
