"""The case join: AI results meet the radiologist's final report, by pseudonymized accession.

Pure state machine, no I/O. One `JoinState` per accession holds the AI results of every
tool that scored the study, the latest report's labels, and per tool the revision and
outcome last emitted. `apply()` folds one event into the state and returns the cases to
emit; `expire()` turns cases still waiting for a report past the horizon into
`unlabelled`.

Guarantees the stream relies on:
- either side may arrive first; a report may arrive days later;
- a corrected report or addendum replaces the earlier label and the case is re-emitted
  with a higher revision (consumers keep the highest revision per case: counted once);
- an event id already applied has no second effect; its case is re-emitted unchanged
  (same revision) so that output lost in a crash after the state was saved is restored;
- a report older (by finalization time) than the one held is recorded as seen and
  otherwise ignored, so out-of-order corrections cannot resurrect a superseded label;
- a cancelled report (HL7 result status X) withdraws the label: the case goes back to
  pending (and to unlabelled past the horizon) until a later report labels it again.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import msgspec

from surveillance.clinical.sites import case_site
from surveillance.contracts import CaseOutcome, Label, ReportStatus
from surveillance.contracts.wire import AdjudicatedCase, AIResult, JoinInput, ReportLabels


class HeldReport(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    event_id: str
    finalized_at: datetime
    status: ReportStatus
    labels: dict[str, Label]


class ToolCase(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True,
               gc=False):
    ai: AIResult
    revision: int = -1
    outcome: CaseOutcome | None = None
    label: Label | None = None
    #: The report that gave the case its label (None: pending, unlabelled, or a state of
    #: an earlier release, whose held report is then taken). A case is re-emitted as it
    #: was emitted (`_replay`): the latest report held can be a later correction that
    #: kept the label, and re-emitting the case with its time (read again after a crash)
    #: moved the case to another day for the monitor. Fields at their defaults are not
    #: written: a state of an earlier release reads back to the same JSON.
    labelled_by: str | None = None
    labelled_at: datetime | None = None
    label_status: ReportStatus | None = None


class JoinState(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """Everything known about one accession. Stored as the table value: `as_dict`, the
    JSON the pydantic model of earlier releases wrote, field for field (`from_dict`
    reads either). The join's structs are not tracked by the cyclic garbage collector
    (`gc=False`): none refers back to another, and the join table holds one per
    accession for the retention period, which each collection would scan again."""

    accession: str
    partition: int = 0
    seen: list[str] = msgspec.field(default_factory=list)
    tools: dict[str, ToolCase] = msgspec.field(default_factory=dict)
    report: HeldReport | None = None
    last_event_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = msgspec.to_builtins(self)
        return out

    @classmethod
    def from_dict(cls, raw: Any) -> JoinState:
        return msgspec.convert(raw, cls)


def event_time(item: JoinInput) -> datetime:
    if item.ai is not None:
        return item.ai.inference_date
    assert item.report is not None
    return item.report.finalized_at


def outcome_for(ai: AIResult, label: Label | None) -> CaseOutcome:
    if label is None:
        return CaseOutcome.PENDING
    if label is Label.INDETERMINATE:
        return CaseOutcome.INDETERMINATE
    present = label is Label.PRESENT
    if ai.result_indicator:
        return CaseOutcome.TP if present else CaseOutcome.FP
    return CaseOutcome.FN if present else CaseOutcome.TN


def _labelled_by(state: JoinState, tool: ToolCase
                 ) -> tuple[str | None, datetime | None, ReportStatus | None]:
    """(report event id, its time, its status) of the report that labelled the case."""
    if tool.outcome in (CaseOutcome.PENDING, CaseOutcome.UNLABELLED):
        return None, None, None
    if tool.labelled_by is not None:
        return tool.labelled_by, tool.labelled_at, tool.label_status
    report = state.report
    return (None, None, None) if report is None else (
        report.event_id, report.finalized_at, report.status)


def _case(state: JoinState, tool: ToolCase) -> AdjudicatedCase:
    ai = tool.ai
    assert tool.outcome is not None
    report_event_id, labelled_at, label_status = _labelled_by(state, tool)
    return AdjudicatedCase(
        case_id=f"{state.accession}:{ai.tool_id}",
        revision=tool.revision,
        outcome=tool.outcome,
        label=tool.label,
        label_status=label_status,
        tool_id=ai.tool_id,
        software_version=ai.software_version,
        finding_code=ai.finding_code,
        site=case_site(ai.site),
        ai_result=ai.ai_result,
        operating_threshold=ai.operating_threshold,
        result_indicator=ai.result_indicator,
        accession=state.accession,
        study_date=ai.study_date,
        inference_date=ai.inference_date,
        labelled_at=labelled_at,
        modality=ai.modality,
        scanner_manufacturer=ai.scanner.manufacturer,
        scanner_model=ai.scanner.model,
        scanner_software_version=ai.scanner.software_version,
        protocol_name=ai.acquisition.protocol_name,
        kvp=ai.acquisition.kvp,
        slice_thickness=ai.acquisition.slice_thickness,
        pixel_spacing=ai.acquisition.pixel_spacing,
        contrast_indication=ai.contrast_indication,
        age=ai.age,
        sex=ai.sex,
        ai_event_id=ai.event_id,
        report_event_id=report_event_id,
    )


def _settle(state: JoinState, tool: ToolCase, expired: bool) -> AdjudicatedCase | None:
    """Recompute one tool's outcome; bump the revision and return the case if it changed."""
    label: Label | None = None
    if state.report is not None and state.report.status is not ReportStatus.CANCELLED:
        # A report that does not mention the finding cannot adjudicate it.
        label = state.report.labels.get(tool.ai.finding_code, Label.INDETERMINATE)
    outcome = outcome_for(tool.ai, label)
    if outcome is CaseOutcome.PENDING and (expired or tool.outcome is CaseOutcome.UNLABELLED):
        outcome = CaseOutcome.UNLABELLED
    if outcome == tool.outcome and label == tool.label:
        return None
    tool.outcome, tool.label = outcome, label
    report = state.report
    if label is None or report is None:
        tool.labelled_by = tool.labelled_at = tool.label_status = None
    else:
        tool.labelled_by, tool.labelled_at = report.event_id, report.finalized_at
        tool.label_status = report.status
    tool.revision += 1
    return _case(state, tool)


