"""From a Kafka message to the rows it becomes: pure, no I/O.

Each topic's value is validated against its contract. A message that is not valid, or
that would smuggle something the store must not hold (NUL bytes, which PostgreSQL text
cannot store; an adverse event whose identifiers were not pseudonymized), becomes a
`Reject` naming only its position and the reason, never its content.

An alert whose `details` carries `{"resolves": "<alert_id>"}` closes that alert; the ids
of both are collected in `Rows.alerts_touched` so the writer re-derives their resolution
(either alert may be stored first, as they can travel on different partitions).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from surveillance.contracts import (
    AdjudicatedCase,
    AdverseEvent,
    Alert,
    MetricSnapshot,
    SnapshotBatch,
)

CASE_COLUMNS = (
    "case_id", "revision", "outcome", "label", "label_status", "tool_id",
    "software_version", "finding_code", "site", "ai_result", "operating_threshold",
    "result_indicator", "accession", "study_date", "inference_date", "labelled_at",
    "modality", "scanner_manufacturer", "scanner_model", "scanner_software_version",
    "protocol_name", "age", "sex", "ai_event_id", "report_event_id",
    "kvp", "slice_thickness", "pixel_spacing", "contrast_indication",
)  # fmt: skip
AI_RESULT_COLUMNS = (
    "ai_event_id", "case_id", "tool_id", "software_version", "finding_code", "site",
    "ai_result", "operating_threshold", "result_indicator", "accession", "study_date",
    "inference_date", "modality", "scanner_manufacturer", "scanner_model",
    "scanner_software_version", "protocol_name", "age", "sex",
    "kvp", "slice_thickness", "pixel_spacing", "contrast_indication",
)  # fmt: skip
SNAPSHOT_COLUMNS = (
    "snapshot_id", "kind", "at", "tool_id", "software_version", "site", "window", "metric",
    "detector", "subgroup", "value", "lower", "upper", "n",
)  # fmt: skip
ALERT_COLUMNS = (
    "alert_id", "kind", "severity", "raised_at", "tool_id", "software_version", "site",
    "metric", "value", "interval_lower", "interval_upper", "baseline", "n", "window",
    "since", "subgroup", "summary", "details",
)  # fmt: skip
ADVERSE_EVENT_COLUMNS = (
    "event_id", "received_at", "aware_date", "patient_age", "patient_sex", "event_type",
    "outcome", "event_date", "tool_id", "manufacturer", "software_version",
    "clearance_number", "reporter_role", "accession", "ai_output", "ai_threshold",
    "radiologist_read", "discordance_type",
)  # fmt: skip

Row = tuple[Any, ...]


@dataclass(frozen=True)
class Reject:
    topic: str
    partition: int
    offset: int
    reason: str


@dataclass
class Rows:
    """Rows of one batch, per destination table."""

    cases: list[Row]
    ai_results: list[Row]
    #: Where each `ai_results` row came from (same index; `cases[i]` is the same message).
    ai_sources: list[tuple[str, int, int]]
    snapshots: list[Row]
    alerts: list[Row]
    alerts_touched: set[str]
    adverse_events: list[Row]
    rejects: list[Reject]

    @classmethod
    def empty(cls) -> Rows:
        return cls([], [], [], [], [], set(), [], [])

    def extend(self, other: Rows) -> None:
        self.cases += other.cases
        self.ai_results += other.ai_results
        self.ai_sources += other.ai_sources
        self.snapshots += other.snapshots
        self.alerts += other.alerts
        self.alerts_touched |= other.alerts_touched
        self.adverse_events += other.adverse_events
        self.rejects += other.rejects

    def __len__(self) -> int:
        return (
            len(self.cases) + len(self.snapshots) + len(self.alerts)
            + len(self.adverse_events) + len(self.rejects)
        )  # fmt: skip


def case_rows(case: AdjudicatedCase) -> tuple[Row, Row]:
    """The `cases` row and the `ai_results` row of one adjudicated case."""
    d = case.model_dump(mode="python")
    return tuple(d[c] for c in CASE_COLUMNS), tuple(d[c] for c in AI_RESULT_COLUMNS)


def snapshot_row(s: MetricSnapshot) -> Row:
    d = s.model_dump(mode="python")
    return tuple(d[c] for c in SNAPSHOT_COLUMNS)


def alert_row(a: Alert) -> Row:
    lower, upper = a.interval if a.interval is not None else (None, None)
    return (
        a.alert_id, a.kind, a.severity.value, a.raised_at, a.tool_id, a.software_version,
        a.site, a.metric, a.value, lower, upper, a.baseline, a.n, a.window, a.since,
        a.subgroup, a.summary, a.details,
    )  # fmt: skip


def adverse_event_row(e: AdverseEvent) -> Row:
    return (
        e.event_id, e.received_at, e.aware_date, e.patient.age, e.patient.sex.value,
        e.event.event_type, e.event.outcome.value, e.event.event_date, e.device.tool_id,
        e.device.manufacturer, e.device.software_version, e.device.clearance_number,
        e.reporter.role, e.accession_number, e.ai_output, e.ai_threshold,
        e.radiologist_read.value if e.radiologist_read is not None else None,
        e.discordance_type.value,
    )  # fmt: skip


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


class Decoder:
    """Turns messages of the writer's topics into rows; one instance per writer."""

    def __init__(self, cases: str, alerts: str, snapshots: str, adverse_events: str) -> None:
        self._kinds = {
            cases: "case",
            alerts: "alert",
            snapshots: "snapshot",
            adverse_events: "adverse_event",
        }

    @property
    def topics(self) -> list[str]:
        return list(self._kinds)

    def add(self, rows: Rows, topic: str, partition: int, offset: int, value: bytes | None) -> None:
        """Append the rows of one message to `rows`, or a `Reject` saying why not."""
        kind = self._kinds.get(topic)
        if kind is None:
            reason: str | None = f"topic {topic} is not consumed by the store writer"
        elif value is None:
            reason = "empty message value"
        else:
            reason = self._add_valid(rows, kind, value)
            if reason is None and kind == "case":
                rows.ai_sources.append((topic, partition, offset))
        if reason is not None:
            rows.rejects.append(Reject(topic, partition, offset, reason))

    def _add_valid(self, rows: Rows, kind: str, value: bytes) -> str | None:
        try:
            if kind == "case":
                case_row, ai_row = case_rows(AdjudicatedCase.model_validate_json(value))
                if _has_nul(case_row):
                    return _NUL
                rows.cases.append(case_row)
                rows.ai_results.append(ai_row)
            elif kind == "snapshot":
                snapshots = _snapshots(value)
                found = [snapshot_row(s) for s in snapshots]
                if any(_has_nul(row) for row in found):
                    return _NUL
                rows.snapshots += found
            elif kind == "alert":
                alert = Alert.model_validate_json(value)
                row = alert_row(alert)
                if _has_nul(row):
                    return _NUL
                rows.alerts.append(row)
                rows.alerts_touched.add(alert.alert_id)
                resolves = alert.details.get("resolves")
                if isinstance(resolves, str) and resolves:
                    rows.alerts_touched.add(resolves)
            else:
                event = AdverseEvent.model_validate_json(value)
                if not event.pseudonymized:
                    return "adverse event identifiers are not pseudonymized"
                row = adverse_event_row(event)
                if _has_nul(row):
                    return _NUL
                rows.adverse_events.append(row)
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(p) for p in first["loc"]) or "value"
            return f"invalid {kind}: {where}: {first['msg']}"[:500]
        return None


_NUL = "a text field contains a NUL character, which PostgreSQL cannot store"


def _snapshots(value: bytes) -> list[MetricSnapshot]:
    """A day's `SnapshotBatch` (the engine's) or one `MetricSnapshot` (the shadow's)."""
    try:
        raw = json.loads(value)
    except ValueError:
        raw = None  # not JSON: the contract's own error says so
    if isinstance(raw, dict) and "snapshots" in raw:
        return SnapshotBatch.model_validate(raw).snapshots
    if raw is None:
        return [MetricSnapshot.model_validate_json(value)]
    return [MetricSnapshot.model_validate(raw)]
