"""What the service emits: `surveillance.alerts`, `surveillance.snapshots`, and the dead
letters of input it could not accept (`<topic>.dlq`)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Field, StringConstraints

from surveillance.contracts.base import Contract, Id, ShortText


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


class SnapshotBatch(Contract):
    """Every snapshot of one tool's daily evaluation, as one record (topic
    `surveillance.snapshots`, beside the single `MetricSnapshot`s of the shadow process):
    one record per tool and day instead of one per figure."""

    tool_id: Id
    at: AwareDatetime
    snapshots: list[MetricSnapshot]


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
