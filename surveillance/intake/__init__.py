"""Adverse-event intake: HTML form and JSON API feeding the `adverse.events` topic."""

from surveillance.intake.app import create_app
from surveillance.intake.config import IntakeSettings
from surveillance.intake.errors import IntakeError, PublishError, SubmissionConflict
from surveillance.intake.listing import ReportRow, list_open_reports
from surveillance.intake.publisher import KafkaPublisher, Publisher
from surveillance.intake.server import serve
from surveillance.intake.store import ReportStore, store_path

__all__ = [
    "IntakeError",
    "IntakeSettings",
    "KafkaPublisher",
    "PublishError",
    "Publisher",
    "ReportRow",
    "ReportStore",
    "SubmissionConflict",
    "create_app",
    "list_open_reports",
    "serve",
    "store_path",
]
