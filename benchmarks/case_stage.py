"""CPU per input event of the bulk runner's case-stage process, with the drift
calibrations counted apart.

    .venv/bin/python benchmarks/case_stage.py [--days 90] [--profile FILE]

The backlog is `benchmarks/throughput.py`'s (the simulator, seed 7, its default scenario
and faults). Before the clock starts, the engine's join runs over it in process and the
`cases.adjudicated` records it emits are kept as the case-stage process reads them (value,
headers, the partition the producer's partitioner gives the tool key). Then the case
stage alone (`Engine.process`, as `bulk.runner` calls it) takes them in chunks of 2,000,
each chunk's table changes applied and encoded for the changelog as the runner does
(without metric calls, as the runner's engine makes none).

Two runs on the same records: the first pays every drift calibration (each timed at
`DriftBanks.calibrate_due`); the second starts a fresh engine whose calibration cache is
the first run's, so it pays none: the per-event cost of the case stage itself. CPU is
`time.process_time`; the load average is printed beside it (the machine may be shared).

`--digest` instead prints a SHA-256 over everything the case stage writes (each produced
record's topic, key, value and headers, each table change's changelog bytes, each alert)
on a backlog of `--scenario` (default `all`), with a snapshot written at the end of
every chunk, a planned hand-over half way (`Engine.snapshot`, a new engine rebuilt from
the tables: the snapshots loaded) and the rest after it: two trees whose digests are equal
write the same bytes. A snapshot's `code` (the digest of its classes' source, which any
edit of those modules changes) is left out of it.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import gc
import hashlib
import os
import platform
import time
from datetime import datetime
from typing import Any

from surveillance.bulk import changelog
from surveillance.bulk.batches import default_partition
from surveillance.engine import collector
from surveillance.engine.config import EngineConfig
from surveillance.engine.drift import DriftBanks
from surveillance.engine.horizon import case_records as owned_case_records
from surveillance.engine.pipeline import CASE_SNAPSHOTS, JOIN_TABLE, Engine
from surveillance.engine.records import Output, Record
from surveillance.simulate import Faults, Scenario, simulate
from surveillance.simulate.scenario import scenario_by_name
from surveillance.stats.drift_calibration_cache import Calibrations
from surveillance.stream import topics
from surveillance.stream.ingest import join_partition

CHUNK = 2_000  # the runner's `chunk_records`


def case_records(events: list[Any], partitions: int) -> list[tuple[Record, datetime]]:
    """The `cases.adjudicated` records the join emits over the events, each with the
    arrival time of the event that made it."""
    config = EngineConfig.plain(partitions)
    join_state: dict[str, Any] = {}
    engine = Engine(config, join_state, {}, {})
    out_records: list[tuple[Record, datetime]] = []
    offsets: dict[int, int] = {}
    for event in events:
        pending = [Record(event.topic, join_partition(event.key.decode(), partitions), 0,
                          event.key, event.value)]
        while pending:
            out = engine.process(pending, event.arrival, 0.0)
            out.apply_to({JOIN_TABLE: join_state})
            pending = []
            for p in out.produce:
                if p.topic == topics.CASES_JOIN:
                    pending.append(Record(p.topic, p.partition or 0, 0, p.key, p.value))
                elif p.topic == topics.CASES_ADJUDICATED:
                    partition = (p.partition if p.partition is not None
                                 else default_partition(p.key, partitions))
                    offset = offsets[partition] = offsets.get(partition, -1) + 1
                    out_records.append((Record(p.topic, partition, offset, p.key, p.value,
                                               tuple((p.headers or {}).items())),
                                        event.arrival))
    return out_records


def run(records: list[tuple[Record, datetime]], partitions: int,
        calibrations: Calibrations | None, profile: cProfile.Profile | None = None
        ) -> tuple[float, float, Calibrations, int]:
    """CPU seconds of the case stage over the records, of which in calibrations (timed
    only without a cache: a CPU clock read is a system call, twice per record); the
    calibration cache; the number of alerts."""
    config = EngineConfig.plain(partitions)
    tables: dict[str, dict[str, Any]] = {name: {} for name in changelog.TABLES}
    engine = Engine(config, *(tables[t] for t in changelog.TABLES), metrics=False)
    if calibrations is not None:
        engine.cases.drift = DriftBanks(calibrations=calibrations, calibrate_inline=False)
    engine.cases.rebuild([], set(range(partitions)))
    calibrating = [0.0]
    inner = DriftBanks.calibrate_due

    def timed(self: DriftBanks, tool: str) -> list[Any]:
        started = time.process_time()
        try:
            return inner(self, tool)
        finally:
            calibrating[0] += time.process_time() - started

    if calibrations is None:
        DriftBanks.calibrate_due = timed  # type: ignore[method-assign]
    alerts = 0
    gc.collect()
    try:
        started = time.process_time()
        if profile is not None:
            profile.enable()
        for at in range(0, len(records), CHUNK):
            chunk = records[at:at + CHUNK]
            # The runner's mono clock: the watermark's idle wait never fires on a backlog.
            out = engine.process([r for r, _ in chunk], chunk[-1][1], float(at) * 1e-5)
            out.apply_to(tables)
            for change in out.changes:
                changelog.encode(change.key, change.value)
            alerts += len(out.alerts)
        out = engine.snapshot()
        for change in out.changes:
            changelog.encode(change.key, change.value)
        if profile is not None:
            profile.disable()
        cpu = time.process_time() - started
    finally:
        DriftBanks.calibrate_due = inner  # type: ignore[method-assign]
    assert CASE_SNAPSHOTS in tables
    return cpu, calibrating[0], engine.cases.drift.calibrations, alerts


def _hash_output(digest: Any, out: Output) -> None:
    for p in out.produce:
        digest.update(repr((p.topic, p.key, p.value, p.partition,
                            sorted((p.headers or {}).items()))).encode())
    for change in out.changes:
        value = change.value
        if change.table == CASE_SNAPSHOTS and isinstance(value, dict) and "code" in value:
            value = {**value, "code": None}
        digest.update(repr((change.table, change.partition,
                            changelog.encode(change.key, value))).encode())
    for alert in out.alerts:
        digest.update(alert.model_dump_json().encode())


def digest_run(records: list[tuple[Record, datetime]], partitions: int) -> tuple[str, int, str]:
    """SHA-256 over what the case stage writes over the records, a snapshot after every
    chunk and a planned hand-over half way; the alerts; the tools loaded at the restart."""
    config = dataclasses.replace(EngineConfig.plain(partitions), snapshot_seconds=0.0)
    tables: dict[str, dict[str, Any]] = {name: {} for name in changelog.TABLES}
    digest = hashlib.sha256()
    alerts = 0
    chunks = list(range(0, len(records), CHUNK))
    halves = (chunks[:len(chunks) // 2], chunks[len(chunks) // 2:])
    restored: list[str] = []
    calibrations: Calibrations | None = None
    for half, starts in enumerate(halves):
        engine = Engine(config, *(tables[t] for t in changelog.TABLES), metrics=False)
        if calibrations is not None:
            engine.cases.drift = DriftBanks(calibrations=calibrations, calibrate_inline=False)
        owned = set(range(partitions))
        engine.cases.rebuild(owned_case_records(tables[changelog.CASE_TABLE].items(), owned),
                             owned)
        if half:
            restored = engine.cases.restored
        for at in starts:
            chunk = records[at:at + CHUNK]
            out = engine.process([r for r, _ in chunk], chunk[-1][1], float(at))
            out.apply_to(tables)
            _hash_output(digest, out)
            alerts += len(out.alerts)
        out = engine.snapshot()
        out.apply_to(tables)
        _hash_output(digest, out)
        alerts += len(out.alerts)
        calibrations = engine.cases.drift.calibrations
    return digest.hexdigest(), alerts, ",".join(restored)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3, help="calibration-free runs")
    parser.add_argument("--profile", help="write a cProfile of one calibration-free run")
    parser.add_argument("--digest", action="store_true",
                        help="print a SHA-256 of everything written (no timing)")
    parser.add_argument("--scenario", default=None,
                        help="simulator scenario (default: `all` with --digest, else stable)")
    args = parser.parse_args()
    collector.for_long_lived_state()
    scenario = (scenario_by_name(args.scenario) if args.scenario
                else scenario_by_name("all") if args.digest else Scenario())
    events, _ = simulate(days=args.days, seed=7, scenario=scenario, faults=Faults())
    records = case_records(events, args.partitions)
    n = len(events)
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}")
    if args.digest:
        sha, alerts, restored = digest_run(records, args.partitions)
        print(f"{args.days} days, {len(records)} cases.adjudicated records: {alerts} alerts; "
              f"snapshots loaded at the hand-over: {restored or 'none'}; sha256 {sha}")
        return
    print(f"{args.days} days: {n} input events, {len(records)} cases.adjudicated records")
    cpu, calibrating, cache, alerts = run(records, args.partitions, None)
    print(f"first run (calibrations paid): {cpu:.2f} s CPU, of which calibrations "
          f"{calibrating:.2f} s; {alerts} alerts; "
          f"{(cpu - calibrating) / n * 1e6:.1f} us CPU per input event without them")
    warm = []
    for _ in range(args.runs):
        cpu, calibrating, _, again = run(records, args.partitions, cache)
        assert again == alerts, (again, alerts)
        warm.append(cpu)
    print("calibration-free runs (cache warm): "
          + ", ".join(f"{c:.2f} s" for c in warm)
          + f"; median {sorted(warm)[len(warm) // 2] / n * 1e6:.1f} us CPU per input event "
          f"({sorted(warm)[len(warm) // 2] / len(records) * 1e6:.1f} per case record); "
          f"target 80 us per input event; load average "
          + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    if args.profile:
        profile = cProfile.Profile(time.process_time)
        run(records, args.partitions, cache, profile)
        profile.dump_stats(args.profile)
        print(f"profile written to {args.profile}")


if __name__ == "__main__":
    main()
