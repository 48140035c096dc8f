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
import itertools
import json
import multiprocessing
import os
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import NamedTuple

from surveillance.contracts import DeadLetter
from surveillance.interop.errors import InteropError
from surveillance.interop.hl7_batch import split_batch
from surveillance.interop.hl7_header import Rejection
from surveillance.interop.hl7_mapping import Mapping
from surveillance.interop.hl7_parse import parse_message
from surveillance.interop.hl7_sink import ReportSink, dead_letter

#: Messages per durable step: one broker acknowledgement wait, one checkpoint write.
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


# Parsing runs in worker processes (pure and CPU-bound), the event loop only tallies and
# produces (record batches, one acknowledgement wait per chunk); set by `_init` in each
# worker.
_MAPPING: Mapping | None = None
_EARLIEST: date | None = None

#: Chunks being parsed ahead of the one being produced: enough to keep every worker busy
#: while the broker acknowledges, across file boundaries.
AHEAD = 3


class Outcome(NamedTuple):
    """A parsed message, cheap to pickle: its reports serialized, or why not."""

    key: str
    records: list[tuple[bytes, bytes]]
    skipped: list[str]
    #: (ACK code, error code, reason) of a rejected message.
    rejected: tuple[str, str, str] | None


def _init(mapping: Mapping, earliest: date | None = None) -> None:
    global _MAPPING, _EARLIEST
    _MAPPING, _EARLIEST = mapping, earliest


def parse_for_import(raw: bytes) -> Outcome:
    assert _MAPPING is not None
    # Report times the worker would dead-letter are rejected here, with the reason.
    result = parse_message(raw, _MAPPING, datetime.now(UTC), _EARLIEST)
    if isinstance(result, Rejection):
        key = result.header.dedup_key if result.header is not None else ""
        return Outcome(key, [], [], (result.code, result.error, result.reason))
    return Outcome(result.header.dedup_key, result.records,
                   [k.reason for k in result.skipped], None)


def _parse_chunk(chunk: list[bytes]) -> list[Outcome]:
    return [parse_for_import(raw) for raw in chunk]


@dataclass
class _Chunk:
    path: Path
    digest: str
    start: int
    messages: list[bytes]
    outcomes: asyncio.Future[list[list[Outcome]]]


async def import_files(
    files: list[Path], sink: ReportSink, mapping: Mapping, checkpoint: Checkpoint,
    progress: Callable[[int], None] = lambda _n: None, workers: int | None = None,
    earliest: date | None = None,
) -> ImportSummary:
    summary = ImportSummary(files=len(files))
    seen: set[str] = set()
    n_workers = workers or os.cpu_count() or 1
    # spawn: a forked child would inherit the producer's sockets and event loop.
    with ProcessPoolExecutor(n_workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init, initargs=(mapping, earliest)) as pool:
        loop = asyncio.get_running_loop()

        def parse(messages: list[bytes]) -> asyncio.Future[list[list[Outcome]]]:
            # Slices of a few hundred messages: one pickle round trip each, and every
            # worker gets its share of a chunk.
            step = max(50, min(500, len(messages) // (2 * n_workers) or 1))
            return asyncio.gather(*(
                loop.run_in_executor(pool, _parse_chunk, messages[i:i + step])
                for i in range(0, len(messages), step)))

        chunks = _chunks(files, checkpoint, summary, progress, parse)
        ahead: deque[_Chunk] = deque(itertools.islice(chunks, AHEAD))
        while ahead:
            chunk = ahead.popleft()
            outcomes = [o for part in await chunk.outcomes for o in part]
            ahead.extend(itertools.islice(chunks, 1))
            records: list[tuple[bytes, bytes]] = []
            letters: list[tuple[DeadLetter, bytes | None]] = []
            for n, (raw, outcome) in enumerate(zip(chunk.messages, outcomes, strict=True)):
                _tally(chunk.path, chunk.start + n + 1, raw, outcome, summary, seen,
                       records, letters)
            await asyncio.gather(sink.deliver_records(records),
                                 *(sink.dead_letter(letter, key) for letter, key in letters))
            checkpoint.save(chunk.digest, chunk.start + len(chunk.messages))
            progress(sum(len(m) for m in chunk.messages))
    return summary


def _chunks(files: list[Path], checkpoint: Checkpoint, summary: ImportSummary,
            progress: Callable[[int], None],
            parse: Callable[[list[bytes]], asyncio.Future[list[list[Outcome]]]],
            ) -> Iterator[_Chunk]:
    """The chunks still to import, in file order, each handed to the workers as it is
    read (a file is read when the previous one's chunks are all submitted)."""
    for path in files:
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        skip = checkpoint.done(digest)
        messages = list(split_batch(data))
        summary.messages += len(messages)
        summary.already_imported += min(skip, len(messages))
        progress(sum(len(m) for m in messages[:skip]))
        for start in range(skip, len(messages), CHUNK):
            part = messages[start:start + CHUNK]
            yield _Chunk(path, digest, start, part, parse(part))


def _tally(path: Path, index: int, raw: bytes, outcome: Outcome, summary: ImportSummary,
           seen: set[str], records: list[tuple[bytes, bytes]],
           letters: list[tuple[DeadLetter, bytes | None]]) -> None:
    if outcome.rejected is not None:
        code, error, reason = outcome.rejected
        summary.rejected[f"{code} {error} {_ERROR_NAMES.get(error, '')}".strip()] += 1
        if len(summary.examples) < 10:
            summary.examples.append(f"{path.name}#{index}: {reason}")
        letters.append((dead_letter(raw, f"{code} {error}: {reason}", "hl7 import"),
                        outcome.key.encode() if outcome.key else None))
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
