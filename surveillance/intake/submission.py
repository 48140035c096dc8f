"""What a person or system submits, how it is checked, and the event it becomes.

One model serves the JSON API and the HTML form (whose flat field names map onto it
through `FORM_FIELDS`). Checks that need the registry or today's date are in
`check_submission`; their messages, like pydantic's, are keyed by form field name.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from surveillance.clinical.baselines import ToolBaseline
from surveillance.contracts import (
    AdverseEvent,
    AEDevice,
    AEEvent,
    AEPatient,
    AEReporter,
    DiscordanceType,
    Label,
    Outcome,
    Sex,
)
from surveillance.privacy import pseudonymize


def _storable(value: str) -> str:
    # PostgreSQL text cannot hold U+0000: the store writer would have to drop the report
    # after the intake had accepted it. (Lone surrogates are refused by pydantic itself.)
    if "\x00" in value:
        raise ValueError(
            "This text contains a NUL character (U+0000), which cannot be stored; remove it."
        )
    return value


Storable = AfterValidator(_storable)
Text = Annotated[
    str, StringConstraints(min_length=1, max_length=256, strip_whitespace=True), Storable
]
Ident = Annotated[
    str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True), Storable
]
SubmissionId = Annotated[
    str, StringConstraints(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
]
Narrative = Annotated[
    str, StringConstraints(min_length=1, max_length=8_000, strip_whitespace=True), Storable
]
Probability = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PatientIn(_In):
    """Section A. The patient id is pseudonymized before anything is stored or sent."""

    patient_id: Ident | None = None
    age: Annotated[int, Field(ge=0, le=130)] | None = None
    sex: Sex = Sex.UNKNOWN


class EventIn(_In):
    """Section B."""

    event_type: Literal["adverse_event", "product_problem", "both"] = "adverse_event"
    outcome: Outcome
    event_date: date
    narrative: Narrative


class DeviceIn(_In):
    """Section D. Manufacturer and clearance number default to the registry's."""

    tool_id: Ident
    manufacturer: Text | None = None
    software_version: Ident
    clearance_number: Text | None = None


class ReporterIn(_In):
    """Section E."""

    name: Text
    role: Text
    contact: Text


class AdverseEventSubmission(_In):
    """An adverse-event report about an AI tool (FDA 3500A sections A, B, D, E + AI fields)."""

    submission_id: SubmissionId | None = Field(
        default=None,
        description="idempotency key (8-64 of A-Z a-z 0-9 _ -); resubmitting it returns "
        "the same reference and records nothing new. Generated when absent.",
    )
    aware_date: date = Field(description="date the facility became aware of the event")
    patient: PatientIn = PatientIn()
    event: EventIn
    device: DeviceIn
    reporter: ReporterIn
    accession_number: Ident | None = None
    ai_output: Probability | None = None
    ai_threshold: Probability | None = None
    radiologist_read: Label | None = None
    discordance_type: DiscordanceType


#: Form field name -> location in `AdverseEventSubmission`.
FORM_FIELDS: dict[str, tuple[str, ...]] = {
    "submission_id": ("submission_id",),
    "patient_id": ("patient", "patient_id"),
    "patient_age": ("patient", "age"),
    "patient_sex": ("patient", "sex"),
    "event_type": ("event", "event_type"),
    "outcome": ("event", "outcome"),
    "event_date": ("event", "event_date"),
    "narrative": ("event", "narrative"),
    "tool_id": ("device", "tool_id"),
    "manufacturer": ("device", "manufacturer"),
    "software_version": ("device", "software_version"),
    "clearance_number": ("device", "clearance_number"),
    "reporter_name": ("reporter", "name"),
    "reporter_role": ("reporter", "role"),
    "reporter_contact": ("reporter", "contact"),
    "accession_number": ("accession_number",),
    "ai_output": ("ai_output",),
    "ai_threshold": ("ai_threshold",),
    "radiologist_read": ("radiologist_read",),
    "discordance_type": ("discordance_type",),
    "aware_date": ("aware_date",),
}
_FIELD_BY_LOC = {loc: name for name, loc in FORM_FIELDS.items()}


def form_to_nested(form: Mapping[str, str]) -> dict[str, Any]:
    """Flat form values -> the nested submission shape; blank fields are left out."""
    nested: dict[str, Any] = {}
    for name, loc in FORM_FIELDS.items():
        value = form.get(name, "").strip()
        if not value:
            continue
        target = nested
        for part in loc[:-1]:
            target = target.setdefault(part, {})
        target[loc[-1]] = value
    return nested


def _message(err: Mapping[str, Any]) -> str:
    kind = str(err.get("type", ""))
    if kind == "missing":
        return "This field is required."
    if kind.startswith("date"):
        return "Enter a date as YYYY-MM-DD."
    if kind.startswith("int"):
        return "Enter a whole number."
    if kind.startswith("float"):
        return "Enter a number."
    if kind == "enum" or kind == "literal_error":
        return "Choose one of the listed options."
    if kind == "string_pattern_mismatch":
        return "Use 8 to 64 letters, digits, '_' or '-'."
    return str(err.get("msg", "Invalid value.")).removeprefix("Value error, ")


