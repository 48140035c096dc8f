"""Per sending facility: where an ORU^R01 or MDM^T02 keeps what `ReportFinal` needs. YAML,
validated.

A facility is matched on MSH-4 (sending facility, first component); facilities not
listed use `defaults`. Every key is optional; the defaults fit the common radiology feed
(accession in OBR-3, report time in OBR-22, F/C/A/X result statuses). See the README's
"HL7 v2 and FHIR" section for a PowerScribe-style and an Epic-style example.
"""

from __future__ import annotations

import re
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from surveillance.contracts import Label, ReportStatus
from surveillance.interop.errors import MappingError
from surveillance.interop.hl7_text import codec

_FIELD = re.compile(r"^(MSH|PID|PV1|ORC|OBR|OBX|TXA)-(\d{1,3})(?:\.(\d{1,2}))?$")

FieldRef = Annotated[str, Field(pattern=_FIELD.pattern)]

#: A result status (OBR-25, else OBX-11) means one of these, or "skip" (not a report to
#: label from: preliminary, in progress...; counted and not used).
StatusUse = ReportStatus | Literal["skip"]


@lru_cache(maxsize=256)
def field_ref(ref: str) -> tuple[str, int, int]:
    """``"OBR-3"`` -> ("OBR", 3, 1); ``"PID-3.1"`` -> ("PID", 3, 1)."""
    m = _FIELD.match(ref)
    if m is None:
        raise ValueError(f"{ref!r} is not a field reference like OBR-3 or PID-3.1")
    return m.group(1), int(m.group(2)), int(m.group(3) or 1)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PatientId(_Strict):
    field: FieldRef = "PID-3"
    #: Pick the repetition whose identifier type (CX-5) is this, e.g. MR; else the first.
    type: str | None = None


class FacilityMapping(_Strict):
    #: The site id on `reports.final`; default: the MSH-4 value itself.
    site: str | None = Field(default=None, min_length=1, max_length=128)
    #: Zone of timestamps without a UTC offset (IANA name).
    timezone: str = "UTC"
    #: Character set when MSH-18 is empty (an MSH-18 value always wins).
    charset: str = "utf-8"
    #: Fields tried in order; the first non-empty one is the accession number.
    #: (TXA-15 and TXA-14, the document's filler and placer order numbers: an MDM^T02
    #: without an order group; an ORU has no TXA, so they never apply to it.)
    accession: list[FieldRef] = Field(default=["OBR-3", "OBR-2", "TXA-15", "TXA-14"],
                                      min_length=1)
    #: Fields tried in order for the report's finalization time (OBX-n: the group's first
    #: OBX that has the field). TXA-22.15 is an MDM document's authentication time (when
    #: it was signed), TXA-6 its origination (dictation) time.
    report_time: list[FieldRef] = Field(
        default=["OBR-22", "TXA-22.15", "TXA-6", "OBR-7", "OBX-14", "MSH-7"], min_length=1)
    patient_id: PatientId = PatientId()
    statuses: dict[str, StatusUse] = Field(
        default_factory=lambda: {  # type: ignore[arg-type]
            "F": ReportStatus.FINAL,
            "C": ReportStatus.CORRECTED,
            "A": ReportStatus.ADDENDUM,
            "X": ReportStatus.CANCELLED,
        }
    )
    #: MDM^T02: TXA-17, the document completion status (HL7 table 0271), means one of
    #: these; the document is an addendum when TXA-13 names its parent document. Codes
    #: not listed are counted as skipped and not used, as result statuses are.
    document_statuses: dict[str, StatusUse] = Field(
        default_factory=lambda: {  # type: ignore[arg-type]
            "LA": ReportStatus.FINAL,  # legally authenticated
            "AU": ReportStatus.FINAL,  # authenticated (signed)
            "PA": "skip",  # pre-authenticated: a resident's preliminary
            "DO": "skip",  # documented, awaiting authentication
            "DI": "skip",  # dictated
            "IP": "skip",  # in progress
            "IN": "skip",  # incomplete
        }
    )
    #: A text line starting with one of these (case-insensitive) marks appended text:
    #: the report is an addendum even when the status says F.
    addendum_markers: list[str] = ["ADDENDUM"]
    #: Coded OBX results: OBX-3 identifier (``code`` or ``system|code``) -> finding code.
    findings: dict[str, str] = Field(default_factory=dict)
    #: Coded OBX-5 answers (``code`` or ``system|code``, case-insensitive) -> label.
    answers: dict[str, Label] = Field(
        default_factory=lambda: {
            "SCT|52101004": Label.PRESENT,
            "SCT|2667000": Label.ABSENT,
            "SCT|82334004": Label.INDETERMINATE,
            "Y": Label.PRESENT,
            "N": Label.ABSENT,
            "POS": Label.PRESENT,
            "NEG": Label.ABSENT,
            "IND": Label.INDETERMINATE,
            "PRESENT": Label.PRESENT,
            "ABSENT": Label.ABSENT,
            "INDETERMINATE": Label.INDETERMINATE,
        }
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from exc
        return value

    @field_validator("charset")
    @classmethod
    def _charset(cls, value: str) -> str:
        codec(value)
        return value

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @cached_property
    def markers(self) -> tuple[str, ...]:
        return tuple(m.upper() for m in self.addendum_markers)

    @cached_property
    def answer_labels(self) -> dict[str, Label]:
        return {k.upper(): v for k, v in self.answers.items()}


class Mapping(_Strict):
    defaults: FacilityMapping = FacilityMapping()
    facilities: dict[str, FacilityMapping] = Field(default_factory=dict)

    def for_facility(self, facility: str) -> FacilityMapping:
        return self.facilities.get(facility, self.defaults)


def load_mapping(path: Path | None) -> Mapping:
    """The mapping in `path`, or the defaults when no file is given."""
    if path is None:
        return Mapping()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise MappingError(f"cannot read the HL7 mapping {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise MappingError(f"the HL7 mapping {path} is not valid YAML{where}: {problem}") from exc
    if not isinstance(data, dict):
        raise MappingError(f"the HL7 mapping {path} must be a mapping with `facilities:`")
    # Facility settings are partial: each one is laid over `defaults`.
    defaults = data.get("defaults") or {}
    facilities = data.get("facilities") or {}
    if not isinstance(defaults, dict) or not isinstance(facilities, dict):
        raise MappingError(f"{path}: `defaults` and `facilities` must be mappings")
    return Mapping(
        defaults=_facility(path, "defaults", defaults),
        facilities={
            str(name): _facility(path, f"facilities.{name}", _over(defaults, spec))
            for name, spec in facilities.items()
        },
    )


def _over(defaults: dict[str, object], spec: object) -> object:
    return {**defaults, **spec} if isinstance(spec, dict) else spec or defaults


def _facility(path: Path, where: str, data: object) -> FacilityMapping:
    if not isinstance(data, dict):
        raise MappingError(f"{path}: {where} must be a mapping")
    try:
        return FacilityMapping.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        field = ".".join(str(p) for p in first["loc"])
        raise MappingError(f"{path}: {where}.{field}: {first['msg']}") from exc
