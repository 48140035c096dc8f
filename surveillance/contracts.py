"""Event contracts: the only definition of every event on every topic.

Field names of `AIResult` follow the ACR Connect / Assess-AI "AI Result" upload template
where it has one (Patient ID, Accession Number, Result Indicator, AI Result, Manufacturer,
Model, Software Version, Platform, Inference Date, Study Date, Age, Sex, Exam Name,
Modality, Body Part Examined, Contrast Indication), in snake_case. In that template
`manufacturer` / `model` / `software_version` describe the AI product; the scanner that
made the images is described by `scanner` with DICOM keywords (Manufacturer,
ManufacturerModelName, SoftwareVersions), and acquisition fields use DICOM keywords too
(KVP, SliceThickness, PixelSpacing, ProtocolName).

Input topics (`ai.results`, `reports.final`, `adverse.events`) carry the identifiers the
source systems use. Ingest validates each event, replaces identifiers by keyed HMACs and
drops report text; everything downstream of ingest (`cases.join`, `cases.adjudicated`,
`surveillance.alerts`, tables, logs, metrics) carries pseudonymized values only.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

Id = Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True)]
ShortText = Annotated[str, StringConstraints(max_length=256)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]

#: Largest serialized event we accept on an input topic; bigger ones go to the DLQ.
MAX_EVENT_BYTES = 64 * 1024


class Contract(BaseModel):
    """Base of every event: unknown fields are an error, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Sex(StrEnum):
    FEMALE = "F"
    MALE = "M"
    OTHER = "O"
    UNKNOWN = "U"


class Label(StrEnum):
    """The radiologist's read of one finding, as taken from the final report."""

    PRESENT = "present"
    ABSENT = "absent"
    INDETERMINATE = "indeterminate"


class Scanner(Contract):
    manufacturer: ShortText
    model: ShortText
    software_version: ShortText


class Acquisition(Contract):
    kvp: Annotated[float, Field(gt=0, le=200)] | None = None
    slice_thickness: Annotated[float, Field(gt=0, le=50)] | None = None
    pixel_spacing: Annotated[float, Field(gt=0, le=10)] | None = None
    protocol_name: ShortText | None = None


# --- Quantification (issue #20): a tool's numeric measurement and the report's reference.


class MeasurementUnit(StrEnum):
    """UCUM units of the measurements quantification tools report (a fixed set: they
    become metric labels and are compared for equality between AI and report)."""

    MILLILITER = "mL"
    MILLIMETER = "mm"
    PERCENT = "%"


class Measurement(Contract):
    """One numeric measurement, e.g. hemorrhage volume in mL or ejection fraction in %."""

    value: Annotated[float, Field(ge=-1e6, le=1e6, allow_inf_nan=False)]
    unit: MeasurementUnit


class ReferenceMeasurement(Measurement):
    """A measurement the radiologist stated in a structured report field, for one finding."""

    finding_code: Id


class Exam(Contract):
    """What was examined, as the RIS orders it (HL7 OBR-4, DICOM Modality/BodyPartExamined):
    decides which tools should have seen the study (coverage)."""

    modality: Annotated[str, StringConstraints(min_length=1, max_length=16)]
    body_part_examined: ShortText | None = None
    exam_code: ShortText | None = None


class AIResult(Contract):
    """One AI tool's output on one study (topic `ai.results`)."""

    event_id: Id
    tool_id: Id
    manufacturer: ShortText = Field(description="AI vendor")
    model: ShortText = Field(description="AI product name")
    software_version: Id = Field(description="AI model version")
    platform: ShortText | None = Field(default=None, description="AI orchestration platform")
    finding_code: Id
    ai_result: Probability = Field(description="model score in [0, 1]")
    operating_threshold: Probability
    result_indicator: bool = Field(description="positive call at the operating threshold")
    patient_id: Id
    accession_number: Id
    study_instance_uid: Id
    study_date: date
    site: Id
    modality: Annotated[str, StringConstraints(min_length=1, max_length=16)]
    body_part_examined: ShortText
    exam_name: ShortText | None = None
    contrast_indication: bool | None = None
    scanner: Scanner
    acquisition: Acquisition = Acquisition()
    age: Annotated[int, Field(ge=0, le=130)] | None = None
    sex: Sex = Sex.UNKNOWN
    inference_date: AwareDatetime
    pseudonymized: bool = Field(
        default=False, description="set by ingest: identifiers are keyed HMACs"
    )
    measurement: Measurement | None = Field(
        default=None, description="quantification tools: the measured value and unit"
    )
    acquired_at: AwareDatetime | None = Field(
        default=None, description="study acquisition time (DICOM AcquisitionDateTime)"
    )


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


