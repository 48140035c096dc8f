"""Errors of the adverse-event intake, each a one-line message for the person or operator."""

from __future__ import annotations

from surveillance.errors import SurveillanceError


class IntakeError(SurveillanceError):
    """Base of the intake's own errors."""


class PublishError(IntakeError):
    """The report could not be confirmed on the `adverse.events` topic (broker unavailable)."""


class SubmissionConflict(IntakeError):
    """A submission id already used for a report with different content."""

    def __init__(self, reference: str) -> None:
        super().__init__(
            f"this submission id was already used for report {reference} with different "
            "content: start a new report (a new form or a new submission_id)"
        )
        self.reference = reference
