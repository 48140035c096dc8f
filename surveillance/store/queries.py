"""Read side of the store: the figures behind quarterly exports and dashboards.

A case belongs to the quarter of its `study_date` (the clinical date, stable across
revisions); alerts, snapshots and adverse events to the quarter of their own timestamps,
taken in UTC (their queries are in `store/event_queries.py`). Only TP/FP/TN/FN cases
enter agreement figures; `volume` counts every case, including pending, unlabelled and
indeterminate ones, which are reported separately so nobody mistakes a labelling backlog
for performance.

SQL returns integer counts only; proportions and intervals are computed in Python from
those counts (`surveillance.stats.agreement`), so floating-point results never depend on
the order in which the database summed rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import psycopg
from psycopg.rows import class_row, dict_row

from surveillance.contracts import AdjudicatedCase
from surveillance.stats.agreement import Confusion
from surveillance.store.errors import QueryError
from surveillance.store.rows import CASE_COLUMNS

_QUARTER = re.compile(r"^(\d{4})Q([1-4])$")


@dataclass(frozen=True)
class Quarter:
    label: str
    start: date
    end: date  # exclusive

    @property
    def start_utc(self) -> datetime:
        return datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC)

    @property
    def end_utc(self) -> datetime:
        return datetime(self.end.year, self.end.month, self.end.day, tzinfo=UTC)


def parse_quarter(text: str) -> Quarter:
    """`2026Q3` -> 2026-07-01 .. 2026-10-01 (end exclusive)."""
    match = _QUARTER.match(text.strip().upper())
    if match is None:
        raise QueryError(f"quarter {text!r} is not like 2026Q3: give the year, 'Q' and 1-4")
    year, q = int(match[1]), int(match[2])
    start = date(year, 3 * q - 2, 1)
    end = date(year + 1, 1, 1) if q == 4 else date(year, 3 * q + 1, 1)
    return Quarter(f"{year}Q{q}", start, end)


@dataclass(frozen=True)
class Counts:
    volume: int
    tp: int
    fp: int
    tn: int
    fn: int
    indeterminate: int
    pending: int
    unlabelled: int

    @property
    def confusion(self) -> Confusion:
        return Confusion(tp=self.tp, fp=self.fp, tn=self.tn, fn=self.fn)


@dataclass(frozen=True)
class GroupCounts(Counts):
    """Counts of the whole tool (version and site None), a version, or a version at a site."""

    software_version: str | None
    site: str | None


@dataclass(frozen=True)
class WeekCounts(Counts):
    week_start: date


@dataclass(frozen=True)
class SubgroupCounts(Counts):
    dimension: str
    value: str


# Outcome counts, shared by every aggregate below.
_COUNTS = """
    count(*)                                             AS volume,
    count(*) FILTER (WHERE outcome = 'TP')               AS tp,
    count(*) FILTER (WHERE outcome = 'FP')               AS fp,
    count(*) FILTER (WHERE outcome = 'TN')               AS tn,
    count(*) FILTER (WHERE outcome = 'FN')               AS fn,
    count(*) FILTER (WHERE outcome = 'indeterminate')    AS indeterminate,
    count(*) FILTER (WHERE outcome = 'pending')          AS pending,
    count(*) FILTER (WHERE outcome = 'unlabelled')       AS unlabelled"""

_QUARTER_CASES = """
quarter_cases AS (
    SELECT * FROM cases
    WHERE tool_id = %(tool)s AND study_date >= %(start)s AND study_date < %(end)s
)"""


def quarter_params(tool: str, quarter: Quarter) -> dict[str, Any]:
    return {
        "tool": tool,
        "start": quarter.start,
        "end": quarter.end,
        "start_utc": quarter.start_utc,
        "end_utc": quarter.end_utc,
    }


def tools_in_quarter(conn: psycopg.Connection[Any], quarter: Quarter) -> list[str]:
    rows = conn.execute(
        "SELECT DISTINCT tool_id FROM cases WHERE study_date >= %s AND study_date < %s "
        "ORDER BY tool_id",
        (quarter.start, quarter.end),
    ).fetchall()
    return [r[0] for r in rows]


def group_counts(conn: psycopg.Connection[Any], tool: str, quarter: Quarter) -> list[GroupCounts]:
    """The tool overall, each version, and each version at each site, for the quarter."""
    # GROUPING SETS gives the three levels in one pass; the overall row sorts first
    # because NULLs sort first under NULLS FIRST.
    query = f"""
    WITH {_QUARTER_CASES}
    SELECT software_version, site, {_COUNTS}
    FROM quarter_cases
    GROUP BY GROUPING SETS ((), (software_version), (software_version, site))
    ORDER BY software_version NULLS FIRST, site NULLS FIRST"""
    with conn.cursor(row_factory=class_row(GroupCounts)) as cur:
        return cur.execute(query.encode(), quarter_params(tool, quarter)).fetchall()


def weekly_counts(conn: psycopg.Connection[Any], tool: str, quarter: Quarter) -> list[WeekCounts]:
    """Counts per week (Monday to Sunday) of study date, for the trend plots."""
    # date_bin rather than TimescaleDB's time_bucket: it exists on every PostgreSQL >= 14.
    # The origin 2001-01-01 is a Monday, so bins are ISO weeks.
    query = f"""
    WITH {_QUARTER_CASES}
    SELECT date_bin('7 days', study_date::timestamp, TIMESTAMP '2001-01-01')::date
               AS week_start,
           {_COUNTS}
    FROM quarter_cases
    GROUP BY week_start
    ORDER BY week_start"""
    with conn.cursor(row_factory=class_row(WeekCounts)) as cur:
        return cur.execute(query.encode(), quarter_params(tool, quarter)).fetchall()


SUBGROUP_DIMENSIONS = ("site", "scanner_manufacturer", "sex", "age_band")


def subgroup_counts(
    conn: psycopg.Connection[Any], tool: str, quarter: Quarter
) -> list[SubgroupCounts]:
    """Counts per site, scanner manufacturer, sex and age band (0-17, 18-39, 40-64, 65+)."""
    query = f"""
    WITH {_QUARTER_CASES},
    by_subgroup AS (
        SELECT
            CASE WHEN GROUPING(site) = 0 THEN 'site'
                 WHEN GROUPING(scanner_manufacturer) = 0 THEN 'scanner_manufacturer'
                 WHEN GROUPING(sex) = 0 THEN 'sex'
                 ELSE 'age_band' END AS dimension,
            CASE WHEN GROUPING(site) = 0 THEN site
                 WHEN GROUPING(scanner_manufacturer) = 0 THEN scanner_manufacturer
                 WHEN GROUPING(sex) = 0 THEN sex
                 ELSE age_band END AS value,
            {_COUNTS}
        FROM quarter_cases
        GROUP BY GROUPING SETS ((site), (scanner_manufacturer), (sex), (age_band))
    )
    SELECT * FROM by_subgroup
    -- Dimensions in the order of the review template; bands sort correctly as text.
    ORDER BY array_position(%(dimensions)s::text[], dimension), value"""
    params = {**quarter_params(tool, quarter), "dimensions": list(SUBGROUP_DIMENSIONS)}
    with conn.cursor(row_factory=class_row(SubgroupCounts)) as cur:
        return cur.execute(query.encode(), params).fetchall()


@dataclass(frozen=True)
class VersionRow(Counts):
    """A version seen up to the quarter's end: counts in the quarter, and cumulative
    TP/FP/TN/FN up to the quarter's end (the evidence for its local validation)."""

    software_version: str
    first_seen: datetime
    last_seen: datetime
    cumulative_tp: int
    cumulative_fp: int
    cumulative_tn: int
    cumulative_fn: int
    flagged_unvalidated: bool

    @property
    def cumulative(self) -> Confusion:
        return Confusion(
            tp=self.cumulative_tp,
            fp=self.cumulative_fp,
            tn=self.cumulative_tn,
            fn=self.cumulative_fn,
        )


