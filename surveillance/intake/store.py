"""Local record of accepted reports (SQLite under the state dir), for the listing and dedup.

Holds the events exactly as produced to `adverse.events`: patient id and accession are
already pseudonymized (the submission id, which names no patient, is the event id and is
looked up by its keyed hash). The number of
reports is bounded (`max_records`, oldest pruned), so the resubmission record is too.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from surveillance.contracts import AdverseEvent

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
    reference: str
    submitted_by: str
    event: AdverseEvent
    done: frozenset[str]


class ReportStore:
    def __init__(self, path: Path, max_records: int = 100_000) -> None:
        self.path = path
        self.max_records = max_records
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # One connection per call: handlers run in worker threads.
        db = sqlite3.connect(self.path, timeout=10)
        try:
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
        with self._connect() as db:
            db.execute(
                "INSERT OR IGNORE INTO reports VALUES (?, ?, ?, ?, ?, ?)",
                (
                    submission_key,
                    reference,
                    content_hash,
                    event.received_at.isoformat(),
                    submitted_by,
                    event.model_dump_json(),
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

    def recent(self, limit: int | None = None) -> list[StoredReport]:
        """Reports, newest first."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT reference, submitted_by, event_json FROM reports "
                "ORDER BY received_at DESC LIMIT ?",
                (-1 if limit is None else limit,),
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
            )
            for ref, who, body in rows
        ]
