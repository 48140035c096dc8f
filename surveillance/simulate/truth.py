"""Ground truth of a simulated stream, from the generator's own records (not the bytes)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from surveillance.contracts import Label, ReportStatus
from surveillance.simulate.events import ToolTruth


@dataclass(frozen=True, slots=True)
class CaseRecord:
    tool: str
    accession: str
    version: str
    positive: bool
    arrival: datetime


@dataclass(frozen=True, slots=True)
class ReportRecord:
    accession: str
    finalized: datetime
    arrival: datetime
    labels: dict[str, Label]
    status: ReportStatus


def outcome(positive: bool, label: Label) -> str:
    """TP/FP/TN/FN of an AI call against the report label; "indeterminate" when unreadable."""
    if label is Label.INDETERMINATE:
        return "indeterminate"
    if label is Label.PRESENT:
        return "TP" if positive else "FN"
    return "FP" if positive else "TN"


def tool_truth(
    cases: list[CaseRecord], reports: list[ReportRecord], codes: dict[str, str], end: datetime
) -> dict[str, ToolTruth]:
    """What a correct pipeline counts from everything that arrives before `end`.

    `codes` maps tool id to finding code. A case's label is that of the last report of its
    accession by finalization time.
    """
    truth = {tool: ToolTruth() for tool in codes}
    by_accession: dict[str, list[ReportRecord]] = {}
    for report in reports:
        if report.arrival < end:
            by_accession.setdefault(report.accession, []).append(report)
    for case in cases:
        if case.arrival >= end:
            continue
        counts = truth[case.tool]
        counts.cases += 1
        counts.versions[case.version] += 1
        history = sorted(by_accession.get(case.accession, []), key=lambda r: r.finalized)
        if not history:
            counts.final_outcomes["no_report"] += 1
            continue
        code = codes[case.tool]
        counts.final_outcomes[outcome(case.positive, history[-1].labels[code])] += 1
        revisions = [r for r in history if r.status is not ReportStatus.FINAL]
        counts.correction_reports += len(revisions)
        if any(r.labels[code] != history[0].labels[code] for r in revisions):
            counts.corrections += 1
    return truth
