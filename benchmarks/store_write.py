"""Sustained write rate of the store writer's database path into the embedded PostgreSQL.

Measures what the writer does per message after Kafka hands it over: validate the JSON
against the contract (`Decoder`), then COPY + upsert in batches of `--batch` events, one
transaction each (`write_batch`), as `run_writer` does. Each adjudicated case writes two
rows (cases, ai_results) plus the model_versions upsert. A second pass replays the same
events (all conflicts) to show the idempotent path's rate. Target: >= 20,000 rows/s.

    .venv/bin/python benchmarks/store_write.py [--events 100000] [--batch 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from surveillance.embedded import EmbeddedPostgres
from surveillance.store.batch import write_batch
from surveillance.store.migrate import migrate
from surveillance.store.rows import Decoder, Rows
from tests.store_fixtures import make_cases


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{mem_kb / 1024 / 1024:.0f} GiB RAM"
    except OSError:
        mem = "unknown RAM"
    return (
        f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} CPUs "
        f"(shared with other jobs), {mem}, Python {platform.python_version()}"
    )


async def write_all(url: str, messages: list[bytes], batch: int) -> float:
    decoder = Decoder("cases", "alerts", "snapshots", "adverse")
    async with await psycopg.AsyncConnection.connect(url) as conn:
        started = time.perf_counter()
        for first in range(0, len(messages), batch):
            rows = Rows.empty()
            for offset, value in enumerate(messages[first : first + batch], first):
                decoder.add(rows, "cases", 0, offset, value)
            await write_batch(conn, rows)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=2000)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    cases = make_cases(1, args.events, "ich-triage", date(2026, 7, 1), 92)
    messages = [c.model_dump_json().encode() for c in cases]
    with EmbeddedPostgres() as pg:
        migrate(pg.url)
        with psycopg.connect(pg.url) as conn:
            print(f"server: {conn.execute('SELECT version()').fetchone()[0]}")  # type: ignore[index]
        seconds = asyncio.run(write_all(pg.url, messages, args.batch))
        replay = asyncio.run(write_all(pg.url, messages, args.batch))
        with psycopg.connect(pg.url) as conn:
            stored = conn.execute("SELECT count(*) FROM cases").fetchone()[0]  # type: ignore[index]
    assert stored == args.events, stored
    rows = 2 * args.events
    print(f"events: {args.events} adjudicated cases, batches of {args.batch}")
    print(
        f"first write: {seconds:.2f} s = {args.events / seconds:,.0f} events/s = "
        f"{rows / seconds:,.0f} rows/s (cases + ai_results)"
    )
    print(
        f"replay (all conflicts, nothing changes): {replay:.2f} s = "
        f"{args.events / replay:,.0f} events/s = {rows / replay:,.0f} rows/s"
    )


if __name__ == "__main__":
    main()
