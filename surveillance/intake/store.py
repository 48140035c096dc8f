"""Local record of accepted reports (SQLite under the state dir), for reading and dedup.

Holds the events as produced to `adverse.events` (patient id and accession already
pseudonymized; the submission id, which names no patient, is looked up by its keyed
hash), except the narrative and the reporter's name and contact: those are sealed with
the store key, or not kept (`sealing.py`). The file is created 0600 in a 0700 folder,
and deleted or overwritten rows are zeroed (`secure_delete`). Every read of a report is
recorded in `read_audit` (who, when, which reference, whether allowed). The number of
reports is bounded (`max_records`, oldest pruned), so the resubmission record is too.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from surveillance.contracts import AdverseEvent
from surveillance.intake.sealing import NOT_KEPT, Sealer, split

_SCHEMA = """
CREATE TABLE IF NOT EXISTS reports (
    submission_key TEXT PRIMARY KEY,
    reference      TEXT NOT NULL UNIQUE,
    content_hash   TEXT NOT NULL,
    received_at    TEXT NOT NULL,
    submitted_by   TEXT NOT NULL,
    event_json     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS reports_received ON reports (received_at);
CREATE TABLE IF NOT EXISTS obligations_done (
    reference      TEXT NOT NULL,
    obligation     TEXT NOT NULL,
    submitted_on   TEXT NOT NULL,
    PRIMARY KEY (reference, obligation)
);
CREATE TABLE IF NOT EXISTS read_audit (
    at             TEXT NOT NULL,
    reader         TEXT NOT NULL,
    reference      TEXT NOT NULL,
    action         TEXT NOT NULL
);
"""


def store_path(state_dir: Path) -> Path:
    return state_dir / "intake" / "reports.sqlite3"


@dataclass(frozen=True)
class Existing:
    reference: str
    content_hash: str
    event: AdverseEvent


@dataclass(frozen=True)
class StoredReport:
    """A stored report; `event` has `NOT_KEPT` for its private text, `sealed` holds it."""

    reference: str
    submitted_by: str
    event: AdverseEvent
    done: frozenset[str]
    submission_key: str = ""
    sealed: bytes | None = None


def _private_file(path: Path) -> None:
    """Create the store's folder 0700 and file 0600 (whatever the umask), or tighten them."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    os.chmod(path, 0o600)


class ReportStore:
    def __init__(
        self, path: Path, max_records: int = 100_000, sealer: Sealer | None = None
    ) -> None:
        self.path = path
        self.max_records = max_records
        self.sealer = sealer or Sealer(None)
        _private_file(path)
        with self._connect() as db:
            db.executescript(_SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(reports)")}
            if "sealed" not in columns:
                db.execute("ALTER TABLE reports ADD COLUMN sealed BLOB")

    def seal_clear_rows(self) -> int:
        """Seal (or, without a key, drop) private text a file from before sealing holds.

        Run by the intake at start-up, which has the key; returns the rows changed.
        """
        with self._connect() as db:
            rows = db.execute(
                "SELECT submission_key, event_json FROM reports WHERE sealed IS NULL"
            ).fetchall()
            changed = 0
            for key, body in rows:
                event = AdverseEvent.model_validate_json(body)
                if event.event.narrative == NOT_KEPT:
                    continue
                redacted, private = split(event)
                db.execute(
                    "UPDATE reports SET event_json = ?, sealed = ? WHERE submission_key = ?",
                    (redacted.model_dump_json(), self.sealer.seal(private, key), key),
                )
                changed += 1
        return changed

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # One connection per call: handlers run in worker threads.
        db = sqlite3.connect(self.path, timeout=10)
        try:
            db.execute("PRAGMA secure_delete = ON")
            with db:
                yield db
        finally:
            db.close()

    def find(self, submission_key: str) -> Existing | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT reference, content_hash, event_json FROM reports WHERE submission_key = ?",
                (submission_key,),
            ).fetchone()
        if row is None:
            return None
        return Existing(row[0], row[1], AdverseEvent.model_validate_json(row[2]))

    def add(
        self,
        submission_key: str,
        reference: str,
        content_hash: str,
        submitted_by: str,
        event: AdverseEvent,
    ) -> None:
        redacted, private = split(event)
        with self._connect() as db:
            db.execute(
                "INSERT OR IGNORE INTO reports (submission_key, reference, content_hash, "
                "received_at, submitted_by, event_json, sealed) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    submission_key,
                    reference,
                    content_hash,
                    event.received_at.isoformat(),
                    submitted_by,
                    redacted.model_dump_json(),
                    self.sealer.seal(private, submission_key),
                ),
            )
            db.execute(
                "DELETE FROM reports WHERE rowid IN (SELECT rowid FROM reports "
                "ORDER BY received_at DESC LIMIT -1 OFFSET ?)",
                (self.max_records,),
            )

    def mark_done(self, reference: str, obligation: str, on: date) -> bool:
        """Record that an obligation (e.g. `us_803:fda`) was reported; False if no such report."""
        with self._connect() as db:
            known = db.execute("SELECT 1 FROM reports WHERE reference = ?", (reference,)).fetchone()
            if not known:
                return False
            db.execute(
                "INSERT OR REPLACE INTO obligations_done VALUES (?, ?, ?)",
                (reference, obligation, on.isoformat()),
            )
        return True

    def recent(
        self, limit: int | None = None, submitted_by: str | None = None
    ) -> list[StoredReport]:
        """Reports, newest first; only those of `submitted_by` when given."""
        where, args = ("WHERE submitted_by = ?", [submitted_by]) if submitted_by else ("", [])
        return self._select(where, args, limit)

    def get(self, reference: str) -> StoredReport | None:
        found = self._select("WHERE reference = ?", [reference], 1)
        return found[0] if found else None

    def _select(self, where: str, args: list[str], limit: int | None) -> list[StoredReport]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT reference, submitted_by, event_json, submission_key, sealed "
                f"FROM reports {where} ORDER BY received_at DESC LIMIT ?",
                (*args, -1 if limit is None else limit),
            ).fetchall()
            done: dict[str, set[str]] = {}
            for ref, obligation in db.execute("SELECT reference, obligation FROM obligations_done"):
                done.setdefault(ref, set()).add(obligation)
        return [
            StoredReport(
                reference=ref,
                submitted_by=who,
                event=AdverseEvent.model_validate_json(body),
                done=frozenset(done.get(ref, set())),
                submission_key=key,
                sealed=sealed,
            )
            for ref, who, body, key, sealed in rows
        ]

    def audit(self, at: datetime, reader: str, action: str, references: Iterable[str]) -> None:
        """Record that `reader` read (or was refused) these reports."""
        with self._connect() as db:
            db.executemany(
                "INSERT INTO read_audit VALUES (?, ?, ?, ?)",
                [(at.isoformat(), reader, ref, action) for ref in references],
            )

    def audit_trail(self) -> list[tuple[str, str, str, str]]:
        """(at, reader, reference, action), oldest first."""
        with self._connect() as db:
            rows = db.execute("SELECT at, reader, reference, action FROM read_audit ORDER BY rowid")
            return [tuple(r) for r in rows]
