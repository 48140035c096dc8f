"""The hot path's view of the contracts: msgspec structs with the same fields, types,
bounds and defaults as the pydantic models (which stay the source of the JSON Schemas and
the APIs).

msgspec decodes and validates a document in one pass, 5-10x faster than json + pydantic.
It is used as a shortcut for acceptance only (`fast`): it takes a document when msgspec
decodes it strictly, no string in it has edge whitespace or a control character, and no
time has more than 6 fractional digits; anything else is handed to the pydantic model,
whose verdict (and error message) stands (`decode`, and ingest's own slow path). So the
two accept and reject the same documents, and a document taken by the shortcut has the
values pydantic gives it and is written back as pydantic writes it (`encode`)
(`tests/test_contracts_wire.py` checks all three on a generated and mutated corpus).
Why strings are screened: pydantic strips edge whitespace from every string (`Contract`),
msgspec keeps it; and ingest refuses control characters, which the slow path words field
by field. msgspec alone is stricter than pydantic's lax mode (no "0.5" for a float, no
1.0 for an int): such documents take the slow path and are accepted as before.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from pydantic import BaseModel

from surveillance.contracts import ai_results, cases, reports
from surveillance.contracts.ai_results import MeasurementUnit
from surveillance.contracts.base import Label, Sex
from surveillance.contracts.cases import CaseOutcome
from surveillance.contracts.reports import ReportStatus

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
ShortText = Annotated[str, msgspec.Meta(max_length=256)]
Probability = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Modality = Annotated[str, msgspec.Meta(min_length=1, max_length=16)]
Age = Annotated[int, msgspec.Meta(ge=0, le=130)]
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]


class Struct(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """Base of every contract struct: unknown fields are an error, values immutable;
    each is keyword-only, so fields keep the models' order (and JSON theirs). Not tracked
    by the cyclic garbage collector (`gc=False`): an immutable value holding values
    cannot be part of a cycle, and the join keeps every held AI result in its state,
    which each collection would otherwise scan again."""


class Scanner(Struct, frozen=True, kw_only=True):
    manufacturer: ShortText
    model: ShortText
    software_version: ShortText


class Acquisition(Struct, frozen=True, kw_only=True):
    kvp: Annotated[float, msgspec.Meta(gt=0, le=200)] | None = None
    slice_thickness: Annotated[float, msgspec.Meta(gt=0, le=50)] | None = None
    pixel_spacing: Annotated[float, msgspec.Meta(gt=0, le=10)] | None = None
    protocol_name: ShortText | None = None


class Measurement(Struct, frozen=True, kw_only=True):
    # JSON has no inf/nan literal msgspec takes; an overflowing number fails the bounds.
    value: Annotated[float, msgspec.Meta(ge=-1e6, le=1e6)]
    unit: MeasurementUnit


class AIResult(Struct, frozen=True, kw_only=True):
    event_id: Id
    tool_id: Id
    manufacturer: ShortText
    model: ShortText
    software_version: Id
    platform: ShortText | None = None
    finding_code: Id
    ai_result: Probability
    operating_threshold: Probability
    result_indicator: bool
    patient_id: Id
    accession_number: Id
    study_instance_uid: Id
    study_date: date
    site: Id
    modality: Modality
    body_part_examined: ShortText
    exam_name: ShortText | None = None
    contrast_indication: bool | None = None
    scanner: Scanner
    acquisition: Acquisition = msgspec.field(default_factory=Acquisition)
    age: Age | None = None
    sex: Sex = Sex.UNKNOWN
    inference_date: AwareDatetime
    pseudonymized: bool = False
    measurement: Measurement | None = None
    acquired_at: AwareDatetime | None = None


class ReferenceMeasurement(Measurement, frozen=True, kw_only=True):
    finding_code: Id


class Exam(Struct, frozen=True, kw_only=True):
    modality: Modality
    body_part_examined: ShortText | None = None
    exam_code: ShortText | None = None


class StructuredFinding(Struct, frozen=True, kw_only=True):
    finding_code: Id
    label: Label


class ReportFinal(Struct, frozen=True, kw_only=True):
    event_id: Id
    accession_number: Id
    patient_id: Id | None = None
    site: Id
    finalized_at: AwareDatetime
    status: ReportStatus = ReportStatus.FINAL
    findings: list[StructuredFinding] | None = None
    report_text: Annotated[str, msgspec.Meta(max_length=32_000)] | None = None
    reference_measurements: (
        Annotated[list[ReferenceMeasurement], msgspec.Meta(max_length=64)] | None) = None
    exam: Exam | None = None

    def __post_init__(self) -> None:
        if self.findings is None and not self.report_text:
            raise ValueError("a report needs structured findings or report_text")


class ReportLabels(Struct, frozen=True, kw_only=True):
    event_id: Id
    accession: Id
    site: Id
    finalized_at: AwareDatetime
    status: ReportStatus
    labels: dict[str, Label]
    label_source: Literal["structured", "text"]
    exam: Exam | None = None


class JoinInput(Struct, frozen=True, kw_only=True):
    kind: Literal["ai", "report"]
    ai: AIResult | None = None
    report: ReportLabels | None = None

    def __post_init__(self) -> None:
        if (self.kind == "ai") != (self.ai is not None) or (self.kind == "report") != (
            self.report is not None
        ):
            raise ValueError("kind must match exactly one payload")

    @property
    def event_id(self) -> str:
        payload: AIResult | ReportLabels | None = self.ai if self.kind == "ai" else self.report
        assert payload is not None
        return payload.event_id

    @property
    def accession(self) -> str:
        if self.ai is not None:
            return self.ai.accession_number
        assert self.report is not None
        return self.report.accession


class AdjudicatedCase(Struct, frozen=True, kw_only=True):
    case_id: Id
    revision: Annotated[int, msgspec.Meta(ge=0)]
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


#: A case as the engine reads it (the struct) or as reports and tests build it (the model):
#: the same fields, read by attribute.
AnyAdjudicatedCase = cases.AdjudicatedCase | AdjudicatedCase

#: Each struct and the pydantic model it mirrors.
MODELS: dict[type[Struct], type[BaseModel]] = {
    AIResult: ai_results.AIResult,
    ReportFinal: reports.ReportFinal,
    JoinInput: cases.JoinInput,
    AdjudicatedCase: cases.AdjudicatedCase,
}
S = TypeVar("S", bound=Struct)
_DECODERS: dict[type[Any], msgspec.json.Decoder[Any]] = {}
_ENCODER = msgspec.json.Encoder()

#: A control character or lone surrogate: the shortcut leaves such a document to pydantic
#: and ingest's per-field checks (which name the field).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
#: A time with more than 6 fractional digits: msgspec rounds them, pydantic truncates.
#: (Led by a literal, which `re` scans for fast; numbers have no colon, so no false hit.)
_LONG_FRACTION = re.compile(rb":[0-9]{2}:[0-9]{2}[.,][0-9]{7}")
_TEXT = ReportFinal.__struct_fields__.index("report_text")
#: The structs nested in others (what `strings` descends into).
_NESTED = frozenset({Scanner, Acquisition, Measurement, ReferenceMeasurement, Exam,
                     StructuredFinding, AIResult, ReportLabels})


def strings(value: Struct, out: list[str]) -> list[str]:
    """Every string in a decoded struct into `out`: field values, list items, dict keys
    and values, except a report's text (free text has line breaks; ingest drops it after
    labelling). Enum members are skipped: msgspec matched their values exactly."""
    items = msgspec.structs.astuple(value)
    if type(value) is ReportFinal:
        items = items[:_TEXT] + items[_TEXT + 1:]
    out += [item for item in items if type(item) is str]
    for item in items:
        kind = type(item)
        if kind in _NESTED:
            strings(item, out)
        elif kind is dict:
            for key, entry in item.items():
                out.append(key)
                if type(entry) is str:
                    out.append(entry)
        elif kind is list:
            for entry in item:
                if type(entry) in _NESTED:
                    strings(entry, out)
    return out


def suspect(value: Struct) -> bool:
    """True when a string of `value` has a control character or edge whitespace (a
    report's text: edge whitespace only)."""
    text = value.report_text if type(value) is ReportFinal else None
    if text and (text[0].isspace() or text[-1].isspace()):
        return True
    found = strings(value, [])
    return _CONTROL.search("".join(found)) is not None or any(
        s[:1].isspace() or s[-1:].isspace() for s in found)


def fast(raw: bytes, kind: type[S]) -> S | None:
    """The struct when msgspec takes the document and no string needs pydantic's rules;
    None otherwise (the caller asks pydantic)."""
    decoder = _DECODERS.get(kind)
    if decoder is None:
        decoder = _DECODERS[kind] = msgspec.json.Decoder(kind)
    if _LONG_FRACTION.search(raw):
        return None
    try:
        value: S = decoder.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    return value if plain(raw) or plain_but_text(raw, value) or not suspect(value) else None


def plain(raw: bytes) -> bool:
    """True when no string of a decoded document can hold a control character or edge
    whitespace, by the bytes alone: ASCII (no C1 control, no Unicode space), no escape
    (the only way to write a C0 control or a lone surrogate), no DEL, and no space next to
    a quote (a compact document has none outside its strings). The usual document, and
    the cheap test; any other is screened string by string (`suspect`)."""
    return (raw.isascii() and b"\\" not in raw and b"\x7f" not in raw and b'" ' not in raw
            and b' "' not in raw)


def plain_but_text(raw: bytes, value: Struct) -> bool:
    """For a report, `plain` once its text is taken out: its line breaks are escapes
    and it may quote, but a text is screened for edge whitespace only (`suspect`). The
    text's JSON as msgspec writes it is cut from `raw` once; any other string that had
    the same bytes is then still there, and as plain as the text's copy that was cut.
    A producer that escapes the text otherwise (non-ASCII as \\u escapes) goes to
    `suspect`, as before."""
    if type(value) is not ReportFinal:
        return False
    text = value.report_text
    if not text or text[0].isspace() or text[-1].isspace():
        return False
    encoded = _ENCODER.encode(text)
    return encoded in raw and plain(raw.replace(encoded, b'""', 1))


def from_model(model: BaseModel, kind: type[S]) -> S:
    """The struct of a model pydantic accepted (the slow path's result)."""
    return msgspec.convert(model.model_dump(), kind, from_attributes=True)


def decode(raw: bytes, kind: type[S]) -> S:
    """`raw` as a `kind`, accepted and valued exactly as its pydantic model would;
    raises pydantic's `ValidationError` when that model refuses it."""
    value = fast(raw, kind)
    if value is not None:
        return value
    return from_model(MODELS[kind].model_validate_json(raw), kind)


def encode(value: Struct) -> bytes:
    """The JSON the pydantic model writes, in the same field order, byte for byte but for
    floats from 1e16 up (msgspec writes 1e16, pydantic 1e+16; same values)."""
    return _ENCODER.encode(value)