def field_errors(exc: ValidationError) -> dict[str, str]:
    """Pydantic errors keyed by form field name (first error per field)."""
    errors: dict[str, str] = {}
    for err in exc.errors(include_url=False, include_input=False):
        loc = tuple(str(p) for p in err["loc"])
        name = _FIELD_BY_LOC.get(loc) or _FIELD_BY_LOC.get(loc[:2]) or "form"
        errors.setdefault(name, _message(err))
    return errors


def check_submission(
    sub: AdverseEventSubmission, registry: Mapping[str, ToolBaseline], today: date
) -> dict[str, str]:
    """Checks against the tool registry and the calendar; empty when the report is fine."""
    return check_fields(
        sub.device.tool_id,
        sub.device.clearance_number,
        sub.device.manufacturer,
        sub.event.event_date,
        sub.aware_date,
        registry,
        today,
    )


def check_form_fields(
    values: Mapping[str, str], registry: Mapping[str, ToolBaseline], today: date
) -> dict[str, str]:
    """The same checks on raw form values, so a form with other errors shows these too."""

    def day(name: str) -> date | None:
        try:
            return date.fromisoformat(values.get(name, "").strip())
        except ValueError:
            return None

    return check_fields(
        values.get("tool_id", "").strip() or None,
        values.get("clearance_number", "").strip() or None,
        values.get("manufacturer", "").strip() or None,
        day("event_date"),
        day("aware_date"),
        registry,
        today,
    )


def check_fields(
    tool_id: str | None,
    clearance_number: str | None,
    manufacturer: str | None,
    event_date: date | None,
    aware_date: date | None,
    registry: Mapping[str, ToolBaseline],
    today: date,
) -> dict[str, str]:
    """Field name -> message for each value the registry or the calendar rules out."""
    errors: dict[str, str] = {}
    entry = registry.get(tool_id) if tool_id is not None else None
    if tool_id is not None and entry is None:
        errors["tool_id"] = f"Unknown tool. Choose one of: {', '.join(sorted(registry))}."
    if entry is not None:
        if clearance_number is not None and (
            clearance_number.upper() != entry.clearance.submission.upper()
        ):
            errors["clearance_number"] = (
                f"This tool's clearance number is {entry.clearance.submission}; "
                "correct it or leave it blank."
            )
        if manufacturer is not None and manufacturer.casefold() != entry.manufacturer.casefold():
            errors["manufacturer"] = (
                f"This tool's manufacturer is {entry.manufacturer}; correct it or leave it blank."
            )
    if event_date is not None and event_date > today:
        errors["event_date"] = "The event date cannot be in the future."
    if aware_date is not None and aware_date > today:
        errors["aware_date"] = "The date of awareness cannot be in the future."
    elif aware_date is not None and event_date is not None and aware_date < event_date:
        errors["aware_date"] = "The facility cannot have become aware before the event date."
    return errors


def content_hash(key: bytes, sub: AdverseEventSubmission, identity: str) -> str:
    """Keyed hash of what was submitted (not the id), to tell a resubmission from a reuse."""
    body = sub.model_dump_json(exclude={"submission_id"})
    return hmac.new(key, f"{identity}\x00{body}".encode(), hashlib.sha256).hexdigest()


def reference_for(key: bytes, submission_id: str) -> str:
    """The reference number a person is given: stable for a submission id, not guessable."""
    digest = pseudonymize(key, "submission", submission_id)[2:18].upper()
    return f"AE-{digest[:8]}-{digest[8:]}"


def to_event(
    sub: AdverseEventSubmission,
    submission_id: str,
    received_at: datetime,
    key: bytes,
    registry: Mapping[str, ToolBaseline],
) -> AdverseEvent:
    """The `adverse.events` event: identifiers pseudonymized, device section completed."""
    entry = registry.get(sub.device.tool_id)
    patient_id = sub.patient.patient_id
    return AdverseEvent(
        event_id=submission_id,
        received_at=received_at,
        aware_date=sub.aware_date,
        patient=AEPatient(
            patient_id=pseudonymize(key, "patient", patient_id) if patient_id else None,
            age=sub.patient.age,
            sex=sub.patient.sex,
        ),
        event=AEEvent(**sub.event.model_dump()),
        device=AEDevice(
            tool_id=sub.device.tool_id,
            manufacturer=sub.device.manufacturer or (entry.manufacturer if entry else ""),
            software_version=sub.device.software_version,
            clearance_number=sub.device.clearance_number
            or (entry.clearance.submission if entry else None),
        ),
        reporter=AEReporter(**sub.reporter.model_dump()),
        accession_number=(
            pseudonymize(key, "accession", sub.accession_number) if sub.accession_number else None
        ),
        ai_output=sub.ai_output,
        ai_threshold=sub.ai_threshold,
        radiologist_read=sub.radiologist_read,
        discordance_type=sub.discordance_type,
        pseudonymized=True,
    )
