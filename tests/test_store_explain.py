"""Every export and drift query is served by an index on plain PostgreSQL.

The queries are the exact SQL of `store/queries.py` with real parameters (captured by
`tests/store_plans.PlanCapture`). Sequential scans are disabled for the check: the
planner then uses an index wherever one can serve the query's conditions, and falls back
to a sequential scan only where none can, which is what this test catches. Each table scan
must carry an index condition (alone or under a bitmap scan), so a full-index walk does not
pass for an index that serves the filter. TimescaleDB (chunk pruning) is checked in
tests/test_store_timescale.py.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any, cast

import psycopg
import pytest

from surveillance.store import chart_queries, event_queries, queries
from surveillance.store.migrate import migrate
from tests.store_fixtures import make_cases
from tests.store_plans import PLANS, PlanCapture, index_condition, scans
from tests.test_store_upserts import _events, _write

pytestmark = pytest.mark.integration

TOOL = "ich-triage"
QUARTER = queries.parse_quarter("2026Q3")
# Read only through a join on their primary key (a merge join walks the key's index).
JOINED_BY_KEY = {"adverse_event_filings"}
# The big tables: a query bounded in time must use the time range in its index condition.
TIME_COLUMN = {"cases": "study_date", "ai_results": "inference_date", "metric_snapshots": "at"}
TIME_BOUNDED = {
    "tools_in_quarter", "group_counts", "weekly_counts", "subgroup_counts", "version_cases",
    "ai_daily", "drift_verdicts", "drift_feature_rows", "cusum_points",
}


def every_query(conn: psycopg.Connection[Any]) -> dict[str, Callable[[], object]]:
    """Every read query of the store, by name, ready to run once on `conn`."""
    return {
        "tools_in_quarter": lambda: queries.tools_in_quarter(conn, QUARTER),
        "group_counts": lambda: queries.group_counts(conn, TOOL, QUARTER),
        "weekly_counts": lambda: queries.weekly_counts(conn, TOOL, QUARTER),
        "subgroup_counts": lambda: queries.subgroup_counts(conn, TOOL, QUARTER),
        "model_versions": lambda: queries.model_versions(conn, TOOL, QUARTER),
        "version_cases": lambda: queries.version_cases(conn, TOOL, "1.1", QUARTER),
        "alerts": lambda: event_queries.alerts(conn, TOOL, QUARTER),
        "adverse_events": lambda: event_queries.adverse_events(
            conn, TOOL, QUARTER, datetime.now(UTC)
        ),
        "ai_daily": lambda: event_queries.ai_daily(conn, TOOL, QUARTER),
        "drift_verdicts": lambda: event_queries.drift_verdicts(conn, TOOL, QUARTER),
        "cases_of_version": lambda: queries.cases_of_version(conn, TOOL, "1.1"),
        "drift_feature_rows": lambda: queries.drift_feature_rows(
            conn, TOOL, date(2026, 8, 1), date(2026, 8, 15)
        ),
        "cusum_points": lambda: chart_queries.cusum_points(conn, TOOL, QUARTER),
    }


def test_every_read_query_of_the_store_is_covered() -> None:
    # A query added to the store's query modules without a place in run_every_query fails here.
    public = {
        name for module in (queries, event_queries, chart_queries)
        for name, value in vars(module).items()
        if callable(value) and getattr(value, "__module__", "") == module.__name__
        and not name.startswith("_") and not isinstance(value, type)
    }  # fmt: skip
    writes_or_pure = {"record_filing", "parse_quarter", "quarter_params"}
    assert public - writes_or_pure == set(every_query(cast(Any, None)))


async def test_every_export_and_drift_query_uses_an_index(fresh_database: str) -> None:
    migrate(fresh_database)
    # A quarter of two tools and the year before it: statistics in which a quarter is a
    # small part of the table, as it is in production.
    messages, _ = _events(seed=4)
    history = make_cases(9, 6000, TOOL, date(2025, 7, 1), 365)
    messages += [("c", c.model_dump_json().encode()) for c in history]
    await _write(fresh_database, messages, chunk=3000)
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        for (event_id, received_at) in conn.execute(
            "SELECT event_id, received_at FROM adverse_events"
        ).fetchall():
            event_queries.record_filing(conn, event_id, "us_803:manufacturer", received_at)
        conn.execute("ANALYZE")
    PLANS.clear()
    with psycopg.connect(
        fresh_database, cursor_factory=PlanCapture, options="-c enable_seqscan=off"
    ) as conn:
        calls = every_query(conn)
        for call in calls.values():
            call()
        names = list(calls)
    assert len(PLANS) == len(names)
    report = []
    for name, (sql_text, plan) in zip(names, PLANS, strict=True):
        tables = scans(plan)
        assert tables, f"{name}: no table read in {sql_text}"
        for scan in tables:
            cond = index_condition(plan, scan)
            report.append(f"{name:20} {scan['Relation Name']:22} {scan['Node Type']:18} {cond}")
    print("\n" + "\n".join(report))
    for name, (_, plan) in zip(names, PLANS, strict=True):
        for scan in scans(plan):
            cond = index_condition(plan, scan)
            table = scan["Relation Name"]
            assert scan["Node Type"] != "Seq Scan", f"{name} reads {table} fully"
            if table in JOINED_BY_KEY:
                assert scan["Index Name"] == f"{table}_pkey", (name, table)
                continue
            assert cond is not None, f"{name}: {table} without index condition"
            if name in TIME_BOUNDED and table in TIME_COLUMN:
                assert TIME_COLUMN[table] in cond, f"{name}: {table} not read by time: {cond}"
