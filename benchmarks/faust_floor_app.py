"""A Faust agent that does nothing: the floor under any Faust worker on this broker.

Started by `throughput.py` as `faust -A faust_floor_app worker` (cwd benchmarks/), with
the worker's consumer and producer settings, Faust's consumer as `stream.faust_consumer`
leaves it and the worker's batch iteration (`stream.batches`), over the same input
topics, in its own consumer group. It counts the events it is handed and writes the rate
to FLOOR_OUT once it has seen FLOOR_EXPECTED: what Faust itself costs per record before
the service does any work.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import faust

from surveillance.settings import get_settings
from surveillance.stream import faust_consumer
from surveillance.stream.batches import take_batches
from surveillance.stream.faust_options import WORKER_OPTIONS
from surveillance.stream.topics import AI_RESULTS, REPORTS_FINAL

EXPECTED = int(os.environ["FLOOR_EXPECTED"])
OUT = Path(os.environ["FLOOR_OUT"])

faust_consumer.install(get_settings().stream.fetch_max_wait_ms)  # as the worker does
app = faust.App(
    "bench-faust-floor",
    broker=f"kafka://{os.environ['FLOOR_BOOTSTRAP']}",
    store="memory://",
    web_port=int(os.environ["FLOOR_WEB_PORT"]),
    web_host="127.0.0.1",
    datadir=os.environ["FLOOR_DATADIR"],
    **WORKER_OPTIONS,
)
inputs = app.topic(
    AI_RESULTS, REPORTS_FINAL, key_type=bytes, value_type=bytes,
    key_serializer="raw", value_serializer="raw",
)


@app.agent(inputs)
async def floor(stream: Any) -> None:
    seen, first = 0, 0.0
    async for batch in take_batches(stream, 1000):
        if not seen:
            first = time.perf_counter()
        seen += len(batch)
        if seen >= EXPECTED:
            elapsed = time.perf_counter() - first
            OUT.write_text(json.dumps({"events": seen, "seconds": elapsed}))
