"""The store on a real TimescaleDB server: hypertables, the continuous aggregate, chunk
pruning, compression, policies and job health.

These tests need a TimescaleDB server with `shared_preload_libraries = 'timescaledb'`:
set SURVEILLANCE_TEST_TIMESCALE_URL to a URL of it whose user may create databases (each
test makes its own). `db migrate`'s refusal needs a server where the extension is
installed but not preloaded: SURVEILLANCE_TEST_TIMESCALE_UNLOADED_URL. Without them the
tests are skipped and say why; the plain-PostgreSQL path is tested on every run elsewhere
(tests/test_store_*.py, tests/test_dashboards.py, tests/test_quarterly_export.py).

The main test writes through the real store writer (embedded broker, Kafka consumer
group) a quarter 60-150 days in the past, then late events and corrected reports 35 days
back, then compresses every old chunk and replays everything (plus late events into the
compressed chunks). After each step the continuous aggregate (real-time and materialized
alone), the dashboards' SQL and the quarterly export must equal plain GROUP BYs over the
base tables, and the export must equal the one computed from the same messages on plain
PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from surveillance.clinical.baselines import load_registry
from surveillance.contracts import AdjudicatedCase
from surveillance.embedded import EmbeddedBroker
from surveillance.observe.metrics import render, set_timescaledb_jobs
from surveillance.report.quarterly_review import build_review
from surveillance.store import event_queries, queries
from surveillance.store.migrate import load_migrations, migrate
from surveillance.store.rows import AI_RESULT_COLUMNS, case_rows
from surveillance.store.timescale import read_job_health
from surveillance.store.writer import WriterSettings
from tests.store_fixtures import corrected, make_alerts, make_cases, make_snapshots
from tests.store_plans import PLANS, PlanCapture, scans
from tests.test_dashboards import check_panels_against_base_tables
from tests.test_store_upserts import _write
from tests.test_store_writer import _produce, _run_until_stored, _topics

TIMESCALE_URL = os.environ.get("SURVEILLANCE_TEST_TIMESCALE_URL", "")
UNLOADED_URL = os.environ.get("SURVEILLANCE_TEST_TIMESCALE_UNLOADED_URL", "")

pytestmark = pytest.mark.integration
needs_timescale = pytest.mark.skipif(
    not TIMESCALE_URL,
    reason="SURVEILLANCE_TEST_TIMESCALE_URL is not set: this test needs a TimescaleDB "
    "server with shared_preload_libraries = 'timescaledb' (see the README)",
)

TOOLS = ("ich-triage", "ptx-triage")
NOW = datetime.now(UTC)
TODAY = NOW.date()


def _database(server_url: str) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    parts = urlsplit(server_url)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def tsdb() -> Iterator[str]:
    yield from _database(TIMESCALE_URL)


def _quarters(first: date, last: date) -> list[queries.Quarter]:
    out, day = [], first
    while day <= last:
        quarter = queries.parse_quarter(f"{day.year}Q{(day.month - 1) // 3 + 1}")
        out.append(quarter)
        day = quarter.end
    return out


def _messages(
    cases: list[AdjudicatedCase], extra: Sequence[tuple[str, bytes]] = ()
) -> list[tuple[str, bytes]]:
    return [("c", c.model_dump_json().encode()) for c in cases] + list(extra)


def _cagg_equals_group_by(conn: psycopg.Connection[Any]) -> int:
    truth = conn.execute(
        "SELECT time_bucket('1 day', inference_date) AS day, tool_id, count(*), "
        "count(*) FILTER (WHERE result_indicator) FROM ai_results GROUP BY 1, 2 ORDER BY 1, 2"
    ).fetchall()
    live = conn.execute(
        "SELECT day, tool_id, results, positive_calls FROM tool_daily ORDER BY 1, 2"
    ).fetchall()
    assert live == truth, "tool_daily (real time) differs from GROUP BY ai_results"
    # The materialization alone (what the policy and the writer's refreshes wrote).
    conn.execute("ALTER MATERIALIZED VIEW tool_daily SET (timescaledb.materialized_only = true)")
    try:
        stored = conn.execute(
            "SELECT day, tool_id, results, positive_calls FROM tool_daily ORDER BY 1, 2"
        ).fetchall()
    finally:
        conn.execute(
            "ALTER MATERIALIZED VIEW tool_daily SET (timescaledb.materialized_only = false)"
        )
    assert stored == truth, "tool_daily's materialization misses a backfill or late event"
    return len(truth)


def _export_equals_group_by(
    conn: psycopg.Connection[Any], quarter: queries.Quarter
) -> dict[str, Any]:
    reviews = {}
    for tool in TOOLS:
        review = build_review(conn, load_registry()[tool], quarter, NOW)
        days = conn.execute(
            "SELECT time_bucket('1 day', inference_date)::date::text, count(*), "
            "count(*) FILTER (WHERE result_indicator) FROM ai_results "
            "WHERE tool_id = %s AND inference_date >= %s AND inference_date < %s "
            "GROUP BY 1 ORDER BY 1",
            (tool, quarter.start_utc, quarter.end_utc),
        ).fetchall()
        assert [(d["day"], d["results"], d["positive_calls"]) for d in review["ai_daily"]] == days
        outcomes = dict(
            conn.execute(
                "SELECT outcome, count(*) FROM cases WHERE tool_id = %s AND study_date >= %s "
                "AND study_date < %s GROUP BY 1",
                (tool, quarter.start, quarter.end),
            ).fetchall()
        )
        counts = review["counts"] or {}
        for outcome in ("TP", "FP", "TN", "FN", "indeterminate", "pending", "unlabelled"):
            assert counts.get(outcome.lower(), 0) == outcomes.get(outcome, 0), (tool, outcome)
        assert counts.get("volume", 0) == sum(outcomes.values())
        reviews[tool] = review
    return reviews


def _first_difference(a: Any, b: Any, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{path}.{key}")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return _first_difference(x, y, f"{path}[{i}]")
    return f"{path}: {a!r} != {b!r}"


def _check(url: str, plain_url: str, step: str) -> None:
    first, last = TODAY - timedelta(days=160), TODAY
    with psycopg.connect(url, autocommit=True) as conn, psycopg.connect(plain_url) as plain:
        days = _cagg_equals_group_by(conn)
        start = datetime(first.year, first.month, first.day, tzinfo=UTC)
        panel_days = check_panels_against_base_tables(conn, TOOLS[0], start, NOW)
        exported = 0
        for quarter in _quarters(first, last):
            reviews = _export_equals_group_by(conn, quarter)
            on_plain = {t: build_review(plain, load_registry()[t], quarter, NOW) for t in TOOLS}
            assert reviews == on_plain, (
                _first_difference(reviews, on_plain), _counts(url), _counts(plain_url))
            exported += sum(len(r["ai_daily"]) for r in reviews.values())
    print(
        f"\n{step}: tool_daily = GROUP BY on {days} tool-days (real time and materialized); "
        f"dashboard panels on {panel_days}; export = GROUP BY and = plain PostgreSQL on "
        f"{exported} tool-days"
    )


async def _store(broker: EmbeddedBroker, url: str, messages: list[tuple[str, bytes]]) -> None:
    """Produce `messages` on new topics and run the store writer until it stored them all."""
    names = _topics(broker)
    topic = {"c": names.cases, "a": names.alerts, "s": names.snapshots}
    produced = [(topic[t], str(uuid.uuid4()), v) for t, v in messages]
    await _produce(broker.bootstrap, produced)
    settings = WriterSettings(
        group_id=f"store-{uuid.uuid4().hex[:6]}", batch_size=1000, job_poll_seconds=0.2
    )
    await _run_until_stored(broker.bootstrap, url, names, settings, len(produced))


def _counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # type: ignore[index]
            for t in ("cases", "ai_results", "ai_event_ids", "metric_snapshots", "store_rejects")
        }


@needs_timescale
async def test_backfill_late_corrections_and_compressed_replay_equal_group_bys(
    broker: EmbeddedBroker, tsdb: str, fresh_database: str
) -> None:
    assert migrate(tsdb)[-1] == "0007_committee_series"
    migrate(fresh_database)
    quarter_start = TODAY - timedelta(days=150)
    backfill: list[AdjudicatedCase] = []
    extra: list[tuple[str, bytes]] = []
    for i, tool in enumerate(TOOLS):
        backfill += make_cases(100 + i, 2500, tool, quarter_start, 91)  # 60-150 days back
        extra += [("a", a.model_dump_json().encode()) for a in make_alerts(tool, quarter_start)]
        extra += [
            ("s", s.model_dump_json().encode()) for s in make_snapshots(tool, quarter_start, 60)
        ]

    # 1. A backfilled quarter.
    step1 = _messages(backfill, extra)
    await _store(broker, tsdb, step1)
    await _write(fresh_database, step1, chunk=1000)
    _check(tsdb, fresh_database, "backfilled quarter 60-150 days back")

    # 2. Late events and corrected reports 35 days back, corrections of the quarter too.
    day_35 = TODAY - timedelta(days=35)
    late = [c for i, t in enumerate(TOOLS) for c in make_cases(200 + i, 300, t, day_35, 1)]
    labelled = [c for c in backfill + late if c.label in ("present", "absent")]
    fixes = [corrected(c, 1) for c in labelled[::25]]
    step2 = _messages(late + fixes)
    await _store(broker, tsdb, step2)
    await _write(fresh_database, step2, chunk=1000)
    _check(tsdb, fresh_database, "late events and corrections 35 days back")
    before = _counts(tsdb)

    # 3. Compress every chunk older than 30 days, then replay all of it, with late events
    # landing in compressed chunks.
    with psycopg.connect(tsdb, autocommit=True) as conn:
        compressed = conn.execute(
            "SELECT count(compress_chunk(c, if_not_compressed => true)) FROM "
            "(SELECT show_chunks('ai_results', older_than => INTERVAL '30 days') AS c "
            " UNION ALL SELECT show_chunks('metric_snapshots', older_than => INTERVAL '30 days')) s"
        ).fetchone()
    assert compressed is not None and compressed[0] >= 4
    day_100 = TODAY - timedelta(days=100)
    into_compressed = [
        c for i, t in enumerate(TOOLS) for c in make_cases(300 + i, 100, t, day_100, 3)
    ]
    step3 = step1 + step2 + _messages(into_compressed)
    await _store(broker, tsdb, step3)
    await _write(fresh_database, step3, chunk=1000)
    after = _counts(tsdb)
    added = len(into_compressed)
    assert after == {
        **before,
        "cases": before["cases"] + added,
        "ai_results": before["ai_results"] + added,
        "ai_event_ids": before["ai_event_ids"] + added,
    }, "the replay into compressed chunks changed more than the new events"
    assert after["store_rejects"] == 0
    _check(tsdb, fresh_database, f"{compressed[0]} chunks compressed, everything replayed")
    _chunks_are_pruned(tsdb)

    # 4. The refresh policy itself (run as the scheduler would) keeps it all right.
    with psycopg.connect(tsdb, autocommit=True) as conn:
        job = conn.execute(
            "SELECT job_id FROM timescaledb_information.jobs "
            "WHERE proc_name = 'policy_refresh_continuous_aggregate'"
        ).fetchone()
        assert job is not None
        conn.execute("CALL run_job(%s)", job)
    _check(tsdb, fresh_database, "after the refresh policy ran")

    # The writer exported the policies' health while it ran.
    exposed = render()[0].decode()
    for name in ("policy_refresh_continuous_aggregate:tool_daily", "policy_compression:ai_results",
                 "policy_retention:ai_results", "surveillance_expire_cases"):
        assert f'surveillance_timescaledb_job_consecutive_failures{{job="{name}"}}' in exposed


def _chunks_are_pruned(url: str) -> None:
    """The drift, export and dashboard reads touch only chunks overlapping their range."""
    with psycopg.connect(url) as conn:
        chunks: dict[str, tuple[str, datetime, datetime]] = {}
        for table, name, lo, hi, compressed in conn.execute(
            "SELECT c.hypertable_name, c.chunk_name, c.range_start, c.range_end, "
            "       cc.table_name "
            "FROM timescaledb_information.chunks c "
            "JOIN _timescaledb_catalog.chunk k ON k.table_name = c.chunk_name "
            "LEFT JOIN _timescaledb_catalog.chunk cc ON cc.id = k.compressed_chunk_id "
            "WHERE c.hypertable_name IN ('ai_results', 'metric_snapshots')"
        ).fetchall():
            chunks[name] = (table, lo, hi)
            if compressed is not None:
                chunks[compressed] = (table, lo, hi)
    quarters = _quarters(TODAY - timedelta(days=150), TODAY)
    start = TODAY - timedelta(days=100)
    lo = datetime(start.year, start.month, start.day, tzinfo=UTC)
    reads = [
        ("drift_feature_rows", "ai_results", lo, lo + timedelta(days=14),
         lambda c: queries.drift_feature_rows(c, TOOLS[0], start, start + timedelta(days=14))),
    ] + [
        (f"drift_verdicts {q.label}", "metric_snapshots", q.start_utc, q.end_utc,
         lambda c, q=q: event_queries.drift_verdicts(c, TOOLS[0], q))
        for q in quarters
    ] + [
        (f"ai_daily {q.label}", "ai_results", q.start_utc, q.end_utc,
         lambda c, q=q: event_queries.ai_daily(c, TOOLS[0], q))
        for q in quarters
    ]  # fmt: skip
    pruned: dict[str, int] = {}
    with psycopg.connect(url, cursor_factory=PlanCapture) as conn:
        for name, table, lo, hi, read in reads:
            PLANS.clear()
            read(conn)
            scanned = {s["Relation Name"] for _, plan in PLANS for s in scans(plan)}
            read_chunks = {c for c in scanned if c in chunks and chunks[c][0] == table}
            for chunk in read_chunks:
                _, c_lo, c_hi = chunks[chunk]
                assert c_lo < hi and c_hi > lo, f"{name} reads {chunk} ({c_lo}..{c_hi})"
            total = sum(1 for t, _, _ in chunks.values() if t == table)
            pruned[table] = pruned.get(table, 0) + total - len(read_chunks)
            print(f"{name}: reads {len(read_chunks)} of {total} chunk relations of {table}")
    # Every chunk read overlaps the range (above); and some reads of each table skip some.
    assert pruned["ai_results"] > 0 and pruned["metric_snapshots"] > 0


@needs_timescale
def test_an_existing_store_with_compressed_history_upgrades_to_a_complete_aggregate(
    tsdb: str, tmp_path: Path
) -> None:
    # The schema as deployed before 0005/0006, with history stored and compressed.
    for m in load_migrations():
        if m.version <= 4:
            (tmp_path / f"{m.name}.sql").write_text(m.sql)
    assert migrate(tsdb, tmp_path)[-1] == "0004_acquisition"
    history = make_cases(7, 3000, TOOLS[0], TODAY - timedelta(days=200), 150)
    with psycopg.connect(tsdb) as conn, conn.cursor() as cur:
        columns = ", ".join(AI_RESULT_COLUMNS)
        with cur.copy(f"COPY ai_results ({columns}) FROM STDIN".encode()) as copy:
            for case in history:
                copy.write_row(case_rows(case)[1])
    with psycopg.connect(tsdb, autocommit=True) as conn:
        conn.execute(
            "SELECT compress_chunk(c) "
            "FROM show_chunks('ai_results', older_than => INTERVAL '30 days') c"
        )
        assert conn.execute("SELECT count(*) FROM tool_daily").fetchone() == (0,)  # the issue
    assert migrate(tsdb) == ["0005_event_ids_and_indexes", "0006_timescale_sizing",
                             "0007_committee_series"]
    with psycopg.connect(tsdb, autocommit=True) as conn:
        days = _cagg_equals_group_by(conn)
        ids = conn.execute("SELECT count(*) FROM ai_event_ids").fetchone()
    assert days == 150 and ids == (3000,)
    print(f"\nupgrade: tool_daily = GROUP BY on {days} days of compressed history")


@needs_timescale
async def test_a_failing_job_is_exported_with_its_consecutive_failures(tsdb: str) -> None:
    migrate(tsdb)
    with psycopg.connect(tsdb, autocommit=True) as conn:
        conn.execute(
            "CREATE PROCEDURE always_fails(job_id integer, config jsonb) LANGUAGE plpgsql "
            "AS $$ BEGIN RAISE EXCEPTION 'simulated policy failure'; END $$"
        )
        conn.execute("SELECT add_job('always_fails', INTERVAL '1 second')")
        deadline = time.monotonic() + 180
        failures = 0
        while failures < 2:
            assert time.monotonic() < deadline, "the scheduler never ran the job twice"
            await asyncio.sleep(1)
            row = conn.execute(
                "SELECT b.consecutive_failures FROM timescaledb_information.jobs j "
                "JOIN _timescaledb_internal.bgw_job_stat b USING (job_id) "
                "WHERE j.proc_name = 'always_fails'"
            ).fetchone()
            failures = row[0] if row else 0
    async with await psycopg.AsyncConnection.connect(tsdb) as aconn:
        jobs = {j.job: j for j in await read_job_health(aconn, datetime.now(UTC))}
    assert jobs["always_fails"].last_run_failed
    assert jobs["always_fails"].consecutive_failures >= 2
    set_timescaledb_jobs(
        (j.job, j.last_run_failed, j.consecutive_failures, j.overdue_seconds)
        for j in jobs.values()
    )
    exposed = render()[0].decode()
    assert 'surveillance_timescaledb_job_last_run_failed{job="always_fails"} 1.0' in exposed
    print("\n" + "\n".join(line for line in exposed.splitlines() if "timescaledb_job" in line
                           and not line.startswith("#")))


@pytest.mark.skipif(
    not UNLOADED_URL,
    reason="SURVEILLANCE_TEST_TIMESCALE_UNLOADED_URL is not set: needs a server with the "
    "timescaledb extension installed but not in shared_preload_libraries",
)
def test_migrate_refuses_an_extension_that_is_not_preloaded_before_any_change() -> None:
    for url in _database(UNLOADED_URL):
        result = subprocess.run(
            [sys.executable, "-m", "surveillance.cli", "db", "migrate"],
            env={**os.environ, "SURVEILLANCE_DATABASE__URL": url},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert lines == [
            "error: the timescaledb extension is installed but not preloaded: add "
            "shared_preload_libraries = 'timescaledb' to postgresql.conf, restart PostgreSQL "
            "and run `surveillance db migrate` again (nothing was changed)"
        ]
        with psycopg.connect(url) as conn:
            tables = conn.execute(
                "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace"
            ).fetchone()
            extensions = conn.execute("SELECT extname FROM pg_extension").fetchall()
        assert tables == (0,) and extensions == [("plpgsql",)]
        print(f"\n$ surveillance db migrate  (exit {result.returncode})\n{result.stderr.strip()}")
