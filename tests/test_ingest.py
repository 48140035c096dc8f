"""Ingest: validation, dead-letter reasons, pseudonymization, label extraction (pure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.partitioner.default import murmur2 as kafka_murmur2

from surveillance.contracts import Label, wire
from surveillance.privacy import pseudonymize
from surveillance.stream.ingest import KEPT_FOR, Ingest, Rejected, join_partition, murmur2
from tests.factories import T0, ai_result

KEY = b"test-key"
NOW = T0 + timedelta(days=1)
ingest = Ingest(KEY, ["intracranial_hemorrhage", "pneumothorax"], max_bytes=4096)


def ai_bytes(**kw: object) -> bytes:
    return ai_result(**kw).model_dump_json().encode()  # type: ignore[arg-type]


def report(**fields: object) -> bytes:
    base = {
        "event_id": "rep-1",
        "accession_number": "ACC1",
        "site": "site-a",
        "finalized_at": (T0 + timedelta(hours=5)).isoformat(),
        "report_text": "Acute subdural hematoma. No pneumothorax.",
    }
    base.update(fields)
    return json.dumps(base).encode()


def test_valid_ai_result_is_pseudonymized() -> None:
    out = ingest("ai.results", ai_bytes(), NOW)
    assert not isinstance(out, Rejected)
    assert out.ai is not None
    assert out.ai.accession_number == pseudonymize(KEY, "accession", "ACC1")
    assert out.ai.patient_id == pseudonymize(KEY, "patient", "MRN1")
    assert out.ai.study_instance_uid == pseudonymize(KEY, "study", "1.2.3")
    assert out.ai.pseudonymized
    assert b"MRN1" not in wire.encode(out) and b"ACC1" not in wire.encode(out)


def test_report_text_becomes_labels_and_is_dropped() -> None:
    out = ingest("reports.final", report(), NOW)
    assert not isinstance(out, Rejected) and out.report is not None
    assert out.report.labels == {
        "intracranial_hemorrhage": Label.PRESENT,
        "pneumothorax": Label.ABSENT,
    }
    assert out.report.label_source == "text"
    assert b"hematoma" not in wire.encode(out)
    assert out.report.accession == pseudonymize(KEY, "accession", "ACC1")


def test_structured_findings_win_over_text() -> None:
    # The text says "No pneumothorax"; the coded result says present and wins. The text
    # still gives the finding the code does not (the hematoma).
    raw = report(findings=[{"finding_code": "pneumothorax", "label": "present"}])
    out = ingest("reports.final", raw, NOW)
    assert not isinstance(out, Rejected) and out.report is not None
    assert out.report.labels == {
        "pneumothorax": Label.PRESENT,
        "intracranial_hemorrhage": Label.PRESENT,
    }
    assert out.report.label_source == "structured"


def test_structured_findings_alone_need_no_text() -> None:
    raw = report(report_text=None, findings=[{"finding_code": "pneumothorax", "label": "absent"}])
    out = ingest("reports.final", raw, NOW)
    assert not isinstance(out, Rejected) and out.report is not None
    assert out.report.labels == {"pneumothorax": Label.ABSENT}
    assert out.report.label_source == "structured"


@pytest.mark.parametrize(
    ("topic", "raw", "reason", "fragment"),
    [
        ("ai.results", b"{not json", "invalid_json", "line 1"),
        ("ai.results", b"\xff\xfe", "encoding", "UTF-8"),
        ("ai.results", b"[1, 2]", "schema", "JSON object"),
        ("ai.results", b"x" * 5000, "oversize", "5000 bytes"),
        ("ai.results", None, "schema", "empty"),
        ("reports.final", report(report_text=None), "schema", "findings or report_text"),
        ("reports.final", report(finalized_at="2026-07-01T08:00:00"), "schema", "finalized_at"),
        ("reports.final", report(status="draft"), "schema", "status"),
    ],
)
def test_bad_input_is_rejected_with_a_reason(
    topic: str, raw: bytes | None, reason: str, fragment: str
) -> None:
    out = ingest(topic, raw, NOW)
    assert isinstance(out, Rejected)
    assert out.reason == reason
    assert fragment in out.message


def test_schema_errors_name_the_field_and_never_quote_the_value() -> None:
    data = json.loads(ai_bytes())
    data["ai_result"] = 1.7
    data["patient_id"] = ""
    out = ingest("ai.results", json.dumps(data).encode(), NOW)
    assert isinstance(out, Rejected) and out.reason == "schema"
    assert "ai_result" in out.message and "patient_id" in out.message
    assert "1.7" not in out.message


def test_wrong_type_and_unknown_field_are_schema_errors() -> None:
    data = json.loads(ai_bytes())
    data["result_indicator"] = "maybe"
    data["free_text"] = "patient John Doe"
    out = ingest("ai.results", json.dumps(data).encode(), NOW)
    assert isinstance(out, Rejected)
    assert "result_indicator" in out.message and "free_text" in out.message
    assert "John" not in out.message


def test_future_timestamps_are_rejected() -> None:
    future = ai_bytes(at=datetime.now(UTC) + timedelta(days=2))
    out = ingest("ai.results", future, datetime.now(UTC))
    assert isinstance(out, Rejected) and "future" in out.message


def test_events_claiming_to_be_pseudonymized_are_rejected_at_ingest() -> None:
    out = ingest("ai.results", ai_bytes(pseudonymized=True), NOW)
    assert isinstance(out, Rejected)


# Kafka's own test vectors for its murmur2 partitioner hash (signed 32-bit results), from
# the Java client's UtilsTest.testMurmur2: the partition a producer picks for a key.
KAFKA_MURMUR2 = {
    "21": -973932308,
    "foobar": -790332482,
    "a-little-bit-long-string": -985981536,
    "a-little-bit-longer-string": -1486304829,
    "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    "abc": 479470107,
}


@pytest.mark.parametrize(("key", "signed"), sorted(KAFKA_MURMUR2.items()))
@pytest.mark.parametrize("partitions", [1, 4, 7, 12])
def test_join_partition_is_the_kafka_default_partitioner(
    key: str, signed: int, partitions: int
) -> None:
    # Java: Utils.toPositive(murmur2(key)) % numPartitions, toPositive = x & 0x7fffffff.
    assert join_partition(key, partitions) == (signed & 0x7FFFFFFF) % partitions


def test_an_ai_result_and_its_report_get_the_partition_of_their_raw_accession() -> None:
    ai = ingest.accept("ai.results", ai_bytes(), NOW, partitions=8)
    rep = ingest.accept("reports.final", report(), NOW, partitions=8)
    assert not isinstance(ai, Rejected) and not isinstance(rep, Rejected)
    assert ai[1] == rep[1] == join_partition("ACC1", 8)
    other = ingest.accept("ai.results", ai_bytes(accession="ACC2"), NOW, partitions=8)
    assert not isinstance(other, Rejected) and other[1] == join_partition("ACC2", 8)
    assert {join_partition(f"ACC{i}", 8) for i in range(200)} == set(range(8))


# Raw identifiers that are also another namespace's ("MRN1" the patient's, "1.2.3" the study's).
IDENTIFIERS = ["ACC1", "ACC2", "é-7", "A" * 40, "MRN1", "1.2.3"]


@settings(max_examples=60, deadline=None)
@given(calls=st.lists(st.tuples(st.sampled_from(IDENTIFIERS),
                                st.sampled_from([1, 3, 8]), st.booleans()),
                      min_size=1, max_size=40),
       kept=st.integers(1, 3))
def test_kept_partitions_and_pseudonyms_are_the_functions_own(
        calls: list[tuple[str, int, bool]], kept: int) -> None:
    """The partitions and pseudonyms an `Ingest` keeps per identifier (a few at a time
    here, so the stores are emptied too) are those of the partitioner and of
    `pseudonymize`, whatever the order of accessions, topics and partition counts."""
    fresh = Ingest(KEY, ["pneumothorax"], max_bytes=4096)
    with mock.patch("surveillance.stream.ingest._PARTITIONS_KEPT", kept), \
            mock.patch("surveillance.stream.ingest._PSEUDONYMS_KEPT", kept):
        for accession, partitions, is_ai in calls:
            raw = ai_bytes(accession=accession) if is_ai else report(accession_number=accession)
            accepted = fresh.accept("ai.results" if is_ai else "reports.final", raw, NOW,
                                    partitions=partitions)
            assert not isinstance(accepted, Rejected)
            assert accepted[1] == join_partition(accession, partitions)
            assert accepted[0].accession == pseudonymize(KEY, "accession", accession)
            if accepted[0].ai is not None:
                assert accepted[0].ai.patient_id == pseudonymize(KEY, "patient", "MRN1")
                assert accepted[0].ai.study_instance_uid == pseudonymize(KEY, "study", "1.2.3")


@settings(max_examples=60, deadline=None)
@given(calls=st.lists(st.tuples(st.sampled_from(IDENTIFIERS), st.booleans(),
                                st.integers(-3600, 3 * 3600)),  # the clock's step, seconds
                      min_size=1, max_size=40))
def test_forgetting_the_kept_identifiers_changes_no_output(
        calls: list[tuple[str, bool, int]]) -> None:
    """The stores are emptied every `KEPT_FOR` of the processing clock, and whenever it
    goes back: the partitions and pseudonyms stay those of the functions themselves."""
    fresh = Ingest(KEY, ["pneumothorax"], max_bytes=4096)
    now = NOW
    for accession, is_ai, step in calls:
        now += timedelta(seconds=step)
        raw = ai_bytes(accession=accession) if is_ai else report(accession_number=accession)
        accepted = fresh.accept("ai.results" if is_ai else "reports.final", raw, now,
                                partitions=8)
        assert not isinstance(accepted, Rejected)
        assert accepted[1] == join_partition(accession, 8)
        assert accepted[0].accession == pseudonymize(KEY, "accession", accession)
        if accepted[0].ai is not None:
            assert accepted[0].ai.patient_id == pseudonymize(KEY, "patient", "MRN1")


def _strings_held(root: object) -> set[str]:
    """Every string reachable from `root`'s attributes through their containers and
    attributes (dict keys too, which the garbage collector's referents leave out)."""
    seen: set[int] = set()
    found: set[str] = set()
    todo = list(vars(root).values())
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, str):
            found.add(obj)
        elif isinstance(obj, dict):
            todo.extend([*obj.keys(), *obj.values()])
        elif isinstance(obj, (list, tuple, set, frozenset)):
            todo.extend(obj)
        elif not callable(obj) and hasattr(obj, "__dict__"):
            todo.extend(vars(obj).values())
    return found


