"""`surveillance hl7 import`: HL7 batch files onto `reports.final`, for years of backfill.

Parsing runs in worker processes (one per core by default) and the event loop produces,
so an import uses every core. Resumable: a checkpoint file records, per file content
(SHA-256), how many of its messages are durably on the topic; a re-run skips them
(counted as already imported) and so changes nothing, and an interrupted run goes on
where the broker last confirmed.
Within a run a repeated sending facility + MSH-10 is written once. Rejected messages go
to `reports.final.dlq` with their reason, as from the listener. The summary counts
accepted / skipped / rejected per reason; reasons never quote message content.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import multiprocessing
import os
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

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


# Parsing runs in worker processes (pure and CPU-bound: one core parses ~14,000 messages/s
# at best), the event loop only produces; set by `_init` in each worker.
_MAPPING: Mapping | None = None



@dataclass(frozen=True)
class Outcome:
    """A parsed message, small to pickle: its reports serialized, or why not."""

    key: str
    records: list[tuple[bytes, bytes]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    #: (ACK code, error code, reason) of a rejected message.
    rejected: tuple[str, str, str] | None = None


def _init(mapping: Mapping) -> None:
    global _MAPPING
    _MAPPING = mapping


def parse_for_import(raw: bytes) -> Outcome:
    assert _MAPPING is not None
    result = parse_message(raw, _MAPPING)
    if isinstance(result, Rejection):
        key = result.header.dedup_key if result.header is not None else ""
        return Outcome(key, rejected=(result.code, result.error, result.reason))
    records = [(r.accession_number.encode("utf-8"),
                r.model_dump_json(exclude_none=True).encode("utf-8")) for r in result.reports]
    return Outcome(result.header.dedup_key, records, [k.reason for k in result.skipped])


async def import_files(
    files: list[Path], sink: ReportSink, mapping: Mapping, checkpoint: Checkpoint,
    progress: Callable[[int], None] = lambda _n: None, workers: int | None = None,
) -> ImportSummary:
    summary = ImportSummary(files=len(files))
    seen: set[str] = set()
    loop = asyncio.get_running_loop()
    # spawn: a forked child would inherit the producer's sockets and event loop.
    with ProcessPoolExecutor(workers or os.cpu_count() or 1,
                             mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init, initargs=(mapping,)) as pool:
        for path in files:
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            skip = checkpoint.done(digest)
            messages = list(split_batch(data))
            summary.messages += len(messages)
            summary.already_imported += min(skip, len(messages))
            progress(sum(len(m) for m in messages[:skip]))
            # The workers parse the next chunk while this one is produced.
            starts = list(range(skip, len(messages), CHUNK))
            ahead = None
            for k, start in enumerate(starts):
                chunk = messages[start:start + CHUNK]
                current = ahead or loop.run_in_executor(None, _parse_all, pool, chunk)
                ahead = None
                if k + 1 < len(starts):
                    nxt = starts[k + 1]
                    ahead = loop.run_in_executor(None, _parse_all, pool,
                                                 messages[nxt:nxt + CHUNK])
                outcomes = await current
                records: list[tuple[bytes, bytes]] = []
                for n, (raw, outcome) in enumerate(zip(chunk, outcomes, strict=True)):
                    await _tally(path, start + n + 1, raw, outcome, sink, summary, seen, records)
                await sink.deliver_records(records)
                checkpoint.save(digest, start + len(chunk))
                progress(sum(len(m) for m in chunk))
    return summary


def _parse_all(pool: ProcessPoolExecutor, chunk: list[bytes]) -> list[Outcome]:
    return list(pool.map(parse_for_import, chunk, chunksize=250))


async def _tally(path: Path, index: int, raw: bytes, outcome: Outcome, sink: ReportSink,
                 summary: ImportSummary, seen: set[str],
                 records: list[tuple[bytes, bytes]]) -> None:
    if outcome.rejected is not None:
        code, error, reason = outcome.rejected
        summary.rejected[f"{code} {error} {_ERROR_NAMES.get(error, '')}".strip()] += 1
        if len(summary.examples) < 10:
            summary.examples.append(f"{path.name}#{index}: {reason}")
        await sink.dead_letter(dead_letter(raw, f"{code} {error}: {reason}", "hl7 import"),
                               outcome.key.encode() if outcome.key else None)
        return
    if outcome.key in seen:
        summary.duplicates += 1
        return
    seen.add(outcome.key)
    summary.accepted += 1
    summary.reports += len(outcome.records)
    for reason in outcome.skipped:
        summary.skipped[reason] += 1
    records.extend(outcome.records)
