"""Ingest: turn one raw input message into a join input, or say why it cannot be accepted.

Pure: no Kafka here. Checks size, encoding, JSON and the contract; rejects timestamps far
in the future (they would push the join's event-time watermark and expire real cases);
replaces patient, accession and study identifiers by keyed HMACs; extracts report labels
and drops the report text. The rejection reason never quotes the input (it may hold
identifiers or report text): pydantic errors are rendered without their input values.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from kafka.partitioner.default import murmur2
from pydantic import ValidationError

from surveillance.clinical.labels import extract_labels
from surveillance.contracts import (
    AIResult,
    JoinInput,
    Label,
    ReportFinal,
    ReportLabels,
)
from surveillance.privacy import pseudonymize
from surveillance.stream.topics import AI_RESULTS, REPORTS_FINAL

Reason = Literal["oversize", "encoding", "invalid_json", "schema", "internal"]

#: How far ahead of the worker's clock an event time may be (clock skew between systems).
MAX_CLOCK_SKEW = timedelta(hours=1)


@dataclass(frozen=True)
class Rejected:
    reason: Reason
    message: str


def join_partition(accession_number: str, partitions: int) -> int:
    """The partition a Kafka producer puts a message keyed by this accession number on.

    Kafka's default partitioner (Java client, kafka-python, aiokafka): murmur2 of the key
    bytes, made non-negative, modulo the partition count. Source systems key their
    messages by accession, so an AI result and its report arrive on this partition of
    their topics, and the worker that holds it can join them without another hop.
    """
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    digest: int = murmur2(accession_number.encode("utf-8"))
    return (digest & 0x7FFFFFFF) % partitions


def describe(exc: ValidationError) -> str:
    """Field paths and messages only: never the offending values."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False)[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "(event)"
        parts.append(f"{where}: {err['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


class Ingest:
    """Configured once per worker: the key, the finding codes to extract, the limits."""

    def __init__(self, key: bytes, finding_codes: Iterable[str], max_bytes: int) -> None:
        self._key = key
        self._codes = tuple(sorted(set(finding_codes)))
        self._max_bytes = max_bytes

    def __call__(self, topic: str, raw: bytes | None, now: datetime) -> JoinInput | Rejected:
        accepted = self.accept(topic, raw, now, partitions=1)
        return accepted if isinstance(accepted, Rejected) else accepted[0]

    def accept(
        self, topic: str, raw: bytes | None, now: datetime, partitions: int
    ) -> tuple[JoinInput, int] | Rejected:
        """The join input and the join partition of its (raw) accession number."""
        if raw is None:
            return Rejected("schema", "empty message (no value)")
        if len(raw) > self._max_bytes:
            return Rejected("oversize", f"{len(raw)} bytes exceeds the {self._max_bytes} limit")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Rejected("encoding", f"not UTF-8 at byte {exc.start}")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            return Rejected("invalid_json", f"invalid JSON at line {exc.lineno} col {exc.colno}")
        if not isinstance(data, dict):
            return Rejected("schema", "the event must be a JSON object")
        try:
            if topic == AI_RESULTS:
                ai = AIResult.model_validate(data)
                return _routed(self._ai(ai, now), ai.accession_number, partitions)
            if topic == REPORTS_FINAL:
                report = ReportFinal.model_validate(data)
                routed = self._report(report, now)
                return _routed(routed, report.accession_number, partitions)
        except ValidationError as exc:
            return Rejected("schema", describe(exc))
        return Rejected("schema", f"no contract for topic {topic}")

    def _pseudo(self, namespace: Literal["patient", "accession", "study"], value: str) -> str:
        return pseudonymize(self._key, namespace, value)

    def _ai(self, ai: AIResult, now: datetime) -> JoinInput | Rejected:
        if ai.inference_date > now + MAX_CLOCK_SKEW:
            return Rejected("schema", "inference_date: is in the future")
        if ai.pseudonymized:
            return Rejected("schema", "pseudonymized: input events carry source identifiers")
        safe = ai.model_copy(
            update={
                "patient_id": self._pseudo("patient", ai.patient_id),
                "accession_number": self._pseudo("accession", ai.accession_number),
                "study_instance_uid": self._pseudo("study", ai.study_instance_uid),
                "pseudonymized": True,
            }
        )
        return JoinInput(kind="ai", ai=safe)

    def _report(self, report: ReportFinal, now: datetime) -> JoinInput | Rejected:
        if report.finalized_at > now + MAX_CLOCK_SKEW:
            return Rejected("schema", "finalized_at: is in the future")
        labels: dict[str, Label]
        if report.findings is not None:
            labels = {f.finding_code: f.label for f in report.findings}
            source: Literal["structured", "text"] = "structured"
        else:
            assert report.report_text is not None
            labels = extract_labels(report.report_text, self._codes)
            source = "text"
        return JoinInput(
            kind="report",
            report=ReportLabels(
                event_id=report.event_id,
                accession=self._pseudo("accession", report.accession_number),
                site=report.site,
                finalized_at=report.finalized_at,
                status=report.status,
                labels=labels,
                label_source=source,
                exam=report.exam,
            ),
        )


def _routed(
    item: JoinInput | Rejected, accession_number: str, partitions: int
) -> tuple[JoinInput, int] | Rejected:
    if isinstance(item, Rejected):
        return item
    return item, join_partition(accession_number, partitions)
