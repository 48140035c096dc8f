"""Versioned schema migrations: numbered `.sql` files applied once, in order.

`schema_migrations` records each applied file with a checksum; a file edited after it was
applied is an error (fix it with a new migration instead). A file whose first line is
`-- requires-extension: <name>` is applied only when the server offers that extension
(`pg_available_extensions`): this is how the TimescaleDB features stay optional. Such a
file is not recorded when skipped, so it is applied by the first `migrate` after the
extension becomes available.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import psycopg

from surveillance.store.errors import MigrationError

_REQUIRES = "-- requires-extension:"
#: Serializes concurrent `migrate` runs (two workers starting at once).
_LOCK_KEY = 0x5375727645696C6C  # "SurvEill"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str
    requires_extension: str | None

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def _parse(path_name: str, sql: str) -> Migration:
    stem = path_name.removesuffix(".sql")
    number, _, _ = stem.partition("_")
    if not number.isdigit():
        raise MigrationError(f"migration file {path_name} must start with its number, e.g. 0004_")
    first = sql.lstrip().splitlines()[0] if sql.strip() else ""
    requires = first.removeprefix(_REQUIRES).strip() if first.startswith(_REQUIRES) else None
    return Migration(int(number), stem, sql, requires or None)


def load_migrations(directory: Path | None = None) -> list[Migration]:
    """Every migration file of `directory` (default: the package's), ordered by number."""
    if directory is None:
        files = resources.files("surveillance.store") / "migrations"
        found = [(f.name, f.read_text()) for f in files.iterdir() if f.name.endswith(".sql")]
    else:
        found = [(p.name, p.read_text()) for p in directory.glob("*.sql")]
    migrations = sorted((_parse(name, sql) for name, sql in found), key=lambda m: m.version)
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migration files share a number in {versions}: renumber one")
    return migrations


def plan(
    migrations: list[Migration], applied: dict[int, str], available_extensions: set[str]
) -> list[Migration]:
    """The migrations to apply now, given applied version -> checksum and the extensions."""
    todo = []
    for m in migrations:
        if m.version in applied:
            if applied[m.version] != m.checksum:
                raise MigrationError(
                    f"migration {m.name} was edited after it was applied: restore it and add "
                    "a new numbered migration instead"
                )
            continue
        if m.requires_extension is not None and m.requires_extension not in available_extensions:
            continue
        todo.append(m)
    return todo


def migrate(db_url: str, directory: Path | None = None) -> list[str]:
    """Bring the schema of `db_url` up to date; return the names of the files applied."""
    migrations = load_migrations(directory)
    try:
        conn = psycopg.connect(db_url, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise MigrationError(
            f"cannot connect to the database to migrate it ({_first_line(exc)}): start it or "
            "set SURVEILLANCE_DATABASE__URL"
        ) from exc
    with conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version    integer PRIMARY KEY,
                   name       text NOT NULL,
                   checksum   text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        applied: dict[int, str] = dict(
            conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
        )
        extensions = {r[0] for r in conn.execute("SELECT name FROM pg_available_extensions")}
        done = []
        for m in plan(migrations, applied, extensions):
            try:
                with conn.transaction():
                    conn.execute(m.sql.encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) "
                        "VALUES (%s, %s, %s)",
                        (m.version, m.name, m.checksum),
                    )
            except psycopg.Error as exc:
                raise MigrationError(
                    f"migration {m.name} failed and was rolled back: {_first_line(exc)}"
                ) from exc
            done.append(m.name)
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return done


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
