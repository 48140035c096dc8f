"""The committee's figures from a stream of input events (a `surveillance simulate` file or
an export of the input topics): coverage, triage turnaround, alert burden, cost and value,
and agreement of quantification tools, per tool, as one JSON-ready dict.

Invalid events are counted and skipped (the pipeline dead-letters them); the figures are
those of `clinical/` on the valid ones, over the days the stream spans.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, date, timedelta
from typing import Any

from pydantic import ValidationError

from surveillance.clinical.agreement_baselines import load_agreement_baselines
from surveillance.clinical.alert_burden import (
    Flag,
    burden,
    fatigue_trend,
    flags_and_prevalence,
)
from surveillance.clinical.baselines import ToolBaseline
from surveillance.clinical.coverage import weekly_coverage
from surveillance.clinical.quantification import assess_quantification, pair_measurements
from surveillance.clinical.tool_value import tool_value
from surveillance.clinical.triage_turnaround import PositiveStudy, positive_studies, turnaround
from surveillance.contracts import AIResult, ReportFinal
from surveillance.simulate.events import SimEvent


def _parsed(events: Sequence[SimEvent]) -> tuple[list[AIResult], list[ReportFinal], int]:
    results: list[AIResult] = []
    reports: list[ReportFinal] = []
    invalid = 0
    for event in events:
        try:
            if event.topic == "ai.results":
                results.append(AIResult.model_validate_json(event.value))
            elif event.topic == "reports.final":
                reports.append(ReportFinal.model_validate_json(event.value))
        except ValidationError:
            invalid += 1
    return results, reports, invalid


def _clean(value: Any) -> Any:
    """JSON-safe: dates as ISO text, non-finite floats as None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _trend(
    flags: Sequence[Flag], tool_id: str, site: str, monday: date, weeks: int
) -> dict[str, Any] | None:
    if weeks < 3:
        return None
    trend = fatigue_trend(flags, tool_id, site, monday, weeks)
    return {**asdict(trend), "building": trend.building}


def _weekly_turnaround(studies: Sequence[PositiveStudy], tool_id: str) -> list[dict[str, Any]]:
    """The turnaround figures per site and ISO week of acquisition (UTC)."""
    groups: dict[tuple[str, date], list[PositiveStudy]] = {}
    for s in studies:
        if s.tool_id == tool_id:
            day = s.acquired_at.astimezone(UTC).date()
            groups.setdefault((s.site, day - timedelta(days=day.weekday())), []).append(s)
    return [{"site": site, "week_start": week, **asdict(turnaround(group, tool_id))}
            for (site, week), group in sorted(groups.items())]


def committee_figures(
    events: Sequence[SimEvent], registry: dict[str, ToolBaseline]
) -> dict[str, Any]:
    """Every tool's committee figures over the stream."""
    results, reports, invalid = _parsed(events)
    if not results:
        return {"invalid_events": invalid, "tools": {}}
    first = min(r.inference_date for r in results).date()
    last = max(r.inference_date for r in results).date()
    days = (last - first).days + 1
    monday = first - timedelta(days=first.weekday())
    weeks = max((last - monday).days // 7, 0)
    triage = {t: b for t, b in registry.items() if any(r.tool_id == t for r in results)}
    codes = {t: b.finding_code for t, b in triage.items()}
    studies, excluded = positive_studies(results, reports, codes)
    flags, prevalence = flags_and_prevalence(results, reports, codes)
    coverage = weekly_coverage(reports, results, triage)
    out: dict[str, Any] = {}
    for tool_id, tool in triage.items():
        sites = sorted({r.site for r in results if r.tool_id == tool_id})
        speed = turnaround(studies, tool_id, excluded.get(tool_id))
        true_flags = sum(1 for f in flags if f.tool_id == tool_id and f.present)
        processed = sum(1 for r in results if r.tool_id == tool_id)
        value = None
        if tool.annual_cost is not None:
            value = asdict(tool_value(tool.annual_cost, tool.cost_currency, days, processed,
                                      true_flags, speed.report_difference))
        out[tool_id] = {
            "coverage": [asdict(c) for c in coverage if c.tool_id == tool_id],
            "turnaround": asdict(speed),
            "turnaround_weekly": _weekly_turnaround(studies, tool_id),
            "alert_burden": [
                {**asdict(burden(flags, prevalence, tool_id, site, first,
                                 last + timedelta(days=1))),
                 "fatigue_trend": _trend(flags, tool_id, site, monday, weeks)}
                for site in sites
            ],
            "value": value,
        }
    quant = load_agreement_baselines()
    pairs, unpaired = pair_measurements(results, reports, quant)
    for tool_id, qtool in quant.items():
        if any(p.tool_id == tool_id for p in pairs):
            assessment = assess_quantification(pairs, qtool)
            out[tool_id] = {"quantification": asdict(assessment),
                            "unpaired": sum(1 for u in unpaired if u.tool_id == tool_id)}
    period = {"start": first, "end": last + timedelta(days=1)}
    figures: dict[str, Any] = _clean({"invalid_events": invalid, "days": days,
                                      "period": period, "tools": out})
    return figures
