"""Ingest: turn one raw input message into a join input, or say why it cannot be accepted.

Pure: no Kafka here. Checks size, encoding, JSON and the contract; rejects dates outside
the plausible range (before `earliest`, a setting, or after the worker's clock plus skew:
downstream date arithmetic and the join's event-time watermark must be able to take every
date accepted here) and identifiers with control characters (PostgreSQL text cannot hold
NUL; logs and labels must not carry line breaks); replaces patient, accession and study
identifiers by keyed HMACs; extracts report labels and drops the report text. The
rejection reason never quotes the input (it may hold identifiers or report text):
pydantic errors are rendered without their input values. Whatever is accepted here is
taken by everything downstream: this is the only validation (metric labels are mapped to
bounded sets, never refused).
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from typing import Literal

import msgspec
from pydantic import ValidationError

from surveillance.clinical.labels import report_labels
from surveillance.contracts import AIResult as AIResultModel
from surveillance.contracts import ReportFinal as ReportFinalModel
from surveillance.contracts import wire
from surveillance.contracts.wire import AIResult, JoinInput, ReportFinal, ReportLabels
from surveillance.privacy import pseudonymize
from surveillance.stream.topics import AI_RESULTS, REPORTS_FINAL

Reason = Literal["oversize", "encoding", "invalid_json", "schema", "internal", "header",
                 "horizon"]

#: How far ahead of the worker's clock an event time may be (clock skew between systems).
MAX_CLOCK_SKEW = timedelta(hours=1)
#: The default of `stream.earliest_event_date`: no imaging AI result predates it.
EARLIEST_EVENT_DATE = date(1980, 1, 1)
#: Longest identifier a contract takes (`contracts.Id`).
MAX_ID_CHARS = 128
#: Longest tool id, AI version and site: alert, snapshot and case ids are built from them
#: (e.g. `baseline_deviation:<tool>:<version>:<site>:specificity:90d:<day>`, at most 128).
#: A longer tool id is refused; a longer version or site is `fitted` (kept distinct).
MAX_TOOL_CHARS, MAX_VERSION_CHARS, MAX_SITE_CHARS = 32, 24, 24
#: Accession numbers whose join partition an `Ingest` keeps, and identifiers per namespace
#: whose pseudonym it keeps (a few MiB at most; in memory only, like the event itself).
_PARTITIONS_KEPT = _PSEUDONYMS_KEPT = 1 << 16
#: How long, by the processing clock (`now`), those raw identifiers are kept at most: then
#: all are forgotten at once. A study's AI results (one per tool) and its report arrive
#: within minutes, which is what the stores are for; a quiet worker would otherwise keep
#: the last 65,536 patients' identifiers in its memory for days.
KEPT_FOR = timedelta(minutes=10)
_NEVER = datetime.max.replace(tzinfo=UTC)
#: C0/C1 controls and lone surrogates: no identifier has them, and storage cannot take NUL.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


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
    return (murmur2(accession_number.encode("utf-8")) & 0x7FFFFFFF) % partitions


_M, _MASK = 0x5BD1E995, 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (`kafka.partitioner.default.murmur2`, the Java client's
    `Utils.murmur2`), with the 4-byte blocks unpacked at once: that one masks each
    product byte by byte, 1.5x the time on every input event."""
    length = len(data)
    h = 0x9747B28C ^ length
    blocks = length // 4
    for k in struct.unpack_from(f"<{blocks}I", data):
        k = (k * _M) & _MASK
        k ^= k >> 24
        h = ((h * _M) & _MASK) ^ ((k * _M) & _MASK)
    tail = data[blocks * 4:]
    if tail:
        if len(tail) == 3:
            h ^= tail[2] << 16
        if len(tail) >= 2:
            h ^= tail[1] << 8
        h = ((h ^ tail[0]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


def describe(exc: ValidationError) -> str:
    """Field paths and messages only: never the offending values."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False)[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "(event)"
        parts.append(f"{where}: {err['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


@dataclass(frozen=True)
class DateRange:
    """The event dates the service accepts, as of the worker's clock `now`."""

    earliest: date = EARLIEST_EVENT_DATE

    @cached_property
    def earliest_time(self) -> datetime:
        return datetime.combine(self.earliest, time.min, tzinfo=UTC)

    def outside(self, name: str, value: date | datetime, now: datetime) -> Rejected | None:
        """Why `value` (field `name`) is not plausible, or None when it is."""
        latest = now + MAX_CLOCK_SKEW
        if isinstance(value, datetime):
            early = value < self.earliest_time
            late = value > latest
        else:
            early, late = value < self.earliest, value > latest.date()
        if early:
            return Rejected("schema", f"{name}: is before {self.earliest.isoformat()} "
                            "(stream.earliest_event_date)")
        if late:
            return Rejected("schema", f"{name}: is in the future")
        return None

    def first_outside(
        self, dates: Iterable[tuple[str, date | datetime | None]], now: datetime
    ) -> Rejected | None:
        latest = now + MAX_CLOCK_SKEW
        earliest_time, latest_day = self.earliest_time, latest.date()
        for name, value in dates:
            # The usual date is in range: the bounds once, `outside` words the others.
            if value is None or (earliest_time <= value <= latest if isinstance(
                    value, datetime) else self.earliest <= value <= latest_day):
                continue
            return self.outside(name, value, now)
        return None


def control_characters(fields: Iterable[tuple[str, str | None]]) -> Rejected | None:
    """The first identifier field holding a control character, as a rejection."""
    fields = list(fields)
    if not _CONTROL.search("".join(value for _, value in fields if value is not None)):
        return None  # one scan for the usual case; the field is named below
    for name, value in fields:
        if value is not None and _CONTROL.search(value):
            return Rejected("schema", f"{name}: contains a control character")
    return None


def fitted(value: str, limit: int) -> str:
    """`value`, or when longer than `limit` its start and a digest of the whole: still
    one value per distinct input, short enough for the ids built from it downstream."""
    if len(value) <= limit:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:8]
    return f"{value[:limit - 9]}~{digest}"


def too_long(fields: Iterable[tuple[str, str, int]]) -> Rejected | None:
    """The first (name, value, limit) whose value is longer than its limit."""
    for name, value, limit in fields:
        if len(value) > limit:
            return Rejected("schema", f"{name}: at most {limit} characters")
    return None


def case_id_too_long(accession: str, tool_id: str) -> Rejected | None:
    """The join names a case `<accession pseudonym>:<tool id>`, an `Id` of at most 128."""
    if len(accession) + 1 + len(tool_id) > MAX_ID_CHARS:
        room = MAX_ID_CHARS - 1 - len(accession)
        return Rejected("schema", f"tool_id: at most {room} characters (the case id joins it "
                        "to the accession pseudonym)")
    return None


def ai_dates(ai: AIResult) -> list[tuple[str, date | datetime | None]]:
    return [("study_date", ai.study_date), ("inference_date", ai.inference_date)]


def ai_identifiers(ai: AIResult) -> list[tuple[str, str | None]]:
    names = ("event_id", "tool_id", "manufacturer", "model", "software_version", "platform",
             "finding_code", "patient_id", "accession_number", "study_instance_uid", "site",
             "modality", "body_part_examined", "exam_name")
    fields: list[tuple[str, str | None]] = [(n, getattr(ai, n)) for n in names]
    fields += [(f"scanner.{n}", getattr(ai.scanner, n))
               for n in ("manufacturer", "model", "software_version")]
    return [*fields, ("acquisition.protocol_name", ai.acquisition.protocol_name)]


class Ingest:
    """Configured once per worker: the key, the finding codes to extract, the limits."""

    def __init__(
        self, key: bytes, finding_codes: Iterable[str], max_bytes: int,
        dates: DateRange = DateRange(),
    ) -> None:
        self._key = key
        self._codes = tuple(sorted(set(finding_codes)))
        self._max_bytes = max_bytes
        self.dates = dates
        #: Join partitions of recent accession numbers (`_partition`): an AI result and its
        #: report, read near each other, are placed by one murmur2.
        self._partitions: dict[str, tuple[int, int]] = {}
        #: Pseudonyms of recent identifiers (`_pseudo`): a study's AI results (one per
        #: tool) and its report name the same patient, accession and study.
        self._pseudonyms: dict[str, dict[str, str]] = {
            "patient": {}, "accession": {}, "study": {}}
        #: The stores hold what arrived from `_kept_since` on, until `_forget_at` (none yet:
        #: the first event starts the period).
        self._kept_since = self._forget_at = _NEVER

    def __call__(self, topic: str, raw: bytes | None, now: datetime) -> JoinInput | Rejected:
        accepted = self.accept(topic, raw, now, partitions=1)
        return accepted if isinstance(accepted, Rejected) else accepted[0]

    def accept(
        self, topic: str, raw: bytes | None, now: datetime, partitions: int,
        decoded: AIResult | ReportFinal | None = None,
    ) -> tuple[JoinInput, int] | Rejected:
        """The join input and the join partition of its (raw) accession number.
        `decoded`: `raw` as `wire.fast` gave it already (`Record.decoded`), or None."""
        if not self._kept_since <= now < self._forget_at:
            self._forget(now)  # also when the clock went back: forgetting changes no output
        if raw is None:
            return Rejected("schema", "empty message (no value)")
        if len(raw) > self._max_bytes:
            return Rejected("oversize", f"{len(raw)} bytes exceeds the {self._max_bytes} limit")
        kind = _CONTRACTS.get(topic)
        # msgspec takes the ordinary event (`contracts.wire`: then no identifier holds a
        # control character); pydantic decides the rest and words the rejection.
        event = (decoded if decoded is not None and type(decoded) is kind
                 else wire.fast(raw, kind) if kind is not None else None)
        screened = event is not None
        if event is None:
            parsed = self._parse(topic, raw)
            if isinstance(parsed, Rejected):
                return parsed
            event = parsed
        item = (self._ai(event, now, screened) if isinstance(event, AIResult)
                else self._report(event, now, screened))
        if isinstance(item, Rejected):
            return item
        return item, self._partition(event.accession_number, partitions)

    def _forget(self, now: datetime) -> None:
        """Drop every raw identifier kept (`KEPT_FOR`)."""
        self._partitions.clear()
        for kept in self._pseudonyms.values():
            kept.clear()
        self._kept_since, self._forget_at = now, now + KEPT_FOR

    def _partition(self, accession_number: str, partitions: int) -> int:
        """`join_partition`, kept for the last `_PARTITIONS_KEPT` accession numbers."""
        kept = self._partitions.get(accession_number)
        if kept is not None and kept[0] == partitions:
            return kept[1]
        if len(self._partitions) >= _PARTITIONS_KEPT:
            self._partitions.clear()
        partition = join_partition(accession_number, partitions)
        self._partitions[accession_number] = (partitions, partition)
        return partition

    def _parse(self, topic: str, raw: bytes) -> AIResult | ReportFinal | Rejected:
        """The event through json and its pydantic model (the reference rules)."""
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
                return wire.from_model(AIResultModel.model_validate(data), AIResult)
            if topic == REPORTS_FINAL:
                return wire.from_model(ReportFinalModel.model_validate(data), ReportFinal)
        except ValidationError as exc:
            return Rejected("schema", describe(exc))
        return Rejected("schema", f"no contract for topic {topic}")

    def _pseudo(self, namespace: Literal["patient", "accession", "study"], value: str) -> str:
        kept = self._pseudonyms[namespace]
        pseudonym = kept.get(value)
        if pseudonym is None:
            if len(kept) >= _PSEUDONYMS_KEPT:
                kept.clear()
            pseudonym = kept[value] = pseudonymize(self._key, namespace, value)
        return pseudonym

    def _ai(self, ai: AIResult, now: datetime, screened: bool) -> JoinInput | Rejected:
        why = self.dates.first_outside(ai_dates(ai), now) or (
            None if screened else control_characters(ai_identifiers(ai)))
        if why is not None:
            return why
        if ai.pseudonymized:
            return Rejected("schema", "pseudonymized: input events carry source identifiers")
        why = too_long([("tool_id", ai.tool_id, MAX_TOOL_CHARS)])
        if why is not None:
            return why
        safe = msgspec.structs.replace(
            ai,
            software_version=fitted(ai.software_version, MAX_VERSION_CHARS),
            site=fitted(ai.site, MAX_SITE_CHARS),
            patient_id=self._pseudo("patient", ai.patient_id),
            accession_number=self._pseudo("accession", ai.accession_number),
            study_instance_uid=self._pseudo("study", ai.study_instance_uid),
            pseudonymized=True,
        )
        return JoinInput(kind="ai", ai=safe)

    def _report(self, report: ReportFinal, now: datetime, screened: bool
                ) -> JoinInput | Rejected:
        why = self.dates.outside("finalized_at", report.finalized_at, now) or (
            None if screened else control_characters(report_identifiers(report)))
        if why is not None:
            return why
        labels, source = report_labels(report.findings, report.report_text, self._codes)
        return JoinInput(
            kind="report",
            report=ReportLabels(
                event_id=report.event_id,
                accession=self._pseudo("accession", report.accession_number),
                site=fitted(report.site, MAX_SITE_CHARS),
                finalized_at=report.finalized_at,
                status=report.status,
                labels=labels,
                label_source=source,
                exam=report.exam,
            ),
        )


#: The contract of each input topic.
_CONTRACTS: dict[str, type[AIResult] | type[ReportFinal]] = {
    AI_RESULTS: AIResult, REPORTS_FINAL: ReportFinal}


def report_identifiers(report: ReportFinal) -> list[tuple[str, str | None]]:
    fields: list[tuple[str, str | None]] = [
        ("event_id", report.event_id), ("accession_number", report.accession_number),
        ("patient_id", report.patient_id), ("site", report.site)]
    return fields + [("findings.finding_code", f.finding_code) for f in report.findings or ()]
