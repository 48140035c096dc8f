"""The committee's figures as a stored series (table `committee_series`, migration 0007).

`series_rows` turns the dict of `report.committee_figures` (what `surveillance committee`
prints) into one row per figure, tool, period and breakdown; `store_series` upserts them,
so re-running the command over the same events replaces its rows and never doubles them.
The Grafana tool drill-down reads these rows (tests/test_dashboards.py checks that every
figure in `FIGURES` has a panel and every panel's figure is one of them).

Periods: whole-stream figures cover [start, end) of the stream's UTC days; weekly ones
(coverage, triage turnaround per site, the quantification bias and its CUSUM) their ISO
week. Site '' is all sites.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import astuple, dataclass, fields
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

import psycopg


class Figure(StrEnum):
    """Every figure stored, by its `committee_series.figure` value."""

    COVERAGE = "coverage"
    MINUTES_TO_AI = "minutes_to_ai_median"
    MINUTES_TO_REPORT = "minutes_to_report_median"
    REPORT_DIFFERENCE = "minutes_to_report_difference"
    FLAGS_PER_DAY = "flags_per_day"
    FLAGS_PER_SHIFT = "flags_per_shift"
    FLAG_PPV = "flag_ppv"
    PREVALENCE = "prevalence"
    FALSE_POSITIVE_SHARE = "false_positive_share"
    FATIGUE_SLOPE = "false_flags_trend"
    PERIOD_COST = "period_cost"
    COST_PER_STUDY = "cost_per_study"
    COST_PER_TRUE_POSITIVE = "cost_per_true_positive"
    HOURS_BROUGHT_FORWARD = "hours_brought_forward"
    BIAS = "bias"
    LOA_LOWER = "loa_lower"
    LOA_UPPER = "loa_upper"
    ICC = "icc"
    CCC = "ccc"
    WEEKLY_BIAS = "weekly_bias"
    BIAS_CUSUM = "bias_cusum"
    BIAS_CUSUM_THRESHOLD = "bias_cusum_threshold"


@dataclass(frozen=True, slots=True)
class SeriesRow:
    tool_id: str
    figure: Figure
    period_start: datetime
    period_end: datetime
    site: str
    software_version: str
    series: str
    value: float | None
    lower: float | None
    upper: float | None
    n: int | None
    unit: str


COLUMNS = tuple(f.name for f in fields(SeriesRow))


def _utc(day: str) -> datetime:
    d = date.fromisoformat(day)
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


def _week(day: str) -> tuple[datetime, datetime]:
    start = _utc(day)
    return start, start + timedelta(days=7)


class _Rows:
    """Collects one tool's rows over a default period."""

    def __init__(self, tool_id: str, period: tuple[datetime, datetime]) -> None:
        self.tool_id = tool_id
        self.period = period
        self.rows: list[SeriesRow] = []

    def add(self, figure: Figure, value: float | None, unit: str, *,
            lower: float | None = None, upper: float | None = None, n: int | None = None,
            site: str = "", version: str = "", series: str = "",
            period: tuple[datetime, datetime] | None = None) -> None:
        start, end = period or self.period
        self.rows.append(SeriesRow(self.tool_id, figure, start, end, site, version, series,
                                   value, lower, upper, n, unit))

    def limit(self, figure: Figure, limit: dict[str, Any] | None, unit: str, **kw: Any) -> None:
        if limit is not None:
            self.add(figure, limit["value"], unit, lower=limit["lower"], upper=limit["upper"],
                     **kw)


def series_rows(figures: dict[str, Any]) -> list[SeriesRow]:
    """Every stored row of one `committee_figures` result (empty when it has no tools)."""
    if not figures.get("tools"):
        return []
    period = (_utc(figures["period"]["start"]), _utc(figures["period"]["end"]))
    rows: list[SeriesRow] = []
    for tool_id, tool in sorted(figures["tools"].items()):
        out = _Rows(tool_id, period)
        _coverage(out, tool.get("coverage", []))
        if tool.get("turnaround") is not None:
            _turnaround(out, tool["turnaround"])
        for week in tool.get("turnaround_weekly", []):
            _turnaround(out, week, site=week["site"], period=_week(week["week_start"]))
        for burden in tool.get("alert_burden", []):
            _burden(out, burden)
        if tool.get("value") is not None:
            _value(out, tool["value"])
        if tool.get("quantification") is not None:
            _quantification(out, tool["quantification"])
        rows += out.rows
    return rows


def _coverage(out: _Rows, weeks: list[dict[str, Any]]) -> None:
    for c in weeks:
        out.add(Figure.COVERAGE, c["share"], "ratio", lower=c["lower"], upper=c["upper"],
                n=c["eligible"], site=c["site"], period=_week(c["week_start"]))


