"""Topics `cases.join` (ingest's output, the join's input) and `cases.adjudicated` (one AI
call joined to the radiologist's read). Identifiers here are pseudonymized."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Field, model_validator

from surveillance.contracts.ai_results import AIResult
from surveillance.contracts.base import Contract, Id, Label, Probability, Sex, ShortText
from surveillance.contracts.reports import ReportLabels, ReportStatus


class JoinInput(Contract):
    """Internal topic `cases.join`, keyed by pseudonymized accession, on the partition of
    the raw accession number (events a source system did not key by accession)."""

    kind: Literal["ai", "report"]
    ai: AIResult | None = None
    report: ReportLabels | None = None

    @model_validator(mode="after")
    def _one_payload(self) -> JoinInput:
        if (self.kind == "ai") != (self.ai is not None) or (self.kind == "report") != (
            self.report is not None
        ):
            raise ValueError("kind must match exactly one payload")
        return self

    @property
    def event_id(self) -> str:
        payload: Any = self.ai if self.kind == "ai" else self.report
        return str(payload.event_id)

    @property
    def accession(self) -> str:
        if self.ai is not None:
            return self.ai.accession_number
        assert self.report is not None
        return self.report.accession


class CaseOutcome(StrEnum):
    TP = "TP"
    FP = "FP"
    TN = "TN"
    FN = "FN"
    INDETERMINATE = "indeterminate"
    PENDING = "pending"
    UNLABELLED = "unlabelled"


class AdjudicatedCase(Contract):
    """One AI call joined to the radiologist's read (topic `cases.adjudicated`).

    A case is re-emitted with a higher `revision` when its label changes (corrected
    report, addendum, late report after `unlabelled`); a consumer keeps the highest
    revision per `case_id` and so counts every case once.
    """

    case_id: Id
    revision: Annotated[int, Field(ge=0)]
    outcome: CaseOutcome
    label: Label | None
    label_status: ReportStatus | None = None
    tool_id: Id
    software_version: Id
    finding_code: Id
    site: Id
    ai_result: Probability
    operating_threshold: Probability
    result_indicator: bool
    accession: Id
    study_date: date
    inference_date: AwareDatetime
    labelled_at: AwareDatetime | None = None
    modality: str
    scanner_manufacturer: ShortText
    scanner_model: ShortText
    scanner_software_version: ShortText
    protocol_name: ShortText | None = None
    kvp: float | None = None
    slice_thickness: float | None = None
    pixel_spacing: float | None = None
    contrast_indication: bool | None = None
    age: int | None = None
    sex: Sex = Sex.UNKNOWN
    ai_event_id: Id
    report_event_id: Id | None = None
