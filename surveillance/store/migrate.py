"""Versioned schema migrations: numbered `.sql` files applied once, in order.

`schema_migrations` records each applied file with a checksum; a file edited after it was
applied is an error (fix it with a new migration instead). A file whose first line is
`-- requires-extension: <name>` is applied only when the server offers that extension
(`pg_available_extensions`): this is how the TimescaleDB features stay optional. Such a
file is not recorded when skipped, so it is applied by the first `migrate` after the
extension becomes available.

Before anything is changed, `migrate` checks that an extension it is about to use is usable:
TimescaleDB must be preloaded (`shared_preload_libraries`) and of a supported version, or
the run ends with one line saying what to do. All pending files are then applied in one
transaction: either every one of them is applied, or none is. On TimescaleDB, `tool_daily`
is then materialized up to the refresh policy's end offset (store/timescale.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg

from surveillance.store.errors import MigrationError

_REQUIRES = "-- requires-extension:"
#: Serializes concurrent `migrate` runs (two workers starting at once).
_LOCK_KEY = 0x5375727645696C6C  # "SurvEill"
#: The oldest TimescaleDB the migrations can run on (`by_range` dimensions).
TIMESCALEDB_MIN_VERSION = (2, 13)
#: What tests/test_store_timescale.py ran against (TimescaleDB built from source on
#: Debian 12's PostgreSQL); deploy/ pins the same (tests/test_deploy_files.py).
TESTED_TIMESCALEDB = "2.28.3"
TESTED_POSTGRES_MAJOR = 15


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


@dataclass(frozen=True)
class ServerState:
    """What the pre-flight check needs to know about the server, read before any change."""

    available_extensions: dict[str, str]  # name -> default (installable) version
    installed_extensions: dict[str, str]  # name -> version created in this database
    preloaded_libraries: set[str]


def preflight(todo: list[Migration], server: ServerState) -> None:
    """Refuse, before any change, a plan that would stop half-way on an unusable extension."""
    needs_timescale = any(m.requires_extension == "timescaledb" for m in todo)
    if not needs_timescale and "timescaledb" not in server.installed_extensions:
        return
    if "timescaledb" not in server.preloaded_libraries:
        raise MigrationError(
            "the timescaledb extension is installed but not preloaded: add "
            "shared_preload_libraries = 'timescaledb' to postgresql.conf, restart PostgreSQL "
            "and run `surveillance db migrate` again (nothing was changed)"
        )
    version = server.installed_extensions.get(
        "timescaledb", server.available_extensions.get("timescaledb", "")
    )
    if _version(version) < TIMESCALEDB_MIN_VERSION:
        wanted = ".".join(map(str, TIMESCALEDB_MIN_VERSION))
        raise MigrationError(
            f"timescaledb {version or '?'} is older than {wanted}, the oldest version these "
            "migrations support: upgrade the extension (ALTER EXTENSION timescaledb UPDATE) "
            "and run `surveillance db migrate` again (nothing was changed)"
        )


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split("-")[0].split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


def _server_state(conn: psycopg.Connection[Any]) -> ServerState:
    available = dict(
        conn.execute("SELECT name, default_version FROM pg_available_extensions").fetchall()
    )
    installed = dict(conn.execute("SELECT extname, extversion FROM pg_extension").fetchall())
    row = conn.execute("SELECT current_setting('shared_preload_libraries')").fetchone()
    preloaded = {lib.strip().strip('"') for lib in (row[0] if row else "").split(",")}
    return ServerState(available, installed, preloaded - {""})


#: Case-level data is kept this long by default (10 years; see 0006_timescale_sizing.sql).
DEFAULT_RETENTION_DAYS = 3653


def migrate(
    db_url: str, directory: Path | None = None, retention_days: int = DEFAULT_RETENTION_DAYS
) -> list[str]:
    """Bring the schema of `db_url` up to date; return the names of the files applied.

    On TimescaleDB the retention (`retention_days`) is put in force in the same transaction.
    """
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
        try:
            applied = _migrate_locked(conn, migrations, retention_days)
            _materialize_tool_daily(conn)
            return applied
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))


def _migrate_locked(
    conn: psycopg.Connection[Any], migrations: list[Migration], retention_days: int
) -> list[str]:
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    applied: dict[int, str] = {}
    if exists is not None and exists[0]:
        applied = dict(conn.execute("SELECT version, checksum FROM schema_migrations").fetchall())
    server = _server_state(conn)
    todo = plan(migrations, applied, set(server.available_extensions))
    preflight(todo, server)
    step = "creating schema_migrations"
    try:
        with conn.transaction():
            conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version    integer PRIMARY KEY,
                       name       text NOT NULL,
                       checksum   text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            for m in todo:
                step = f"migration {m.name}"
                conn.execute(m.sql.encode())
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (m.version, m.name, m.checksum),
                )
            step = "setting the retention"
            retention = conn.execute(
                "SELECT to_regprocedure('surveillance_set_retention(integer)') IS NOT NULL"
            ).fetchone()
            if retention is not None and retention[0]:
                conn.execute("SELECT surveillance_set_retention(%s)", (retention_days,))
    except psycopg.Error as exc:
        raise MigrationError(
            f"{step} failed, so none of the {len(todo)} pending migrations was applied: "
            f"{_first_line(exc)}"
        ) from exc
    return [m.name for m in todo]


def _materialize_tool_daily(conn: psycopg.Connection[Any]) -> None:
    """On TimescaleDB, materialize every day of `tool_daily` the refresh policy covers.

    Outside the migration transaction (a refresh cannot run inside one). Days already
    materialized and not invalidated are skipped, so this is cheap after the first time;
    the first time it brings history stored before the continuous aggregate existed (or
    before migration 0006) into it, instead of leaving that to a policy run.
    """
    row = conn.execute(
        "SELECT to_regclass('timescaledb_information.continuous_aggregates') IS NOT NULL"
    ).fetchone()
    if row is None or not row[0]:
        return
    found = conn.execute(
        "SELECT count(*) FROM timescaledb_information.continuous_aggregates "
        "WHERE view_name = 'tool_daily'"
    ).fetchone()
    if found is None or found[0] != 1:
        return
    try:
        conn.execute(
            "CALL refresh_continuous_aggregate('tool_daily', NULL, "
            "date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - INTERVAL '1 day')"
        )
    except psycopg.Error as exc:
        raise MigrationError(
            f"the migrations are applied, but materializing tool_daily failed "
            f"({_first_line(exc)}): fix the cause and run `surveillance db migrate` again"
        ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
