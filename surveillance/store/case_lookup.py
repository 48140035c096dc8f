"""The store's latest revision of a case: where the case horizon resolves a late correction.

`engine.horizon` asks this for a revision of a case whose record has left the worker's
live state (an addendum months after the study). The store writer keeps the latest
revision of every case in `cases`, upserting only higher revisions, which is the
previous revision the ledger needs. Rare (a few per day at most), so one synchronous
query on one autocommit connection, made on first use; a store that cannot be reached
raises, and the worker or the backfill exits and retries the record after its restart
(never a guess: counting the revision as new could count the case twice).
"""

from __future__ import annotations

from typing import Any

import psycopg

from surveillance.engine.horizon import StoredCase

_QUERY = ("SELECT revision, outcome, tool_id, software_version, site FROM cases "
          "WHERE case_id = %s")


class StoreCaseLookup:
    def __init__(self, url: str, connect_timeout: float = 10.0) -> None:
        self._url = url
        self._timeout = connect_timeout
        self._conn: psycopg.Connection[Any] | None = None

    def __call__(self, case_id: str) -> StoredCase | None:
        try:
            row = self._connection().execute(_QUERY, (case_id,)).fetchone()
        except psycopg.OperationalError:
            self.close()  # a broken connection: the next call (after a restart) reconnects
            raise
        if row is None:
            return None
        revision, outcome, tool, version, site = row
        return StoredCase(int(revision), str(outcome), str(tool), str(version), str(site))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._url, autocommit=True,
                                         connect_timeout=round(self._timeout))
        return self._conn


def lookup_of(url: str) -> StoreCaseLookup | None:
    """The lookup of the store at `url`, or None when no store is configured ("")."""
    return StoreCaseLookup(url) if url else None
