"""`surveillance backfill FILE...`: the files onto the input topics, with a progress bar.

The I/O shell of `bulk.files`: it sorts the files by format, loads the JSON lines ones
with an acks=all producer and the HL7 ones through `hl7 import`'s path, both under the
same checkpoint file, and prints what it did. Errors a user can cause end in one line.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import typer

from surveillance.commands.common import fail
from surveillance.errors import SurveillanceError


def load_files(paths: list[Path], checkpoint_path: Path, client: dict[str, Any],
               settings: Any, hl7_mapping: Path | None = None) -> None:
    from surveillance.bulk.files import kind_of
    from surveillance.interop.hl7_import import Checkpoint, hl7_files
    from surveillance.interop.hl7_mapping import load_mapping

    try:
        files = hl7_files(paths)  # directories walked, in a stable order
        kinds = {f: kind_of(f) for f in files}
        checkpoint = Checkpoint(checkpoint_path)
        mapping = load_mapping(hl7_mapping)
    except SurveillanceError as exc:
        fail(str(exc))
        return
    jsonl = [f for f in files if kinds[f] == "jsonl"]
    hl7 = [f for f in files if kinds[f] == "hl7"]
    try:
        summary = asyncio.run(_load(jsonl, hl7, checkpoint, mapping, client, settings))
    except OSError as exc:
        fail(f"reading the files failed: {exc.strerror or exc}")
        return
    except SurveillanceError as exc:
        fail(str(exc))
        return
    for line in summary.lines_out():
        typer.echo(line)


async def _load(jsonl: list[Path], hl7: list[Path], checkpoint: Any, mapping: Any,
                client: dict[str, Any], settings: Any) -> Any:
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError
    from tqdm import tqdm

    from surveillance.bulk.files import FileSummary, load_jsonl
    from surveillance.interop.hl7_import import import_files
    from surveillance.interop.hl7_sink import ReportSink
    from surveillance.stream.dlq_seal import Sealer

    summary = FileSummary()
    if jsonl:
        lines = sum(f.read_bytes().count(b"\n") for f in jsonl)
        producer = AIOKafkaProducer(acks="all", linger_ms=5, max_batch_size=1 << 20,
                                    **client)
        try:
            await producer.start()
            with tqdm(total=lines, unit="event", unit_scale=True, file=sys.stderr,
                      desc="JSON lines", disable=None) as bar:
                summary = await load_jsonl(
                    jsonl, producer, checkpoint,
                    Sealer(settings.dlq_encryption_key.get_secret_value()),
                    settings.stream.max_event_bytes, bar.update)
        except KafkaError as exc:
            fail(f"the broker at {client['bootstrap_servers']} failed: {exc}; check it is up, "
                 "then run the backfill again (the loaded lines are not loaded twice)")
        finally:
            await producer.stop()
    if hl7:
        sink = await ReportSink(client["bootstrap_servers"], linger_ms=20).start()
        try:
            total = sum(f.stat().st_size for f in hl7)
            with tqdm(total=total, unit="B", unit_scale=True, file=sys.stderr, desc="HL7",
                      disable=None) as bar:
                summary.hl7 = await import_files(hl7, sink, mapping, checkpoint, bar.update)
        finally:
            await sink.stop()
    return summary