def apply(
    state: JoinState | None, item: JoinInput, partition: int, horizon: timedelta,
    watermark: datetime | None,
) -> tuple[JoinState, list[AdjudicatedCase]]:
    """Fold one validated, pseudonymized event into its accession's state."""
    state = state or JoinState(accession=item.accession, partition=partition)
    state.partition = partition
    at = event_time(item)
    if state.last_event_at is None or at > state.last_event_at:
        state.last_event_at = at
    if item.event_id in state.seen:
        return state, _replay(state, item)
    state.seen.append(item.event_id)
    emitted: list[AdjudicatedCase] = []
    if item.ai is not None:
        ai = item.ai
        held = state.tools.get(ai.tool_id)
        if held is not None and held.ai.inference_date > ai.inference_date:
            return state, []  # an older run of the same tool on this study: superseded
        tool = ToolCase(ai=ai) if held is None else msgspec.structs.replace(held, ai=ai)
        state.tools[ai.tool_id] = tool
        expired = watermark is not None and ai.inference_date + horizon <= watermark
        case = _settle(state, tool, expired)
        if case is None and held is not None:
            # A re-run of the tool on the same study: same outcome, new score.
            tool.revision += 1
            case = _case(state, tool)
        if case is not None:
            emitted.append(case)
    else:
        report = item.report
        assert report is not None
        if state.report is not None and state.report.finalized_at > report.finalized_at:
            return state, []
        state.report = _held(report)
        for tool in state.tools.values():
            case = _settle(state, tool, expired=False)
            if case is not None:
                emitted.append(case)
    return state, emitted


def _held(report: ReportLabels) -> HeldReport:
    return HeldReport(
        event_id=report.event_id,
        finalized_at=report.finalized_at,
        status=report.status,
        labels=dict(report.labels),
    )


def _replay(state: JoinState, item: JoinInput) -> list[AdjudicatedCase]:
    tools = (
        [state.tools[item.ai.tool_id]]
        if item.ai is not None and item.ai.tool_id in state.tools
        else list(state.tools.values()) if item.report is not None else []
    )
    return [_case(state, t) for t in tools if t.outcome is not None]


def pending_deadlines(state: JoinState, horizon: timedelta) -> list[datetime]:
    """When each still-pending case of this accession becomes unlabelled."""
    return [
        t.ai.inference_date + horizon
        for t in state.tools.values()
        if t.outcome is CaseOutcome.PENDING
    ]


def expire(state: JoinState, horizon: timedelta, watermark: datetime) -> list[AdjudicatedCase]:
    """Mark every case pending past the horizon `unlabelled`; returns what changed."""
    emitted = []
    for tool in state.tools.values():
        if tool.outcome is CaseOutcome.PENDING and tool.ai.inference_date + horizon <= watermark:
            case = _settle(state, tool, expired=True)
            if case is not None:
                emitted.append(case)
    return emitted


def is_stale(state: JoinState, retention: timedelta, watermark: datetime) -> bool:
    """True when nothing has happened on this accession for the retention period."""
    return state.last_event_at is not None and state.last_event_at + retention <= watermark