def model_versions(conn: psycopg.Connection[Any], tool: str, quarter: Quarter) -> list[VersionRow]:
    query = f"""
    WITH {_QUARTER_CASES},
    in_quarter AS (
        SELECT software_version, {_COUNTS}
        FROM quarter_cases GROUP BY software_version
    ),
    -- Validation evidence accumulates over the version's whole life, not one quarter.
    to_date AS (
        SELECT software_version,
               count(*) FILTER (WHERE outcome = 'TP') AS cumulative_tp,
               count(*) FILTER (WHERE outcome = 'FP') AS cumulative_fp,
               count(*) FILTER (WHERE outcome = 'TN') AS cumulative_tn,
               count(*) FILTER (WHERE outcome = 'FN') AS cumulative_fn
        FROM cases
        WHERE tool_id = %(tool)s AND study_date < %(end)s
        GROUP BY software_version
    ),
    flagged AS (
        SELECT DISTINCT software_version FROM alerts
        WHERE tool_id = %(tool)s AND kind = 'unvalidated_version' AND raised_at < %(end_utc)s
    )
    SELECT v.software_version, v.first_seen, v.last_seen,
           COALESCE(q.volume, 0) AS volume, COALESCE(q.tp, 0) AS tp, COALESCE(q.fp, 0) AS fp,
           COALESCE(q.tn, 0) AS tn, COALESCE(q.fn, 0) AS fn,
           COALESCE(q.indeterminate, 0) AS indeterminate, COALESCE(q.pending, 0) AS pending,
           COALESCE(q.unlabelled, 0) AS unlabelled,
           COALESCE(d.cumulative_tp, 0) AS cumulative_tp,
           COALESCE(d.cumulative_fp, 0) AS cumulative_fp,
           COALESCE(d.cumulative_tn, 0) AS cumulative_tn,
           COALESCE(d.cumulative_fn, 0) AS cumulative_fn,
           f.software_version IS NOT NULL AS flagged_unvalidated
    FROM model_versions v
    LEFT JOIN in_quarter q USING (software_version)
    LEFT JOIN to_date d USING (software_version)
    LEFT JOIN flagged f USING (software_version)
    WHERE v.tool_id = %(tool)s AND v.first_seen < %(end_utc)s
    ORDER BY v.first_seen, v.software_version"""
    with conn.cursor(row_factory=class_row(VersionRow)) as cur:
        return cur.execute(query.encode(), quarter_params(tool, quarter)).fetchall()


