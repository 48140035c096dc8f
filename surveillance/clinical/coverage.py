"""Coverage: of the studies a tool should have seen, how many did it produce a result for?

A study is eligible for a tool when its report's ordered exam matches the tool's modality
and the registry's `coverage` rule (body parts, exam codes). It is covered when the tool
produced an AI result for its accession. A tool that silently stops running on one
scanner, or a routing rule that stops sending part of the exams, leaves volume alerts
quiet (the tool still runs elsewhere) but shows here as coverage below the floor for
that site.

Per tool, site and ISO week (Monday start, UTC) of the report's first finalization:
eligible and covered accessions, the share with its Wilson interval, and whether the
share is below the registry's floor. An AI result arriving before or after the report
counts alike; corrected reports and duplicate deliveries do not count a study twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from surveillance.clinical.baselines import ToolBaseline
from surveillance.contracts import AIResult, Exam, ReportFinal, ReportLabels, wire
from surveillance.stats.intervals import wilson

#: Fewest eligible studies in a week before a share is judged against the floor.
MIN_ELIGIBLE = 20


def eligible_tools(exam: Exam | wire.Exam | None,
                   registry: Mapping[str, ToolBaseline]) -> list[str]:
    """The tools (with a coverage rule) that should have seen a study of this exam."""
    if exam is None:
        return []
    return [tool_id for tool_id, tool in registry.items() if _matches(exam, tool)]


def _matches(exam: Exam | wire.Exam, tool: ToolBaseline) -> bool:
    rule = tool.coverage
    if rule is None or exam.modality.upper() != tool.modality.upper():
        return False
    if rule.exam_codes and exam.exam_code is not None:
        return exam.exam_code in rule.exam_codes
    if rule.body_parts:
        part = (exam.body_part_examined or "").upper()
        return part in {p.upper() for p in rule.body_parts}
    return not rule.exam_codes


@dataclass(frozen=True, slots=True)
class CoverageWeek:
    tool_id: str
    site: str
    week_start: date
    eligible: int
    covered: int
    share: float
    lower: float
    upper: float
    floor: float
    #: True when the share is below the floor on at least `MIN_ELIGIBLE` studies.
    below_floor: bool


def weekly_coverage(
    reports: Iterable[ReportFinal | ReportLabels],
    results: Iterable[AIResult],
    registry: Mapping[str, ToolBaseline],
) -> list[CoverageWeek]:
    """Coverage per tool, site and week; rows sorted by tool, site and week."""
    first: dict[str, tuple[datetime, str, Exam | None]] = {}
    for report in reports:
        accession = _accession(report)
        held = first.get(accession)
        if held is None or report.finalized_at < held[0]:
            first[accession] = (report.finalized_at, report.site, report.exam)
    ran: set[tuple[str, str]] = {(r.tool_id, r.accession_number) for r in results}
    counts: dict[tuple[str, str, date], list[int]] = {}
    for accession, (finalized, site, exam) in first.items():
        day = finalized.date()
        week = day - timedelta(days=day.weekday())
        for tool_id in eligible_tools(exam, registry):
            tally = counts.setdefault((tool_id, site, week), [0, 0])
            tally[0] += 1
            tally[1] += (tool_id, accession) in ran
    rows: list[CoverageWeek] = []
    for (tool_id, site, week), (eligible, covered) in sorted(counts.items()):
        rule = registry[tool_id].coverage
        assert rule is not None  # eligible_tools only returns tools with a rule
        lower, upper = wilson(covered, eligible)
        share = covered / eligible
        rows.append(CoverageWeek(tool_id, site, week, eligible, covered, share, lower, upper,
                                 rule.floor, eligible >= MIN_ELIGIBLE and share < rule.floor))
    return rows


def _accession(report: ReportFinal | ReportLabels) -> str:
    return report.accession_number if isinstance(report, ReportFinal) else report.accession
