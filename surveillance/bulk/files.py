"""Backfill from files: the events in them put on the input topics, as their sources would.

`surveillance backfill FILE...` loads the files first, then replays the topics through the
engine (`bulk.runner`): the same engine, the same changelogs, the same dead letters, and a
worker started afterwards takes over as after any backfill. The events go through the
topics rather than straight into the engine because the topics are the service's record
of what it was sent: a later replay (a fixed statistic, a new site's worker) reads them
there, and the join's and case stage's partitioning is the one the live path uses.

Formats (by content, not name):
- JSON lines as `surveillance simulate` writes them (`simulate.output`): each line's value
  on its topic, with its key;
- HL7 v2 (batch files or single messages): `hl7 import`'s path (`interop.hl7_import`:
  parse workers, one report per message, rejects dead-lettered with the HL7 error);
- DICOM (Part 10) SRs, and images of their studies: `dicom parse`'s path
  (`interop.dicom_files`): each SR's AI results on `ai.results`, keyed by accession as the
  C-STORE receiver sends them; a file or SR group that gives none is a dead letter.

Idempotent: a checkpoint records per file content (SHA-256) how many of its lines or
messages (a DICOM file: 1) are durably on the topics (`hl7_import.Checkpoint`); a re-run
skips them and an interrupted one goes on from where the broker last confirmed. A line
sent twice anyway (a crash between the broker's acknowledgement and the checkpoint write)
is one event id, which the join counts once (a DICOM result's id is derived from its SR
and group).

A line that is not an event (not JSON, a field missing, bad base64, a topic the service
does not read) goes to `<topic>.dlq` (`reports.final.dlq` when the topic is not known)
with the file, line number and reason; its bytes sealed as the engine's dead letters are.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from surveillance.contracts import DeadLetter
from surveillance.interop.dicom_files import DicomFiles
from surveillance.interop.errors import InteropError
from surveillance.interop.hl7_import import Checkpoint, ImportSummary
from surveillance.stream import topics
from surveillance.stream.dlq_seal import Sealer

#: Lines per durable step: one acknowledgement wait and one checkpoint write.
CHUNK = 5_000
#: Where the events of a JSON lines file may go: the topics the service reads as input.
ACCEPTED = frozenset(topics.INPUT_TOPICS)
_HL7_STARTS = (b"MSH|", b"FHS|", b"BHS|", b"\x0bMSH|")


class FileFormatError(InteropError):
    """A file given to the backfill is in no format it reads."""


@dataclass
class FileSummary:
    files: int = 0
    lines: int = 0
    loaded: int = 0
    already_loaded: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    hl7: ImportSummary | None = None
    #: DICOM: files read, files already loaded, AI results loaded, problems dead-lettered.
    dicom: tuple[int, int, int, int] | None = None

    def lines_out(self) -> list[str]:
        out = []
        if self.files:
            out.append(f"{self.files} JSON lines files, {self.lines} lines: {self.loaded} "
                       f"events loaded, {self.already_loaded} already loaded, "
                       f"{sum(self.rejected.values())} dead-lettered")
            out += [f"  dead-lettered: {why}: {n}" for why, n in sorted(self.rejected.items())]
        if self.hl7 is not None:
            out += ["HL7: " + line for line in self.hl7.lines()]
        if self.dicom is not None:
            files, already, results, problems = self.dicom
            out.append(f"DICOM: {files} files: {already} already loaded, {results} AI results "
                       f"loaded, {problems} dead-lettered")
        return out


def kind_of(path: Path) -> str:
    """'jsonl', 'hl7' or 'dicom', from the file's first bytes."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(512)
    except OSError as exc:
        raise FileFormatError(f"cannot read {path}: {exc.strerror}") from exc
    if raw[128:132] == b"DICM":
        return "dicom"
    head = raw.lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(_HL7_STARTS):
        return "hl7"
    if head.startswith(b"{") or not head:
        return "jsonl"
    raise FileFormatError(
        f"{path}: neither JSON lines (as `surveillance simulate` writes), HL7 v2 (MSH, FHS "
        "or BHS first) nor DICOM Part 10 (DICM at byte 128); give only those")


