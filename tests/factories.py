"""Small builders of valid contract events for pure unit tests."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from surveillance.contracts import (
    AIResult,
    JoinInput,
    Label,
    ReportLabels,
    ReportStatus,
    Scanner,
    wire,
)
from surveillance.engine.records import Record
from surveillance.simulate import SimEvent
from surveillance.stream.ingest import join_partition

T0 = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)


def ai_result(
    event_id: str = "ai-1",
    accession: str = "ACC1",
    tool: str = "ich-triage",
    positive: bool = True,
    at: datetime = T0,
    finding: str = "intracranial_hemorrhage",
    version: str = "1.0",
    **extra: Any,
) -> AIResult:
    fields: dict[str, Any] = dict(
        event_id=event_id,
        tool_id=tool,
        manufacturer="RapidAI",
        model="Rapid NCCT Stroke",
        software_version=version,
        finding_code=finding,
        ai_result=0.9 if positive else 0.1,
        operating_threshold=0.5,
        result_indicator=positive,
        patient_id="MRN1",
        accession_number=accession,
        study_instance_uid="1.2.3",
        study_date=date(2026, 7, 1),
        site="site-a",
        modality="CT",
        body_part_examined="HEAD",
        scanner=Scanner(manufacturer="GE", model="Revolution", software_version="r1"),
        inference_date=at,
    )
    fields.update(extra)
    return AIResult(**fields)


def report_labels(
    event_id: str = "rep-1",
    accession: str = "ACC1",
    labels: dict[str, Label] | None = None,
    at: datetime = T0 + timedelta(hours=6),
    status: ReportStatus = ReportStatus.FINAL,
) -> ReportLabels:
    return ReportLabels(
        event_id=event_id,
        accession=accession,
        site="site-a",
        finalized_at=at,
        status=status,
        labels=labels if labels is not None else {"intracranial_hemorrhage": Label.PRESENT},
        label_source="structured",
    )


def ai_in(**kw: Any) -> wire.JoinInput:
    return wire.from_model(JoinInput(kind="ai", ai=ai_result(**kw)), wire.JoinInput)


def report_in(**kw: Any) -> wire.JoinInput:
    return wire.from_model(JoinInput(kind="report", report=report_labels(**kw)),
                           wire.JoinInput)


def input_records(events: Iterable[SimEvent], partitions: int) -> list[Record]:
    """Simulated input events as the engine reads them: each on its accession's
    partition, numbered per topic partition as a broker would."""
    offsets: Counter[tuple[str, int]] = Counter()
    out = []
    for e in events:
        partition = join_partition(e.key.decode(errors="replace"), partitions)
        out.append(Record(e.topic, partition, offsets[e.topic, partition], e.key, e.value))
        offsets[e.topic, partition] += 1
    return out
