"""TimescaleDB seen from the store writer: refresh what a batch wrote in old time, and
read the health of the background jobs (policies) into Prometheus gauges.

- `tool_daily` is a continuous aggregate with real-time aggregation (migration 0006): days
  after its last refresh are computed from `ai_results` at query time, days before it come
  from the materialization. A batch that lands before that point (a backfill, a late
  event) is refreshed right after it is committed (`refresh_window`), so dashboards and
  the export never wait for the hourly policy (which sweeps every invalidation too).
- A job whose runs fail stops compressing, refreshing or expiring data without a sound;
  `read_job_health` turns `timescaledb_information.job_stats` (and the scheduler's
  consecutive-failure count) into `surveillance_timescaledb_job_*` gauges that
  deploy/prometheus/rules/pipeline.yml alerts on.

`refresh_window` and `job_samples` are pure; the rest are thin queries.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import AsyncConnection

DAY = timedelta(days=1)
#: The refresh policy's end offset (0006): days younger than this are left to real time.
END_OFFSET = DAY


def _day(t: datetime) -> datetime:
    t = t.astimezone(UTC)
    return datetime(t.year, t.month, t.day, tzinfo=UTC)


def refresh_window(
    inference_dates: Iterable[datetime], now: datetime
) -> tuple[datetime, datetime] | None:
    """The whole UTC days to refresh after writing AI results at `inference_dates`.

    Only days that end before `now - END_OFFSET` (the part the refresh policy materializes)
    need it; None when the batch wrote only younger ones.
    """
    cutoff = _day(now - END_OFFSET)
    old = [_day(t) for t in inference_dates if _day(t) < cutoff]
    if not old:
        return None
    return min(old), min(max(old) + DAY, cutoff)


async def has_continuous_aggregate(conn: AsyncConnection[Any]) -> bool:
    cur = await conn.execute(
        "SELECT to_regclass('timescaledb_information.continuous_aggregates') IS NOT NULL"
    )
    row = await cur.fetchone()
    if row is None or not row[0]:
        return False
    cur = await conn.execute(
        "SELECT count(*) FROM timescaledb_information.continuous_aggregates "
        "WHERE view_name = 'tool_daily'"
    )
    row = await cur.fetchone()
    return row is not None and row[0] == 1


async def refresh_tool_daily(conn: AsyncConnection[Any], start: datetime, end: datetime) -> None:
    """Re-materialize `tool_daily` over [start, end); `conn` must be in autocommit mode."""
    await conn.execute("CALL refresh_continuous_aggregate('tool_daily', %s, %s)", (start, end))


@dataclass(frozen=True)
class JobHealth:
    """One scheduled TimescaleDB job, named `<procedure>:<table>` (or the procedure)."""

    job: str
    last_run_failed: bool
    consecutive_failures: int
    overdue_seconds: float


_JOBS = """
SELECT j.proc_name, coalesce(j.hypertable_name, ''), s.last_run_status,
       coalesce(b.consecutive_failures, 0),
       CASE WHEN isfinite(s.next_start) THEN s.next_start END
FROM timescaledb_information.jobs j
LEFT JOIN timescaledb_information.job_stats s ON s.job_id = j.job_id
LEFT JOIN _timescaledb_internal.bgw_job_stat b ON b.job_id = j.job_id
WHERE j.scheduled AND j.proc_name <> 'policy_telemetry'
ORDER BY j.job_id"""


def _label(name: str) -> str:
    # Job and table names are SQL identifiers (a DBA's own job may be named anything):
    # keep them within the metric label alphabet and length.
    label = re.sub(r"[^A-Za-z0-9._:+-]", "_", name)
    return (label if label[:1].isalnum() else "job" + label)[:64]


def job_samples(rows: Iterable[tuple[Any, ...]], now: datetime) -> list[JobHealth]:
    """`_JOBS` rows -> one `JobHealth` per job; a job never run yet is healthy."""
    out = []
    for proc, table, status, failures, next_start in rows:
        overdue = 0.0
        if next_start is not None and next_start < now:
            overdue = (now - next_start).total_seconds()
        out.append(
            JobHealth(
                job=_label(f"{proc}:{table}" if table else str(proc)),
                last_run_failed=status == "Failed",
                consecutive_failures=int(failures),
                overdue_seconds=overdue,
            )
        )
    return out


async def read_job_health(conn: AsyncConnection[Any], now: datetime) -> list[JobHealth]:
    cur = await conn.execute(_JOBS)
    return job_samples(await cur.fetchall(), now)