def version_cases(
    conn: psycopg.Connection[Any], tool: str, version: str, quarter: Quarter
) -> list[AdjudicatedCase]:
    """Every stored case of a version up to the quarter's end: local validation evidence."""
    columns = ", ".join(CASE_COLUMNS)
    query = f"""
    SELECT {columns} FROM cases
    WHERE tool_id = %s AND software_version = %s AND study_date < %s
    ORDER BY case_id"""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query.encode(), (tool, version, quarter.end)).fetchall()
    return [AdjudicatedCase.model_validate(r) for r in rows]


def cases_of_version(
    conn: psycopg.Connection[Any], tool: str, version: str
) -> list[AdjudicatedCase]:
    """Every stored case of one tool version: the evidence `surveillance validate` judges."""
    columns = ", ".join(CASE_COLUMNS)
    query = f"""
    SELECT {columns} FROM cases
    WHERE tool_id = %s AND software_version = %s
    ORDER BY case_id"""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query.encode(), (tool, version)).fetchall()
    return [AdjudicatedCase.model_validate(r) for r in rows]


def drift_feature_rows(
    conn: psycopg.Connection[Any], tool: str, start: date, end: date
) -> list[dict[str, Any]]:
    """AI results of a tool inferred on UTC days [start, end), as drift-feature rows.

    Column names are the drift bank's feature names (`stats.drift_features.DEFAULT_FEATURES`),
    so the Evidently report compares exactly what the detectors watch; the days are the
    bank's days too (inference time in UTC). Filtering on the time column is what lets
    TimescaleDB skip every chunk outside the period (and an index serve it elsewhere).
    """
    query = """
    SELECT kvp, slice_thickness, pixel_spacing, age::double precision AS age,
           scanner_manufacturer, scanner_model, scanner_software_version, protocol_name,
           site, lower(contrast_indication::text) AS contrast, sex,
           ai_result AS score, lower(result_indicator::text) AS positive_call
    FROM ai_results
    WHERE tool_id = %s AND inference_date >= %s AND inference_date < %s
    ORDER BY inference_date, ai_event_id"""
    with conn.cursor(row_factory=dict_row) as cur:
        return list(cur.execute(query, (tool, _utc(start), _utc(end))).fetchall())


def _utc(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