def test_raw_identifiers_are_kept_no_longer_than_kept_for() -> None:
    fresh = Ingest(KEY, ["pneumothorax"], max_bytes=4096)
    first = ai_bytes(accession="ACC-GONE", patient_id="MRN-GONE", study_instance_uid="9.9.1")
    assert not isinstance(fresh.accept("ai.results", first, NOW, partitions=8), Rejected)
    gone = {"ACC-GONE", "MRN-GONE", "9.9.1"}
    assert gone <= _strings_held(fresh)  # kept a while: else the check below proves nothing
    later = NOW + KEPT_FOR - timedelta(seconds=1)
    assert not isinstance(fresh.accept("ai.results", ai_bytes(accession="ACC-NEXT"), later,
                                       partitions=8), Rejected)
    assert gone <= _strings_held(fresh)
    assert not isinstance(fresh.accept("reports.final", report(accession_number="ACC-LAST"),
                                       NOW + KEPT_FOR, partitions=8), Rejected)
    held = _strings_held(fresh)
    assert not gone & held and "ACC-NEXT" not in held
    assert "ACC-LAST" in held


def test_accept_rejects_exactly_what_call_rejects() -> None:
    data = json.loads(ai_bytes())
    data["score"] = 1.5
    bad = json.dumps(data).encode()
    rejected = ingest.accept("ai.results", bad, NOW, partitions=4)
    assert isinstance(rejected, Rejected) and rejected.message.startswith("score:")
    assert rejected == ingest("ai.results", bad, NOW)
    with pytest.raises(ValueError, match="partitions must be >= 1"):
        join_partition("ACC1", 0)


@settings(max_examples=2000, deadline=None, database=None)
@given(st.binary(max_size=300))
def test_murmur2_is_kafka_pythons_on_any_bytes(data: bytes) -> None:
    assert murmur2(data) == kafka_murmur2(data)
