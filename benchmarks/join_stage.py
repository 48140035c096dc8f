"""CPU per input event of the bulk runner's join process, in process, and a digest of
every byte it writes.

    .venv/bin/python benchmarks/join_stage.py [--days 30] [--runs 3] [--profile FILE]

The backlog is `benchmarks/throughput.py`'s (the simulator, seed 7, its default scenario
and faults), each input event on the partition a Kafka producer gives its key. The join
process's work, as `bulk.runner` does it: batches of 20,000 input records (in arrival
order), each record made as the runner makes it of a fetched message (its input value
decoded, `bulk.order.decoded`), merged by event time (`bulk.order`) and cut in chunks of
2,000; each chunk through an `Engine` built as the runner builds it (join objects, no
metrics), its table changes applied and encoded for the changelog (`bulk.changelog.encode`).
Records sent to `cases.join` (an input not on its accession's partition) are read back in
the next chunk.

CPU is `time.process_time` (the machine may be shared: the load average is printed
beside it). The digest (SHA-256) covers every record produced (topic, partition, key,
value, headers) and every changelog record (table, partition, key, value) in order: equal
digests before and after a change to the join path mean the same bytes on every topic.
`--digest` prints it after one run (no timing) on a backlog of `--scenario` (default
`all`: every fault and drift the simulator has), as `case_stage.py --digest` does.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import os
import platform
import time
from typing import Any

from surveillance.bulk import changelog
from surveillance.bulk.order import EventTimeMerge, decoded
from surveillance.engine import collector
from surveillance.engine.config import EngineConfig
from surveillance.engine.pipeline import Engine
from surveillance.engine.records import Record
from surveillance.simulate import Faults, Scenario, simulate
from surveillance.simulate.scenario import scenario_by_name
from surveillance.stream import topics
from surveillance.stream.ingest import join_partition

BATCH = 20_000  # the runner's `max_records`
CHUNK = 2_000  # the runner's `chunk_records`
INPUTS = (topics.AI_RESULTS, topics.REPORTS_FINAL)


def input_records(events: list[Any], partitions: int) -> list[tuple[Record, Any]]:
    """Each input event as a Kafka client gives it (the runner makes a `Record` of it,
    in `read`), with its arrival time."""
    offsets: dict[tuple[str, int], int] = {}
    out = []
    for event in events:
        partition = join_partition(event.key.decode(), partitions)
        offset = offsets[event.topic, partition] = offsets.get((event.topic, partition), -1) + 1
        out.append((Record(event.topic, partition, offset, event.key, event.value),
                    event.arrival))
    return out


def read(fetched: list[Record]) -> list[Record]:
    """The records as the runner makes them of what a fetch brought: its input values
    decoded once (`bulk.order.decoded`), for their order and for ingest."""
    return [Record(m.topic, m.partition, m.offset, m.key, m.value, m.headers,
                   decoded(m.topic, m.value)) for m in fetched]


def in_event_time(records: list[Record], inputs: tuple[str, ...]) -> list[Record]:
    """A batch in the runner's event-time order (`bulk.order`), every partition read to its
    end (nothing held back)."""
    merge = EventTimeMerge(inputs)
    rest = merge.add(records)
    return rest + merge.release(())


def run(records: list[tuple[Record, Any]], partitions: int,
        profile: cProfile.Profile | None = None) -> tuple[float, str, int]:
    """CPU seconds of the join process over the records, the digest of what it wrote,
    and the number of records produced."""
    config = EngineConfig.plain(partitions)
    tables: dict[str, dict[str, Any]] = {name: {} for name in changelog.TABLES}
    engine = Engine(config, *(tables[t] for t in changelog.TABLES),
                    join_objects=True, metrics=False)
    engine.cases.rebuild([], set())
    digest = hashlib.sha256()
    produced = 0
    forwarded: list[Record] = []
    gc.collect()
    started = time.process_time()
    if profile is not None:
        profile.enable()
    for at in range(0, len(records), BATCH):
        batch = records[at:at + BATCH]
        now = batch[-1][1]
        ordered = forwarded + in_event_time(read([r for r, _ in batch]), INPUTS)
        forwarded = []
        for start in range(0, len(ordered), CHUNK):
            out = engine.process(ordered[start:start + CHUNK], now, 0.0)
            out.apply_to(tables)
            for change in out.changes:
                key, value = changelog.encode(change.key, change.value)
                digest.update(b"%s\0%d\0%s\0%s\0" % (change.table.encode(), change.partition,
                                                    key, value or b"-"))
            for p in out.produce:
                produced += 1
                digest.update(b"%s\0%d\0%s\0%s\0%r\0" % (
                    p.topic.encode(), -1 if p.partition is None else p.partition, p.key,
                    p.value, sorted((p.headers or {}).items())))
                if p.topic == topics.CASES_JOIN:
                    forwarded.append(Record(p.topic, p.partition or 0, 0, p.key, p.value))
    if profile is not None:
        profile.disable()
    cpu = time.process_time() - started
    return cpu, digest.hexdigest(), produced


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", help="write a cProfile of one more run to FILE")
    parser.add_argument("--digest", action="store_true",
                        help="print the SHA-256 of everything written after one run")
    parser.add_argument("--scenario", default=None,
                        help="simulator scenario (default: `all` with --digest, else stable)")
    args = parser.parse_args()
    collector.for_long_lived_state()
    scenario = (scenario_by_name(args.scenario) if args.scenario
                else scenario_by_name("all") if args.digest else Scenario())
    events, _ = simulate(days=args.days, seed=7, scenario=scenario, faults=Faults())
    records = input_records(events, args.partitions)
    n = len(records)
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}")
    if args.digest:
        _, digest, produced = run(records, args.partitions)
        print(f"{args.days} days, scenario {args.scenario or 'all'}: {n} input events, "
              f"{produced} records produced; sha256 {digest}")
        return
    cpus = []
    digests = set()
    produced = 0
    for _ in range(args.runs):
        cpu, digest, produced = run(records, args.partitions)
        cpus.append(cpu)
        digests.add(digest)
    assert len(digests) == 1, digests
    median = sorted(cpus)[len(cpus) // 2]
    print(f"{args.days} days: {n} input events, {produced} records produced; digest "
          f"{digests.pop()}")
    print("join process runs: " + ", ".join(f"{c:.2f} s" for c in cpus)
          + f"; median {median / n * 1e6:.1f} us CPU per input event; target 50 us; "
          "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    if args.profile:
        profile = cProfile.Profile(time.process_time)
        run(records, args.partitions, profile)
        profile.dump_stats(args.profile)
        print(f"profile written to {args.profile}")


if __name__ == "__main__":
    main()
