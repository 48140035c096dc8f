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
    by_kind = {kind: [f for f in files if kinds[f] == kind] for kind in ("jsonl", "hl7", "dicom")}
    from aiokafka.errors import KafkaError

    try:
        summary = asyncio.run(_load(by_kind, checkpoint, mapping, client, settings))
    except KafkaError as exc:
        fail(f"the broker at {client['bootstrap_servers']} failed: {exc}; check it is up, then "
             "run the backfill again (what was loaded is not loaded twice)")
        return
    except OSError as exc:
        fail(f"reading the files failed: {exc.strerror or exc}")
        return
    except SurveillanceError as exc:
        fail(str(exc))
        return
    for line in summary.lines_out():
        typer.echo(line)


async def _load(by_kind: dict[str, list[Path]], checkpoint: Any, mapping: Any,
                client: dict[str, Any], settings: Any) -> Any:
    from aiokafka import AIOKafkaProducer
    from tqdm import tqdm

    from surveillance.bulk.files import FileSummary, load_jsonl
    from surveillance.interop.hl7_import import import_files
    from surveillance.interop.hl7_sink import ReportSink
    from surveillance.stream.dlq_seal import Sealer

    summary = FileSummary()
    jsonl, hl7, dicom = by_kind["jsonl"], by_kind["hl7"], by_kind["dicom"]
    sealer = Sealer(settings.dlq_encryption_key.get_secret_value())
    if jsonl:
        lines = sum(f.read_bytes().count(b"\n") for f in jsonl)
        producer = AIOKafkaProducer(acks="all", linger_ms=5, max_batch_size=1 << 20,
                                    **client)
        try:
            await producer.start()
            with tqdm(total=lines, unit="event", unit_scale=True, file=sys.stderr,
                      desc="JSON lines", disable=None) as bar:
                summary = await load_jsonl(jsonl, producer, checkpoint, sealer,
                                           settings.stream.max_event_bytes, bar.update)
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
    if dicom:
        summary.dicom = await _load_dicom(dicom, checkpoint, client, settings, sealer)
    return summary


async def _load_dicom(files: list[Path], checkpoint: Any, client: dict[str, Any],
                      settings: Any, sealer: Any) -> tuple[int, int, int, int]:
    """The DICOM files not loaded before, read together (an image fills in the SRs of its
    study), their results and problems sent, then each marked done."""
    import hashlib
    from zoneinfo import ZoneInfo

    from aiokafka import AIOKafkaProducer

    from surveillance.bulk.files import dicom_records
    from surveillance.clinical.baselines import load_registry
    from surveillance.interop.dicom_files import read_dicom_files

    digests = {f: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
    todo = [f for f in files if not checkpoint.done(digests[f])]
    read = read_dicom_files(todo, load_registry(settings.baselines_file),
                            settings.dicom.default_site, ZoneInfo(settings.dicom.timezone))
    records = dicom_records(read, sealer, settings.stream.max_event_bytes)
    producer = AIOKafkaProducer(acks="all", linger_ms=5, **client)
    await producer.start()
    try:
        sends = [await producer.send(topic, value, key=key) for topic, key, value in records]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()
    for f in todo:
        checkpoint.save(digests[f], 1)
    return len(files), len(files) - len(todo), len(read.results), len(read.problems)
