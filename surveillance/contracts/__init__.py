"""Event contracts: the only definition of every event on every topic, one module per
topic family (`ai_results`, `reports`, `adverse_events`, `cases`, `outputs`; shared types
in `base`). Import them from here: `from surveillance.contracts import AIResult`.

Input topics (`ai.results`, `reports.final`, `adverse.events`) carry the identifiers the
source systems use. Ingest validates each event, replaces identifiers by keyed HMACs and
drops report text; everything downstream of ingest (`cases.join`, `cases.adjudicated`,
`surveillance.alerts`, tables, logs, metrics) carries pseudonymized values only.
"""

from __future__ import annotations

from surveillance.contracts.adverse_events import (
    AdverseEvent,
    AEDevice,
    AEEvent,
    AEPatient,
    AEReporter,
    DiscordanceType,
    Outcome,
)
from surveillance.contracts.ai_results import (
    Acquisition,
    AIResult,
    Measurement,
    MeasurementUnit,
    Scanner,
)
from surveillance.contracts.base import (
    MAX_EVENT_BYTES,
    Contract,
    Id,
    Label,
    Probability,
    Sex,
    ShortText,
)
from surveillance.contracts.cases import AdjudicatedCase, CaseOutcome, JoinInput
from surveillance.contracts.outputs import (
    Alert,
    AlertSeverity,
    DeadLetter,
    MetricSnapshot,
    SnapshotBatch,
)
from surveillance.contracts.reports import (
    Exam,
    ReferenceMeasurement,
    ReportFinal,
    ReportLabels,
    ReportStatus,
    StructuredFinding,
)

__all__ = [
    "MAX_EVENT_BYTES",
    "TOPIC_MODELS",
    "AEDevice",
    "AEEvent",
    "AEPatient",
    "AEReporter",
    "AIResult",
    "Acquisition",
    "AdjudicatedCase",
    "AdverseEvent",
    "Alert",
    "AlertSeverity",
    "CaseOutcome",
    "Contract",
    "DeadLetter",
    "DiscordanceType",
    "Exam",
    "Id",
    "JoinInput",
    "Label",
    "Measurement",
    "MeasurementUnit",
    "MetricSnapshot",
    "Outcome",
    "Probability",
    "ReferenceMeasurement",
    "ReportFinal",
    "ReportLabels",
    "ReportStatus",
    "Scanner",
    "Sex",
    "ShortText",
    "SnapshotBatch",
    "StructuredFinding",
]

#: Topic name -> model of its value, for validation and JSON Schema export.
TOPIC_MODELS: dict[str, type[Contract]] = {
    "ai.results": AIResult,
    "reports.final": ReportFinal,
    "adverse.events": AdverseEvent,
    "cases.join": JoinInput,
    "cases.adjudicated": AdjudicatedCase,
    "surveillance.alerts": Alert,
    "surveillance.snapshots": SnapshotBatch,  # one record per tool-day
    "dlq": DeadLetter,
}
