"""Time to export one tool-quarter of 100,000 cases (HTML, PDF, JSON, CSV). Target < 10 s.

Loads the cases (plus alerts, drift snapshots and adverse events) into a fresh embedded
PostgreSQL through the writer's batch path, then times `export_quarterly` alone.

    .venv/bin/python benchmarks/quarterly_export.py [--cases 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.store_write import machine
from surveillance.embedded import EmbeddedPostgres
from surveillance.report.quarterly import export_quarterly
from surveillance.store.batch import write_batch
from surveillance.store.migrate import migrate
from surveillance.store.rows import Decoder, Rows
from tests.store_fixtures import (
    make_adverse_events,
    make_alerts,
    make_cases,
    make_snapshots,
)

TOOL = "ich-triage"
START = date(2026, 7, 1)


async def load(url: str, cases: int) -> None:
    decoder = Decoder("c", "a", "s", "ae")
    events = [("c", c) for c in make_cases(5, cases, TOOL, START, 92)]
    events += [("a", a) for a in make_alerts(TOOL, START)]
    events += [("s", s) for s in make_snapshots(TOOL, START, 180)]
    events += [("ae", e) for e in make_adverse_events(TOOL, START)]
    async with await psycopg.AsyncConnection.connect(url) as conn:
        for first in range(0, len(events), 5000):
            rows = Rows.empty()
            for offset, (topic, event) in enumerate(events[first : first + 5000], first):
                decoder.add(rows, topic, 0, offset, event.model_dump_json().encode())
            await write_batch(conn, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with EmbeddedPostgres() as pg, tempfile.TemporaryDirectory() as out:
        migrate(pg.url)
        asyncio.run(load(pg.url, args.cases))
        started = time.perf_counter()
        exported = export_quarterly(pg.url, "2026Q3", TOOL, Path(out))
        seconds = time.perf_counter() - started
        sizes = {p.suffix: p.stat().st_size for p in Path(out).glob(f"{TOOL}-*.*")}
    print(
        f"export of {TOOL} 2026Q3, {args.cases:,} cases: {seconds:.2f} s "
        f"({exported[0].pdf_pages} PDF pages; bytes {sizes})"
    )


if __name__ == "__main__":
    main()