def _turnaround(out: _Rows, t: dict[str, Any], site: str = "",
                period: tuple[datetime, datetime] | None = None) -> None:
    where: dict[str, Any] = {"site": site, "period": period}
    out.add(Figure.MINUTES_TO_AI, t["median_minutes_to_ai"], "min",
            n=t["n_flagged"] + t["n_unflagged"], **where)
    d = t["report_difference"]
    if d is None:
        return
    out.add(Figure.MINUTES_TO_REPORT, d["median_a"], "min", n=d["n_a"], series="flagged",
            **where)
    out.add(Figure.MINUTES_TO_REPORT, d["median_b"], "min", n=d["n_b"], series="not flagged",
            **where)
    out.add(Figure.REPORT_DIFFERENCE, d["difference"], "min", lower=d["lower"],
            upper=d["upper"], n=d["n_a"] + d["n_b"], **where)


def _burden(out: _Rows, b: dict[str, Any]) -> None:
    site = b["site"]
    out.add(Figure.FLAGS_PER_DAY, b["flags_per_day"], "flags/day", n=b["flags"], site=site)
    for shift, rate in sorted(b["flags_per_shift"].items()):
        out.add(Figure.FLAGS_PER_SHIFT, rate, "flags/day", site=site, series=shift)
    out.add(Figure.FLAG_PPV, b["ppv"], "ratio", lower=b["ppv_lower"], upper=b["ppv_upper"],
            site=site)
    out.add(Figure.PREVALENCE, b["prevalence"], "ratio", site=site)
    out.add(Figure.FALSE_POSITIVE_SHARE, b["false_positive_share"], "ratio", site=site)
    trend = b.get("fatigue_trend")
    if trend is not None:
        out.add(Figure.FATIGUE_SLOPE, trend["slope"], "false flags/day per week",
                lower=trend["lower"], upper=trend["upper"], n=trend["weeks"], site=site)


def _value(out: _Rows, v: dict[str, Any]) -> None:
    currency = v["currency"]
    out.add(Figure.PERIOD_COST, v["period_cost"], currency)
    out.add(Figure.COST_PER_STUDY, v["cost_per_study"], currency)
    out.add(Figure.COST_PER_TRUE_POSITIVE, v["cost_per_true_positive"], currency)
    out.add(Figure.HOURS_BROUGHT_FORWARD, v["hours_brought_forward"], "h",
            lower=v["hours_lower"], upper=v["hours_upper"])


def _agreement(out: _Rows, a: dict[str, Any], unit: str, version: str) -> None:
    ba = a["bland_altman"]
    if ba is not None:
        out.limit(Figure.BIAS, ba["bias"], unit, n=ba["n"], version=version)
        out.limit(Figure.LOA_LOWER, ba["lower_loa"], unit, n=ba["n"], version=version)
        out.limit(Figure.LOA_UPPER, ba["upper_loa"], unit, n=ba["n"], version=version)
    out.limit(Figure.ICC, a["icc"], "ratio", n=a["n"], version=version)
    out.limit(Figure.CCC, a["ccc"], "ratio", n=a["n"], version=version)


def _quantification(out: _Rows, q: dict[str, Any]) -> None:
    unit = q["unit"]
    _agreement(out, q["overall"], unit, "")
    for version, agreement in sorted(q["by_version"].items()):
        _agreement(out, agreement, unit, version)
    for w in q["weeks"]:
        out.add(Figure.WEEKLY_BIAS, w["bias"], unit, n=w["n"], period=_week(w["week_start"]))
    for c in q["bias_chart"]:
        out.add(Figure.BIAS_CUSUM, c["statistic"], "sd", period=_week(c["week_start"]))
    out.add(Figure.BIAS_CUSUM_THRESHOLD, q["bias_threshold"], "sd")


def _values(rows: Iterable[SeriesRow], computed_at: datetime) -> Iterator[tuple[Any, ...]]:
    for row in rows:
        # The figure as its text: psycopg would store an Enum member by its name.
        yield (row.tool_id, row.figure.value, *astuple(row)[2:], computed_at)


def store_series(url: str, rows: list[SeriesRow], computed_at: datetime) -> int:
    """Upsert `rows` (the store must be migrated); returns how many were written."""
    columns = (*COLUMNS, "computed_at")
    keys = ("tool_id", "figure", "period_start", "period_end", "site", "software_version",
            "series")
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in keys)
    query = (
        f"INSERT INTO committee_series ({', '.join(columns)}) "
        f"VALUES ({', '.join(['%s'] * len(columns))}) "
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}"
    )
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.executemany(query.encode(), list(_values(rows, computed_at)))
    return len(rows)
