"""Read side of the store, what happened in a quarter besides the cases: alerts, adverse
events and their regulatory filings, drift verdicts, and the daily AI volume.

Alerts, snapshots and adverse events belong to the quarter of their own timestamps, taken
in UTC (adverse events: the day the facility became aware). The case figures are in
`store/queries.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg.rows import class_row

from surveillance.store.errors import QueryError
from surveillance.store.queries import Quarter, quarter_params


@dataclass(frozen=True)
class AlertRow:
    alert_id: str
    kind: str
    severity: str
    raised_at: datetime
    software_version: str | None
    site: str | None
    metric: str | None
    value: float | None
    baseline: float | None
    summary: str
    resolved_at: datetime | None
    resolved_by: str | None


def alerts(conn: psycopg.Connection[Any], tool: str, quarter: Quarter) -> list[AlertRow]:
    """Alerts raised in the quarter, or raised before and resolved in it."""
    query = """
    SELECT alert_id, kind, severity, raised_at, software_version, site, metric, value,
           baseline, summary, resolved_at, resolved_by
    FROM alerts
    -- tool_id in both arms: each arm is then one index range (alerts_tool_time,
    -- alerts_tool_resolved), read as a bitmap OR.
    WHERE (tool_id = %(tool)s AND raised_at >= %(start_utc)s AND raised_at < %(end_utc)s)
       OR (tool_id = %(tool)s AND resolved_at >= %(start_utc)s AND resolved_at < %(end_utc)s)
    ORDER BY raised_at, alert_id"""
    with conn.cursor(row_factory=class_row(AlertRow)) as cur:
        return cur.execute(query, quarter_params(tool, quarter)).fetchall()


@dataclass(frozen=True)
class AdverseEventRow:
    event_id: str
    received_at: datetime
    aware_date: date
    event_date: date
    outcome: str
    event_type: str
    software_version: str
    discordance_type: str
    radiologist_read: str | None
    ai_output: float | None
    ai_threshold: float | None
    filed: list[str]


def adverse_events(
    conn: psycopg.Connection[Any], tool: str, quarter: Quarter, filed_by: datetime
) -> list[AdverseEventRow]:
    """Adverse events the facility became aware of in the quarter, with their filings.

    Filings count up to `filed_by` (the export's time): a report filed after the quarter
    but before the review is done, not overdue.
    """
    query = """
    SELECT e.event_id, e.received_at, e.aware_date, e.event_date, e.outcome, e.event_type,
           e.software_version, e.discordance_type, e.radiologist_read, e.ai_output,
           e.ai_threshold,
           COALESCE(array_agg(f.obligation ORDER BY f.obligation)
                    FILTER (WHERE f.obligation IS NOT NULL), '{}') AS filed
    FROM adverse_events e
    LEFT JOIN adverse_event_filings f
           ON f.event_id = e.event_id AND f.filed_at <= %(filed_by)s
    WHERE e.tool_id = %(tool)s AND e.aware_date >= %(start)s AND e.aware_date < %(end)s
    GROUP BY e.event_id
    ORDER BY e.aware_date, e.event_id"""
    with conn.cursor(row_factory=class_row(AdverseEventRow)) as cur:
        params = {**quarter_params(tool, quarter), "filed_by": filed_by}
        return cur.execute(query, params).fetchall()


def record_filing(
    conn: psycopg.Connection[Any], event_id: str, obligation: str, filed_at: datetime
) -> None:
    """Record that a regulatory report (e.g. `us_803:manufacturer`) was filed."""
    try:
        conn.execute(
            "INSERT INTO adverse_event_filings (event_id, obligation, filed_at) "
            "VALUES (%s, %s, %s) ON CONFLICT (event_id, obligation) DO NOTHING",
            (event_id, obligation, filed_at),
        )
    except psycopg.errors.ForeignKeyViolation as exc:
        raise QueryError(
            f"no adverse event {event_id!r} is stored: check the id (is the writer running?)"
        ) from exc


@dataclass(frozen=True)
class DayVolume:
    day: datetime  # the UTC midnight starting the day
    results: int
    positive_calls: int


def ai_daily(conn: psycopg.Connection[Any], tool: str, quarter: Quarter) -> list[DayVolume]:
    """AI results and positive calls per UTC day of inference, from `tool_daily`.

    `tool_daily` is a view over `ai_results` on plain PostgreSQL and a continuous aggregate
    with real-time aggregation on TimescaleDB (migrations 0002, 0003, 0006): the same
    numbers either way, and on TimescaleDB a quarter is read from about 92 stored rows.
    """
    query = """
    SELECT day, results, positive_calls FROM tool_daily
    WHERE tool_id = %(tool)s AND day >= %(start_utc)s AND day < %(end_utc)s
    ORDER BY day"""
    with conn.cursor(row_factory=class_row(DayVolume)) as cur:
        return cur.execute(query, quarter_params(tool, quarter)).fetchall()


@dataclass(frozen=True)
class DriftRow:
    source: str
    verdict_id: str
    at: datetime
    feature: str
    detector: str | None
    value: float | None
    severity: str | None
    summary: str | None


def drift_verdicts(conn: psycopg.Connection[Any], tool: str, quarter: Quarter) -> list[DriftRow]:
    query = """
    SELECT source, verdict_id, at, feature, detector, value, severity, summary
    FROM drift_verdicts
    WHERE tool_id = %(tool)s AND at >= %(start_utc)s AND at < %(end_utc)s
    ORDER BY at, verdict_id"""
    with conn.cursor(row_factory=class_row(DriftRow)) as cur:
        return cur.execute(query, quarter_params(tool, quarter)).fetchall()
