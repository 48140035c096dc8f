"""`db migrate`: an unusable TimescaleDB is refused before any change, pending migrations
are applied all or nothing, and the TimescaleDB helpers of the writer (refresh window,
job health) are right. Pure checks plus one run against the embedded PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from surveillance.store.errors import MigrationError
from surveillance.store.migrate import ServerState, load_migrations, migrate, plan, preflight
from surveillance.store.timescale import job_samples, refresh_window

ALL = load_migrations()
PLAIN = ServerState({"plpgsql": "1.0"}, {"plpgsql": "1.0"}, set())


def _server(
    available: str | None = "2.28.3", installed: str | None = None, preloaded: bool = True
) -> ServerState:
    return ServerState(
        {"plpgsql": "1.0", **({"timescaledb": available} if available else {})},
        {"plpgsql": "1.0", **({"timescaledb": installed} if installed else {})},
        {"pg_stat_statements", "timescaledb"} if preloaded else {"pg_stat_statements"},
    )


def test_plain_postgresql_and_a_usable_timescaledb_pass() -> None:
    preflight(plan(ALL, {}, set(PLAIN.available_extensions)), PLAIN)
    server = _server()
    preflight(plan(ALL, {}, set(server.available_extensions)), server)
    preflight([], _server(installed="2.28.3"))


@pytest.mark.parametrize(
    ("server", "message"),
    [
        (_server(preloaded=False), "installed but not preloaded"),
        # Created earlier, preload removed since: refused even with nothing to apply.
        (_server(installed="2.28.3", preloaded=False), "installed but not preloaded"),
        (_server(available="2.11.2"), "timescaledb 2.11.2 is older than 2.13"),
        (_server(available="2.28.3", installed="2.9.0"), "timescaledb 2.9.0 is older"),
    ],
)
def test_an_unusable_timescaledb_is_refused_in_one_line(server: ServerState, message: str) -> None:
    todo = plan(ALL, {m.version: m.checksum for m in ALL if m.version < 3}, set(
        server.available_extensions))  # fmt: skip
    with pytest.raises(MigrationError, match=message) as raised:
        preflight(todo, server)
    assert "\n" not in str(raised.value) and "nothing was changed" in str(raised.value)


@pytest.mark.integration
def test_pending_migrations_are_applied_all_or_nothing(tmp_path: Path, fresh_database: str) -> None:
    (tmp_path / "0001_a.sql").write_text("CREATE TABLE a (x integer);")
    (tmp_path / "0002_b.sql").write_text("CREATE TABLE b (x integer);")
    (tmp_path / "0003_broken.sql").write_text("CREATE TABLE c (x integer); SELECT 1/0;")
    with pytest.raises(MigrationError, match=r"^migration 0003_broken failed, so none of the 3"):
        migrate(fresh_database, tmp_path)
    with psycopg.connect(fresh_database) as conn:
        assert conn.execute(
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace"
        ).fetchone() == (0,)
    (tmp_path / "0003_broken.sql").write_text("CREATE TABLE c (x integer);")
    assert migrate(fresh_database, tmp_path) == ["0001_a", "0002_b", "0003_broken"]


NOW = datetime(2026, 12, 1, 14, 30, tzinfo=UTC)
HOUR = timedelta(hours=1)


def test_only_days_the_refresh_policy_materializes_are_refreshed() -> None:
    day = timedelta(days=1)
    assert refresh_window([NOW, NOW - timedelta(hours=20)], NOW) is None
    # A backfill 150..60 days back and one event yesterday: whole UTC days, old ones only.
    dates = [NOW - 150 * day, NOW - 60 * day + timedelta(hours=3), NOW - timedelta(hours=20)]
    start, end = refresh_window(dates, NOW) or (None, None)
    assert start == datetime(2026, 7, 4, tzinfo=UTC)
    assert end == datetime(2026, 10, 3, tzinfo=UTC)
    # Late events up to the day before yesterday: the window stops where real time starts.
    start, end = refresh_window([NOW - 2 * day, NOW - timedelta(hours=30)], NOW) or (None, None)
    assert (start, end) == (datetime(2026, 11, 29, tzinfo=UTC), datetime(2026, 11, 30, tzinfo=UTC))


def test_job_samples_name_jobs_as_labels_and_measure_lateness() -> None:
    rows = [
        ("policy_refresh_continuous_aggregate", "tool_daily", "Failed", 3, NOW - 2 * HOUR),
        ("policy_compression", "ai_results", "Success", 0, NOW + 5 * HOUR),
        ("surveillance_expire_cases", "", None, 0, None),  # never run yet
        ('_my "job"', "", "Success", 0, NOW),
    ]
    samples = job_samples(rows, NOW)
    assert [(s.job, s.last_run_failed, s.consecutive_failures, s.overdue_seconds)
            for s in samples] == [
        ("policy_refresh_continuous_aggregate:tool_daily", True, 3, 7200.0),
        ("policy_compression:ai_results", False, 0, 0.0),
        ("surveillance_expire_cases", False, 0, 0.0),
        ("job_my__job_", False, 0, 0.0),
    ]  # fmt: skip