class DiscordanceType(StrEnum):
    FALSE_NEGATIVE = "false_negative"
    FALSE_POSITIVE = "false_positive"
    DELAYED_NOTIFICATION = "delayed_notification"
    OTHER = "other"


class Outcome(StrEnum):
    """FDA Form 3500A, section B2 (outcomes attributed to the adverse event)."""

    DEATH = "death"
    LIFE_THREATENING = "life_threatening"
    HOSPITALIZATION = "hospitalization"
    DISABILITY = "disability"
    REQUIRED_INTERVENTION = "required_intervention"
    OTHER_SERIOUS = "other_serious"
    NON_SERIOUS = "non_serious"


class AEPatient(Contract):
    """3500A section A."""

    patient_id: Id | None = None
    age: Annotated[int, Field(ge=0, le=130)] | None = None
    sex: Sex = Sex.UNKNOWN


class AEEvent(Contract):
    """3500A section B."""

    event_type: Literal["adverse_event", "product_problem", "both"] = "adverse_event"
    outcome: Outcome
    event_date: date
    narrative: Annotated[str, StringConstraints(min_length=1, max_length=8_000)]


class AEDevice(Contract):
    """3500A section D."""

    tool_id: Id
    manufacturer: ShortText
    software_version: Id
    clearance_number: ShortText | None = None


class AEReporter(Contract):
    """3500A section E."""

    name: ShortText
    role: ShortText
    contact: ShortText


class AdverseEvent(Contract):
    """An adverse-event report about an AI tool (topic `adverse.events`)."""

    event_id: Id = Field(description="submission id; resubmissions are idempotent")
    received_at: AwareDatetime
    aware_date: date = Field(description="date the facility became aware of the event")
    patient: AEPatient = AEPatient()
    event: AEEvent
    device: AEDevice
    reporter: AEReporter
    accession_number: Id | None = None
    ai_output: Probability | None = None
    ai_threshold: Probability | None = None
    radiologist_read: Label | None = None
    discordance_type: DiscordanceType
    pseudonymized: bool = False


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


class AlertSeverity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class Alert(Contract):
    """A verdict with its clinical context (topic `surveillance.alerts`).

    Says what changed, by how much, since when, on which subgroup, compared with what.
    """

    alert_id: Id
    kind: Literal[
        "baseline_deviation",
        "cusum_signal",
        "version_change",
        "unvalidated_version",
        "input_drift",
        "output_drift",
        "new_category",
        "label_free_warning",
        "shadow_discordance",
        "embedding_drift",
        "adverse_event",
        "regulatory_due_soon",
        "regulatory_overdue",
    ]
    severity: AlertSeverity
    raised_at: AwareDatetime
    tool_id: Id
    software_version: Id | None = None
    site: Id | None = None
    metric: ShortText | None = None
    value: float | None = None
    interval: tuple[float, float] | None = None
    baseline: float | None = None
    n: int | None = None
    window: ShortText | None = None
    since: AwareDatetime | None = None
    subgroup: dict[str, str] | None = None
    summary: Annotated[str, StringConstraints(max_length=1_000)]
    details: dict[str, Any] = Field(default_factory=dict)


class MetricSnapshot(Contract):
    """A metric's value at a point in time (topic `surveillance.snapshots`), for storage.

    `kind` agreement: `metric` is sensitivity/specificity/ppv/...; cusum: the chart's
    statistic; drift: `metric` is the feature and `detector` the detector.
    """

    snapshot_id: Id
    kind: Literal["agreement", "cusum", "drift", "shadow"]
    at: AwareDatetime
    tool_id: Id
    software_version: Id | None = None
    site: Id | None = None
    window: ShortText | None = None
    metric: ShortText
    detector: ShortText | None = None
    subgroup: dict[str, str] | None = None
    value: float | None
    lower: float | None = None
    upper: float | None = None
    n: int | None = None


class DeadLetter(Contract):
    """An input event that could not be accepted (topic `<topic>.dlq`)."""

    source_topic: Id
    source_partition: int
    source_offset: int
    reason: Annotated[str, StringConstraints(max_length=2_000)]
    received_at: datetime
    original_b64: str = Field(
        description="the original bytes (truncated to the limit): base64, or with "
        "`encryption` fernet the Fernet token of them"
    )
    original_size: int
    encryption: Literal["none", "fernet"] = Field(
        default="none", description="fernet: `original_b64` is encrypted with the DLQ key"
    )


#: Topic name -> model of its value, for validation and JSON Schema export.
TOPIC_MODELS: dict[str, type[Contract]] = {
    "ai.results": AIResult,
    "reports.final": ReportFinal,
    "adverse.events": AdverseEvent,
    "cases.join": JoinInput,
    "cases.adjudicated": AdjudicatedCase,
    "surveillance.alerts": Alert,
    "surveillance.snapshots": MetricSnapshot,
    "dlq": DeadLetter,
}
