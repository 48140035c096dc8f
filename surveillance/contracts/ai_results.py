"""Topic `ai.results`: one AI tool's output on one study.

Field names of `AIResult` follow the ACR Connect / Assess-AI "AI Result" upload template
where it has one (Patient ID, Accession Number, Result Indicator, AI Result, Manufacturer,
Model, Software Version, Platform, Inference Date, Study Date, Age, Sex, Exam Name,
Modality, Body Part Examined, Contrast Indication), in snake_case. In that template
`manufacturer` / `model` / `software_version` describe the AI product; the scanner that
made the images is described by `scanner` with DICOM keywords (Manufacturer,
ManufacturerModelName, SoftwareVersions), and acquisition fields use DICOM keywords too
(KVP, SliceThickness, PixelSpacing, ProtocolName).
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, Field, StringConstraints

from surveillance.contracts.base import Contract, Id, Probability, Sex, ShortText


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
