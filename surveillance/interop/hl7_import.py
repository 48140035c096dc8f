"""`surveillance hl7 import`: HL7 batch files onto `reports.final`, for years of backfill.

Resumable: a checkpoint file records, per file content (SHA-256), how many of its
messages are durably on the topic; a re-run skips them (counted as already imported) and
so changes nothing, and an interrupted run goes on where the broker last confirmed.
Within a run a repeated sending facility + MSH-10 is written once. Rejected messages go
to `reports.final.dlq` with their reason, as from the listener. The summary counts
accepted / skipped / rejected per reason; reasons never quote message content.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from surveillance.contracts import ReportFinal
from surveillance.interop.errors import InteropError
from surveillance.interop.hl7_batch import split_batch
from surveillance.interop.hl7_mapping import Mapping
from surveillance.interop.hl7_parse import Rejection, parse_message
from surveillance.interop.hl7_sink import ReportSink, dead_letter

#: Messages per durable step: one broker round trip, one checkpoint write.
CHUNK = 5_000

_ERROR_NAMES = {
    "100": "segment sequence", "101": "required field missing", "102": "data type",
    "103": "table value not found", "200": "unsupported message type",
    "203": "unsupported version", "207": "internal",
}


@dataclass
class ImportSummary:
    files: int = 0
    messages: int = 0
    accepted: int = 0
    reports: int = 0
    already_imported: int = 0
    duplicates: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    #: "file#n: reason" of the first rejections, for the interface analyst.
    examples: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [
            f"{self.files} files, {self.messages} messages: {self.accepted} accepted "
            f"({self.reports} reports), {self.already_imported} already imported, "
            f"{self.duplicates} duplicates, {sum(self.rejected.values())} rejected",
        ]
        out += [f"  skipped group: {reason}: {n}" for reason, n in sorted(self.skipped.items())]
        out += [f"  rejected: {reason}: {n}" for reason, n in sorted(self.rejected.items())]
        out += [f"  e.g. {example}" for example in self.examples]
        return out


def hl7_files(paths: Iterable[Path]) -> list[Path]:
    """Files given, and the files under directories given (sorted: a stable order)."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out += sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        elif path.is_file():
            out.append(path)
        else:
            raise InteropError(f"{path}: no such file or directory")
    return out


class Checkpoint:
    """Per file content: messages already durably handled. Written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._done: dict[str, int] = {}
        if path.exists():
            try:
                self._done = {str(k): int(v) for k, v in json.loads(path.read_text()).items()}
            except (ValueError, AttributeError) as exc:
                raise InteropError(f"the checkpoint {path} is not valid; remove it to "
                                   "re-import from the start") from exc

    def done(self, digest: str) -> int:
        return self._done.get(digest, 0)

    def save(self, digest: str, n: int) -> None:
        self._done[digest] = n
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text(json.dumps(self._done, sort_keys=True))
        os.replace(tmp, self.path)


async def import_files(
    files: list[Path], sink: ReportSink, mapping: Mapping, checkpoint: Checkpoint,
    progress: Callable[[int], None] = lambda _n: None,
) -> ImportSummary:
    summary = ImportSummary(files=len(files))
    seen: set[str] = set()
    for path in files:
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        skip = checkpoint.done(digest)
        batch: list[ReportFinal] = []
        index = 0
        for index, message in enumerate(split_batch(data), start=1):
            summary.messages += 1
            progress(len(message))
            if index <= skip:
                summary.already_imported += 1
                continue
            await _one(path, index, message, mapping, sink, summary, seen, batch)
            if index % CHUNK == 0:
                await sink.deliver(batch)
                batch.clear()
                checkpoint.save(digest, index)
        await sink.deliver(batch)
        if index > skip:
            checkpoint.save(digest, index)
    return summary


async def _one(path: Path, index: int, message: bytes, mapping: Mapping, sink: ReportSink,
               summary: ImportSummary, seen: set[str], batch: list[ReportFinal]) -> None:
    result = parse_message(message, mapping)
    if isinstance(result, Rejection):
        category = f"{result.code} {result.error} {_ERROR_NAMES.get(result.error, '')}".strip()
        summary.rejected[category] += 1
        if len(summary.examples) < 10:
            summary.examples.append(f"{path.name}#{index}: {result.reason}")
        key = result.header.dedup_key.encode() if result.header is not None else None
        await sink.dead_letter(dead_letter(
            message, f"{result.code} {result.error}: {result.reason}", "hl7 import"), key)
        return
    if result.header.dedup_key in seen:
        summary.duplicates += 1
        return
    seen.add(result.header.dedup_key)
    summary.accepted += 1
    summary.reports += len(result.reports)
    for skipped in result.skipped:
        summary.skipped[skipped.reason] += 1
    batch.extend(result.reports)