def parse_line(line: bytes) -> tuple[str, bytes | None, bytes] | str:
    """(topic, key, value) of one line, or why it is not an event."""
    try:
        row = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return "invalid_json"
    if not isinstance(row, dict):
        return "not_an_object"
    topic = row.get("topic")
    if not isinstance(topic, str) or topic not in ACCEPTED:
        return "unknown_topic"
    try:
        key = base64.b64decode(row.get("key") or "", validate=True)
        value = base64.b64decode(row["value_b64"], validate=True)
    except KeyError:
        return "missing_value"
    except (binascii.Error, ValueError, TypeError):
        return "bad_base64"
    return topic, key or None, value


def _letter(sealer: Sealer, path: Path, number: int | None, line: bytes, why: str,
            topic: str, limit: int) -> DeadLetter:
    where = path.name if number is None else f"{path.name} line {number}"
    return DeadLetter(
        source_topic=topic, source_partition=-1, source_offset=-1,
        reason=f"backfill file: {why}: {where}"[:2000],
        received_at=datetime.now(UTC),
        original_b64=sealer.seal(line[:limit]), original_size=len(line),
        encryption=sealer.encryption,
    )


def _topic_named(line: bytes) -> str:
    """The topic a rejected line names, when it names one the service reads."""
    try:
        topic = json.loads(line).get("topic")
    except (ValueError, UnicodeDecodeError, AttributeError):
        return topics.REPORTS_FINAL
    return topic if isinstance(topic, str) and topic in ACCEPTED else topics.REPORTS_FINAL


def _chunks(files: list[Path], checkpoint: Checkpoint, summary: FileSummary
            ) -> Iterator[tuple[Path, str, int, list[bytes]]]:
    for path in files:
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        lines = data.splitlines()
        skip = min(checkpoint.done(digest), len(lines))
        summary.files += 1
        summary.lines += len(lines)
        summary.already_loaded += skip
        for start in range(skip, len(lines), CHUNK):
            yield path, digest, start, lines[start:start + CHUNK]


async def load_jsonl(files: list[Path], producer: Any, checkpoint: Checkpoint,
                     sealer: Sealer, max_bytes: int,
                     progress: Callable[[int], None] = lambda _n: None) -> FileSummary:
    """Put the events of JSON lines `files` on their topics (`producer`: a started
    AIOKafkaProducer with acks=all), chunk by chunk, checkpointed once acknowledged."""
    summary = FileSummary()
    for path, digest, start, chunk in _chunks(files, checkpoint, summary):
        sends = []
        for number, line in enumerate(chunk, start=start + 1):
            if not line.strip():
                continue
            event = parse_line(line)
            if isinstance(event, str):
                summary.rejected[event] += 1
                topic = _topic_named(line)
                letter = _letter(sealer, path, number, line, event, topic, max_bytes)
                sends.append(await producer.send(topics.dlq(topic),
                                                 letter.model_dump_json().encode()))
                continue
            topic, key, value = event
            sends.append(await producer.send(topic, value, key=key))
            summary.loaded += 1
        await asyncio.gather(*sends)
        checkpoint.save(digest, start + len(chunk))
        progress(len(chunk))
    return summary


def dicom_records(read: DicomFiles, sealer: Sealer, limit: int
                  ) -> list[tuple[str, bytes | None, bytes]]:
    """(topic, key, value) of each AI result of DICOM files, and of a dead letter per
    problem (the file's first `limit` bytes, sealed, as the original)."""
    out: list[tuple[str, bytes | None, bytes]] = [
        (topics.AI_RESULTS, result.accession_number.encode(),
         result.model_dump_json().encode()) for _, result in read.results]
    for path, why in read.problems:
        letter = _letter(sealer, path, None, path.read_bytes(), why, topics.AI_RESULTS, limit)
        out.append((topics.dlq(topics.AI_RESULTS), None, letter.model_dump_json().encode()))
    return out
