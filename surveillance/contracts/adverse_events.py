"""Topic `adverse.events`: an adverse-event report about an AI tool, in the sections of
FDA Form 3500A (A patient, B event, D device, E reporter) plus the AI's side of the case."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, StringConstraints

from surveillance.contracts.base import Contract, Id, Label, Probability, Sex, ShortText


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
