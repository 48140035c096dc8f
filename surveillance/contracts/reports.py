"""Topic `reports.final` (the finalized report as the RIS sends it) and `ReportLabels`
(the same report after ingest: labels only, no text)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, StringConstraints, model_validator

from surveillance.contracts.ai_results import Measurement
from surveillance.contracts.base import Contract, Id, Label, ShortText


class ReferenceMeasurement(Measurement):
    """A measurement the radiologist stated in a structured report field, for one finding."""

    finding_code: Id


class Exam(Contract):
    """What was examined, as the RIS orders it (HL7 OBR-4, DICOM Modality/BodyPartExamined):
    decides which tools should have seen the study (coverage)."""

    modality: Annotated[str, StringConstraints(min_length=1, max_length=16)]
    body_part_examined: ShortText | None = None
    exam_code: ShortText | None = None


class StructuredFinding(Contract):
    finding_code: Id
    label: Label


class ReportStatus(StrEnum):
    FINAL = "final"
    CORRECTED = "corrected"
    ADDENDUM = "addendum"
    #: The report was withdrawn (HL7 result status X, FHIR cancelled/entered-in-error):
    #: the case's label is withdrawn with it.
    CANCELLED = "cancelled"


class ReportFinal(Contract):
    """A finalized radiology report (topic `reports.final`, e.g. from an HL7 ORU^R01).

    Carries structured finding labels when the reporting template gives them, else the
    report text, from which ingest extracts the labels and then drops the text.
    """

    event_id: Id
    accession_number: Id
    patient_id: Id | None = None
    site: Id
    finalized_at: AwareDatetime
    status: ReportStatus = ReportStatus.FINAL
    findings: list[StructuredFinding] | None = None
    report_text: Annotated[str, StringConstraints(max_length=32_000)] | None = None
    reference_measurements: Annotated[list[ReferenceMeasurement], Field(max_length=64)] | None = (
        Field(default=None, description="structured measurement fields of the report")
    )
    exam: Exam | None = Field(default=None, description="the ordered exam, for coverage")

    @model_validator(mode="after")
    def _labels_or_text(self) -> ReportFinal:
        if self.findings is None and not self.report_text:
            raise ValueError("a report needs structured findings or report_text")
        return self


class ReportLabels(Contract):
    """A report after ingest: labels only, identifiers pseudonymized, no text."""

    event_id: Id
    accession: Id
    site: Id
    finalized_at: AwareDatetime
    status: ReportStatus
    labels: dict[str, Label]
    label_source: Literal["structured", "text"]
    exam: Exam | None = None
