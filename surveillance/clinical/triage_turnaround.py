"""Triage turnaround: are studies the tool flagged read sooner, as CADt clearances claim?

For each AI result with an acquisition time whose study's last report states the tool's
finding present: minutes from acquisition to the AI result, and from acquisition to the
first report (the read that a triage flag is meant to bring forward; a later correction is
not the read). Studies are split by the tool's call: AI-positive (flagged) vs AI-negative
(the finding was there, the tool did not flag it). The committee's figure is the
difference of median minutes to report, flagged minus not flagged, with a bootstrap
interval: below 0 means flagged positives were read faster.

Results without an acquisition time, or times that run backwards (a report or result
stamped before acquisition: clock error), are counted as excluded, never silently used.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from surveillance.clinical.labels import extract_labels
from surveillance.contracts import AIResult, Label, ReportFinal
from surveillance.stats.median_difference import MedianDifference, median_difference


@dataclass(frozen=True, slots=True)
class PositiveStudy:
    tool_id: str
    site: str
    flagged: bool
    minutes_to_ai: float
    minutes_to_report: float
    acquired_at: datetime


@dataclass(frozen=True, slots=True)
class Turnaround:
    tool_id: str
    n_flagged: int
    n_unflagged: int
    median_minutes_to_ai: float | None
    #: Flagged minus not flagged, in minutes to the first report.
    report_difference: MedianDifference | None
    excluded: dict[str, int] = field(default_factory=dict)


def _labels(report: ReportFinal, codes: tuple[str, ...]) -> dict[str, Label]:
    if report.findings is not None:
        return {f.finding_code: f.label for f in report.findings}
    return extract_labels(report.report_text or "", codes)


def positive_studies(
    results: Iterable[AIResult], reports: Iterable[ReportFinal], finding_codes: Mapping[str, str]
) -> tuple[list[PositiveStudy], dict[str, dict[str, int]]]:
    """Finding-present studies per tool with their times, and exclusions per tool and reason.

    `finding_codes` maps tool id to the finding it calls; other tools are ignored.
    """
    codes = tuple(sorted(set(finding_codes.values())))
    first: dict[str, datetime] = {}
    last: dict[str, ReportFinal] = {}
    for report in reports:
        a = report.accession_number
        if a not in first or report.finalized_at < first[a]:
            first[a] = report.finalized_at
        if a not in last or report.finalized_at >= last[a].finalized_at:
            last[a] = report
    labels = {a: _labels(r, codes) for a, r in last.items()}
    studies: list[PositiveStudy] = []
    excluded: dict[str, dict[str, int]] = {}
    seen: set[str] = set()
    for result in results:
        tool = result.tool_id
        if tool not in finding_codes or result.event_id in seen:
            continue
        seen.add(result.event_id)
        a = result.accession_number
        if labels.get(a, {}).get(finding_codes[tool]) is not Label.PRESENT:
            continue
        reason = _exclusion(result, first[a])
        if reason is not None:
            counts = excluded.setdefault(tool, {})
            counts[reason] = counts.get(reason, 0) + 1
            continue
        assert result.acquired_at is not None
        studies.append(PositiveStudy(
            tool, result.site, result.result_indicator,
            (result.inference_date - result.acquired_at) / timedelta(minutes=1),
            (first[a] - result.acquired_at) / timedelta(minutes=1),
            result.acquired_at,
        ))
    return studies, excluded


def _exclusion(result: AIResult, first_report: datetime) -> str | None:
    if result.acquired_at is None:
        return "no acquisition time"
    if result.inference_date < result.acquired_at or first_report < result.acquired_at:
        return "time runs backwards"
    return None


def turnaround(
    studies: Iterable[PositiveStudy], tool_id: str, excluded: Mapping[str, int] | None = None
) -> Turnaround:
    """The tool's turnaround figures over `studies` (any site or week subset of them)."""
    mine = [s for s in studies if s.tool_id == tool_id]
    flagged = [s.minutes_to_report for s in mine if s.flagged]
    unflagged = [s.minutes_to_report for s in mine if not s.flagged]
    to_ai = sorted(s.minutes_to_ai for s in mine)
    median_ai = None
    if to_ai:
        mid = len(to_ai) // 2
        median_ai = to_ai[mid] if len(to_ai) % 2 else (to_ai[mid - 1] + to_ai[mid]) / 2
    difference = median_difference(flagged, unflagged) if flagged and unflagged else None
    return Turnaround(tool_id, len(flagged), len(unflagged), median_ai, difference,
                      dict(excluded or {}))
