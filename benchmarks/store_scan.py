"""The case stage's read of its owned records back from RocksDB (`table_stores.raw_items`),
with and without readahead.

Sixteen partition databases of the case records the engine writes for a simulation
(`--days`; ~870 bytes of JSON each, ~600 of them the drift features; taken in turn,
each under a case id of its own), written as the pre-seed writes them (one SST file
each, `stream.sst_runs`);
then `--rounds` times, in alternating order: the worker's read (the keys and values iterated,
`horizon.light_record` each) as it was before session 21 and as it is, with
`table_stores.scan_options` (readahead, the block cache left alone), and, as the ceiling
of any read in one process, the databases iterated without decoding. With the worker's
garbage-collector thresholds (`engine.collector`). The lists are compared (equal, or the
run fails).

A measurement, not a test. Prints the load average: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import rocksdict

from surveillance.clinical.ledger import CaseRecord
from surveillance.engine import collector
from surveillance.engine.horizon import case_records, light_record
from surveillance.stream import sst_runs
from surveillance.stream.table_stores import scan_options

sys.path.insert(0, str(Path(__file__).parent))
from state_bounds import table_values

OFFSET_KEY = b"__faust\0offset__"
PARTITIONS = 16


def build(tmp: Path, records: int, values: list[bytes]) -> list[tuple[int, Path]]:
    """`records` of `values` (taken in turn, each under a case id of its own) in
    `PARTITIONS` databases, one SST file each, as the pre-seed writes them."""
    options = sst_runs.file_options({"bloom_filter_size": 3})
    dbs = []
    for p in range(PARTITIONS):
        path = tmp / f"case_table-{p}.db"
        db = rocksdict.Rdict(str(path), rocksdict.Options(raw_mode=True))
        run = sst_runs.Run()
        for i in range(records // PARTITIONS):
            key = json.dumps(f"ACC-{p}-{i:08d}:ich-triage").encode()
            run.values[key] = values[(p * records // PARTITIONS + i) % len(values)]
        run.offset = len(run.values)
        sst_runs.write(sst_runs.Partition(db, OFFSET_KEY, options, tmp / f".{p}.sst", True),
                       run)
        db.close()
        dbs.append((p, path))
    return dbs


def _open(path: Path) -> rocksdict.Rdict:
    return rocksdict.Rdict(str(path), rocksdict.Options(raw_mode=True),
                           access_type=rocksdict.AccessType.read_only())


def in_process(dbs: list[tuple[int, Path]], owned: set[int], read_ahead: bool = True
               ) -> list[tuple[str, CaseRecord]]:
    """The worker's read (`stream.table_stores.raw_items`, `horizon.case_records`); before
    session 21 without `scan_options` (`read_ahead` false)."""
    decode_key = msgspec.json.Decoder(str).decode
    out: list[tuple[str, CaseRecord]] = []
    for _, path in dbs:
        db = _open(path)
        items = db.items(read_opt=scan_options()) if read_ahead else db.items()
        out += case_records(((decode_key(k), v) for k, v in items if k != OFFSET_KEY),
                            owned, light_record)
        db.close()
    return out


def iterated(dbs: list[tuple[int, Path]], owned: set[int]) -> int:
    n = 0
    for _, path in dbs:
        db = _open(path)
        for _ in db.items(read_opt=scan_options()):
            n += 1
        db.close()
    return n


def timed(fn, *args):  # type: ignore[no-untyped-def]
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=400_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--days", type=int, default=30,
                        help="simulated days whose case records are written (in turn)")
    args = parser.parse_args()
    collector.for_long_lived_state()  # as the worker (`stream.app`)
    tmp = Path(tempfile.mkdtemp(prefix="bench-store-scan-"))
    owned = set(range(PARTITIONS))
    try:
        t = time.perf_counter()
        values = table_values(args.days)["case_state"]
        dbs = build(tmp, args.records, values)
        size = sum(len(v) for v in values) / len(values)
        disk = sum(f.stat().st_size for _, path in dbs for f in path.glob("*.sst"))
        print(f"wrote {args.records:,} records ({len(values):,} simulated, {size:,.0f} bytes "
              f"of JSON on average; {disk / args.records:,.0f} bytes each on disk) in "
              f"{PARTITIONS} databases in {time.perf_counter() - t:.0f} s; load "
              f"{os.getloadavg()}; {os.cpu_count()} cores", flush=True)
        for r in range(args.rounds):
            if r % 2:  # the order alternated: the first read of a round warms the cache
                one, wall1, cpu1 = timed(in_process, dbs, owned)
                before, wall0, cpu0 = timed(in_process, dbs, owned, False)
            else:
                before, wall0, cpu0 = timed(in_process, dbs, owned, False)
                one, wall1, cpu1 = timed(in_process, dbs, owned)
            _, wall3, _ = timed(iterated, dbs, owned)
            if one != before:
                raise SystemExit("the read with readahead differs from the one without")
            n = len(one)
            del before, one
            print(f"round {r}: {n:,} records. As before (no readahead): wall {wall0:.2f} s, "
                  f"CPU {cpu0:.2f} s ({cpu0 / n * 1e6:.1f} us a record); with readahead: wall "
                  f"{wall1:.2f} s, CPU {cpu1:.2f} s ({cpu1 / n * 1e6:.1f} us); ceiling "
                  f"(iterated with readahead, not decoded): wall {wall3:.2f} s, "
                  f"{wall3 / n * 1e6:.1f} us. Equal: True; load {os.getloadavg()}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
