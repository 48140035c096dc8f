"""The pre-seed alone, in one process against several (`stream.preseed_processes`).

Changelogs of the values the engine writes (the simulator's case records, ~870 bytes of
JSON, and join states, `--days` of them taken in turn; some keys written again, some
deleted) on the embedded broker, then new Faust RocksDB stores pre-seeded from them
(`store_preseed.preseed`) with `--processes` values alternated, `--rounds` times each:
wall, CPU of this process and of the pre-seed's processes, the broker's CPU meanwhile,
and a digest of every entry of the stores (equal across legs, or the run fails).

A measurement, not a test. Prints the load average: the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import resource
import shutil
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import faust
from aiokafka import AIOKafkaProducer
from rocksdict import AccessType, Options, Rdict

from surveillance.bulk import changelog
from surveillance.embedded import EmbeddedBroker
from surveillance.stream import store_preseed
from surveillance.stream.faust_options import TABLE_OPTIONS
from surveillance.stream.topics import TopicSpec, create_topics

sys.path.insert(0, str(Path(__file__).parent))
from state_bounds import cpu_seconds, table_values

TABLES = ("case_state", "join_state")
PARTITIONS = 4


async def write(bootstrap: str, app_id: str, records: int, values: dict[str, list[bytes]]
                ) -> int:
    """`records` changelog records, four in five on `case_state`: each table's values
    taken in turn, under keys of which ~10% are written again and 5% deleted."""
    rng = random.Random(7)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20,
                                max_request_size=4 << 20, max_batch_size=1 << 20)
    await producer.start()
    sent = 0
    try:
        for i in range(records):
            key = changelog.encode(f"ACC-{rng.randrange(int(records * 0.9))}", None)[0]
            table = TABLES[i % 5 == 0]
            kept = values[table]
            value = None if rng.random() < 0.05 else kept[i % len(kept)]
            await producer.send(changelog.topic(app_id, table), key=key, value=value,
                                partition=zlib.crc32(key) % PARTITIONS)
            sent += 1
        await producer.flush()
    finally:
        await producer.stop()
    return sent


def stores(app_id: str, datadir: Path) -> dict[str, Any]:
    app = faust.App(app_id, store="rocksdb://", datadir=str(datadir))
    return {changelog.topic(app_id, name): app.Table(
        name, partitions=PARTITIONS, options=dict(TABLE_OPTIONS)).data for name in TABLES}


def digest(app_id: str, datadir: Path) -> str:
    h = hashlib.sha256()
    for topic, store in sorted(stores(app_id, datadir).items()):
        for p in range(PARTITIONS):
            path = store.partition_path(p)
            if not Path(path).exists():
                continue
            db = Rdict(str(path), Options(raw_mode=True), access_type=AccessType.read_only())
            try:
                for k, v in db.items():
                    h.update(topic.encode() + bytes([p]) + k + b"\0" + v)
            finally:
                db.close()
    return h.hexdigest()[:16]


def leg(bootstrap: str, broker_pid: int, app_id: str, datadir: Path, processes: int
        ) -> tuple[float, float, float, float, int, int, str]:
    held = stores(app_id, datadir)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    broker = cpu_seconds(broker_pid)
    began, cpu = time.perf_counter(), time.process_time()
    done = asyncio.run(store_preseed.preseed(
        held, [(t, p) for t in held for p in range(PARTITIONS)],
        {"bootstrap_servers": bootstrap}, processes=processes))
    wall, own = time.perf_counter() - began, time.process_time() - cpu
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    kids = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    for store in held.values():
        for db in store._dbs.values():
            db.close()
    return (wall, own, kids, cpu_seconds(broker_pid) - broker, done.total,
            done.process_peak_rss, digest(app_id, datadir))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--processes", default="1,2")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--days", type=int, default=30, help="simulated days of values")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-preseed-"))
    app_id = "bench"
    try:
        with EmbeddedBroker(log_dir=tmp) as broker:
            create_topics(broker.bootstrap, [TopicSpec(changelog.topic(app_id, t), PARTITIONS)
                                             for t in TABLES])
            t = time.perf_counter()
            n = asyncio.run(write(broker.bootstrap, app_id, args.records,
                                  table_values(args.days)))
            print(f"wrote {n:,} records in {time.perf_counter() - t:.0f} s; load "
                  f"{os.getloadavg()}; {os.cpu_count()} cores", flush=True)
            digests = set()
            for r in range(args.rounds):
                for processes in (int(p) for p in args.processes.split(",")):
                    where = tmp / f"p{processes}-{r}"
                    wall, own, kids, broker_cpu, total, rss, d = leg(
                        broker.bootstrap, broker.pid, app_id, where, processes)
                    digests.add(d)
                    print(f"processes={processes} round {r}: {total:,} records, wall "
                          f"{wall:.1f} s, CPU {own + kids:.1f} s (this process {own:.1f}, "
                          f"its processes {kids:.1f}; their peak RSS {rss >> 20} MiB at most), "
                          f"broker CPU {broker_cpu:.1f} s; "
                          f"stores {d}; load {os.getloadavg()}", flush=True)
                    shutil.rmtree(where, ignore_errors=True)
            print(f"stores equal across legs: {len(digests) == 1}")
            if len(digests) != 1:
                raise SystemExit(1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
