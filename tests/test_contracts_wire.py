"""The msgspec structs (`contracts.wire`) against the pydantic contracts, on a generated
corpus: valid documents of each topic's model, and the same documents mutated (wrong
types, missing and extra fields, out-of-range values, odd strings, year-1 and
timezone-less dates, duplicate keys, broken bytes).

For every document:
- the shortcut (`wire.fast`, msgspec alone plus the string screen) takes it only when
  pydantic accepts it, with equal values (and the same JSON when written back: the same
  text, but that msgspec writes 1e16 where pydantic writes 1e+16);
- the decoder (`wire.decode`) accepts exactly what pydantic accepts, with equal values;
- ingest's verdict (accepted with its join input, or the rejection reason and message)
  is the one the pydantic-only path gives.
And the shortcut does take the ordinary documents (else the speed-up is not there).
"""

from __future__ import annotations

import copy
import json
import math
import string
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from unittest import mock

import msgspec
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from surveillance import contracts
from surveillance.clinical.ledger import record_of
from surveillance.contracts import wire
from surveillance.stream import internal
from surveillance.stream.ingest import DateRange, Ingest, Rejected
from surveillance.stream.topics import AI_RESULTS, REPORTS_FINAL
from surveillance.stream.watermark import source_headers

NOW = datetime(2026, 9, 1, tzinfo=UTC)
SETTINGS = settings(max_examples=300, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

# --- valid documents, as a source system or our own join writes them -------------------

plain = st.text(string.ascii_letters + string.digits + ".-_:/ ", min_size=1, max_size=40
                ).filter(lambda s: s.strip() == s)
unicode_text = st.text(st.characters(exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")),
                       min_size=1, max_size=60)
ident = st.one_of(plain, unicode_text.filter(lambda s: s.strip() == s))
short = st.one_of(st.just(""), ident)
probability = st.floats(0.0, 1.0)
offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
aware = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                     timezones=st.one_of(st.just(UTC), offsets))
days = st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31))
#: Cut to the field's 16 characters after `plain`'s filter, a value could end in a space
#: ("000000000000000 "): not an ordinary document, so filtered again.
modality = plain.map(lambda s: s[:16]).filter(lambda s: s.strip() == s)


def iso(value: datetime) -> str:
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


scanner = st.fixed_dictionaries({"manufacturer": short, "model": short,
                                 "software_version": short})
acquisition = st.fixed_dictionaries({}, optional={
    "kvp": optional(st.floats(0.5, 200)), "slice_thickness": optional(st.floats(0.1, 50)),
    "pixel_spacing": optional(st.floats(0.01, 10)), "protocol_name": optional(short)})
measurement = st.fixed_dictionaries({"value": st.floats(-1e6, 1e6),
                                     "unit": st.sampled_from(["mL", "mm", "%"])})
sex = st.sampled_from(["F", "M", "O", "U"])
label = st.sampled_from(["present", "absent", "indeterminate"])
status = st.sampled_from(["final", "corrected", "addendum", "cancelled"])
exam = st.fixed_dictionaries({"modality": modality}, optional={
    "body_part_examined": optional(short), "exam_code": optional(short)})


def ai_result(pseudonymized: st.SearchStrategy[bool]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"event_id": ident, "tool_id": ident, "manufacturer": short, "model": short,
         "software_version": ident, "finding_code": ident, "ai_result": probability,
         "operating_threshold": probability, "result_indicator": st.booleans(),
         "patient_id": ident, "accession_number": ident, "study_instance_uid": ident,
         "study_date": days.map(date.isoformat), "site": ident,
         "modality": modality, "body_part_examined": short,
         "scanner": scanner, "inference_date": aware.map(iso)},
        optional={"platform": optional(short), "exam_name": optional(short),
                  "contrast_indication": optional(st.booleans()), "acquisition": acquisition,
                  "age": optional(st.integers(0, 130)), "sex": sex,
                  "pseudonymized": pseudonymized, "measurement": optional(measurement),
                  "acquired_at": optional(aware.map(iso))})


report_final = st.fixed_dictionaries(
    {"event_id": ident, "accession_number": ident, "site": ident,
     "finalized_at": aware.map(iso),
     "findings": optional(st.lists(st.fixed_dictionaries(
         {"finding_code": ident, "label": label}), max_size=3)),
     "report_text": st.text(min_size=1, max_size=200).filter(lambda s: s.strip() == s != "")},
    optional={"patient_id": optional(ident), "status": status,
              "reference_measurements": optional(st.lists(
                  measurement.map(lambda m: {**m, "finding_code": "f"}), max_size=3)),
              "exam": optional(exam)})
report_labels = st.fixed_dictionaries(
    {"event_id": ident, "accession": ident, "site": ident, "finalized_at": aware.map(iso),
     "status": status, "labels": st.dictionaries(ident, label, max_size=3),
     "label_source": st.sampled_from(["structured", "text"])},
    optional={"exam": optional(exam)})
join_input = st.one_of(
    ai_result(st.just(True)).map(lambda ai: {"kind": "ai", "ai": ai}),
    report_labels.map(lambda r: {"kind": "report", "report": r}))
adjudicated_case = st.fixed_dictionaries(
    {"case_id": ident, "revision": st.integers(0, 2**40), "label": optional(label),
     "outcome": st.sampled_from(["TP", "FP", "TN", "FN", "indeterminate", "pending",
                                 "unlabelled"]),
     "tool_id": ident, "software_version": ident, "finding_code": ident, "site": ident,
     "ai_result": probability, "operating_threshold": probability,
     "result_indicator": st.booleans(), "accession": ident,
     "study_date": days.map(date.isoformat), "inference_date": aware.map(iso),
     "modality": short, "scanner_manufacturer": short, "scanner_model": short,
     "scanner_software_version": short, "ai_event_id": ident},
    optional={"label_status": optional(status), "labelled_at": optional(aware.map(iso)),
              "protocol_name": optional(short), "kvp": optional(st.floats(-1e9, 1e9)),
              "slice_thickness": optional(st.floats(0, 50)),
              "pixel_spacing": optional(st.floats(0, 10)),
              "contrast_indication": optional(st.booleans()),
              "age": optional(st.integers(-5, 200)), "sex": sex,
              "report_event_id": optional(ident)})

# --- mutations ------------------------------------------------------------------------

ODD_STRINGS = [
    "", " ", " x", "x ", "\u00a0x", "x\u3000", "\u2028x", "x\x1c", "\tx", "x\n", "a\x00b",
    "a\x85b", "\x7f", "\ufeffx", "x\ufffe", "\U0001f600" * 3, "a" * 128, "a" * 129,
    " " + "a" * 128, "a" * 256, "a" * 257, "a" * 16, "a" * 17, "\ud800", "x\udfff",
    "ACC\r\n1",
]
ODD_DATES = [
    "0001-01-01", "9999-12-31", "0000-01-01", "2026-02-29", "2024-02-29", "2026-7-1",
    "2026-07-01T00:00:00", "2026-07-01T00:00:00Z", "2026-07-01T12:00:00+01:00", "20260701",
    "2026-W27-1", "2026-182", "", " 2026-07-01", 20260701, 1782864000, 1782864000.5,
]
ODD_DATETIMES = [
    "0001-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59-01:00", "2026-07-01T00:00:00", "2026-07-01T00:00:00.123",
    "2026-07-01", "2026-07-01 00:00:00Z", "2026-07-01t00:00:00z", "2026-07-01T00:00Z",
    "2026-07-01T00:00:00.1234567Z", "2026-07-01T00:00:00.123456789+05:30",
    "2026-07-01T23:59:60Z", "2026-07-01T24:00:00Z", "2026-07-01T00:00:00+24:00",
    "2026-07-01T00:00:00+23:59", "2026-07-01T00:00:00-00:00", "2026-07-01T00:00:00+0100",
    "2026-07-01T00:00:00+01", "2026-07-01T00:00:00,5Z", "20260701T000000Z",
    "2026-07-01T00:00:00.Z", "2026-07-01T00:00:00.999999999Z", "2026-07-01T00:00:00+01:00:30",
    "2026-07-01T00:00:00 +01:00", " 2026-07-01T00:00:00Z", 1782864000, 1782864000.25,
    -1, 0, 10**12, "1782864000",
]
ODD_NUMBERS: list[Any] = [
    -0.0, 1e-320, 1.0000000000000002, 1, 0, -1, 2, 1e400, -1e400, 130, 131, 2**63, 2**64,
    -(2**63) - 1, 10**30, 0.5, "0.5", "1", True, False, 1.5, 200, 200.0000001, 1e6, 1e6 + 1,
    1.0, 0.0, 130.0, 1e-7, 123456789.123456789,
]
WRONG_TYPES: list[Any] = [None, [], {}, [1], {"a": 1}, "x", 1, 1.5, True]


def paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value in a JSON document."""
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            out += paths(value, (*prefix, i))
    return out


def parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path[:-1]:
        doc = doc[step]
    return doc


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[dict[str, Any]]) -> bytes:
    doc = draw(valid)
    for _ in range(draw(st.integers(1, 2))):
        where = paths(doc)
        if not where:
            break
        path = draw(st.sampled_from(where))
        holder = parent(doc, path)
        key = path[-1]
        what = draw(st.sampled_from(["drop", "extra", "type", "string", "date", "datetime",
                                     "number", "case"]))
        if what == "drop":
            del holder[key]
        elif what == "extra":
            target = holder if isinstance(holder, dict) else doc
            target[draw(st.sampled_from(["unknown", "Event_id", "event_id ", "x"]))] = 1
        elif what == "type":  # a copy: a later mutation must not edit the shared value
            holder[key] = copy.deepcopy(draw(st.sampled_from(WRONG_TYPES)))
        elif what == "string":
            holder[key] = draw(st.one_of(st.sampled_from(ODD_STRINGS),
                                         st.text(max_size=20)))
        elif what == "date":
            holder[key] = draw(st.sampled_from(ODD_DATES))
        elif what == "datetime":
            holder[key] = draw(st.sampled_from(ODD_DATETIMES))
        elif what == "number":
            holder[key] = draw(st.sampled_from(ODD_NUMBERS))
        elif isinstance(holder[key], str):
            holder[key] = draw(st.sampled_from([str.upper, str.lower, str.title]))(holder[key])
    return encoded(draw, doc)


def encoded(draw: st.DrawFn, doc: Any) -> bytes:
    """The document as bytes, the way some producer could send it."""
    how = draw(st.sampled_from(["compact", "spaced", "ascii", "duplicate", "broken"]))
    if how == "compact":
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=True).encode("utf-8", "surrogatepass")
    if how == "spaced":
        return json.dumps(doc, indent=2, ensure_ascii=False).encode("utf-8", "surrogatepass")
    if how == "ascii":
        return json.dumps(doc).encode()
    text = json.dumps(doc, separators=(",", ":"))
    if how == "duplicate" and isinstance(doc, dict) and doc:
        first = next(iter(doc))
        return ("{" + json.dumps(first) + ":" + json.dumps("dup") + "," + text[1:]).encode()
    cut = draw(st.integers(0, max(0, len(text) - 1)))
    return draw(st.sampled_from([text[:cut].encode(), text.encode() + b"\xff",
                                 b"\xef\xbb\xbf" + text.encode(), b"[" + text.encode() + b"]"]))


def valid_bytes(valid: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[bytes]:
    return valid.map(lambda d: json.dumps(d, separators=(",", ":"),
                                          ensure_ascii=False).encode())


# --- the comparison -------------------------------------------------------------------


def normal(value: Any) -> Any:
    """A struct or model dump as plain values; datetimes with their offset (the instant
    alone compares equal across zones, the written text would not)."""
    if isinstance(value, wire.Struct):
        value = msgspec.structs.asdict(value)
    if isinstance(value, dict):
        return {k: normal(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [normal(v) for v in value]
    if isinstance(value, datetime):
        return (value, value.utcoffset())
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value


def pydantic_verdict(raw: bytes, model: type[BaseModel], from_dict: bool) -> BaseModel | None:
    """The reference: ingest parses input with json then the model, internal topics with
    the model's own JSON parser."""
    try:
        if not from_dict:
            return model.model_validate_json(raw)
        data = json.loads(raw.decode("utf-8"))
        return model.model_validate(data) if isinstance(data, dict) else None
    except (ValidationError, ValueError):
        return None


def check(raw: bytes, kind: type[wire.Struct], from_dict: bool) -> None:
    model = wire.MODELS[kind]
    reference = pydantic_verdict(raw, model, from_dict)
    taken = wire.fast(raw, kind)
    if taken is not None:
        assert reference is not None, raw
        assert normal(taken) == normal(reference.model_dump()), raw
        # The same JSON text but for the exponent sign of floats from 1e16 up (msgspec
        # writes 1e16, pydantic 1e+16): our contracts bound every float far below.
        written, expected = wire.encode(taken), reference.model_dump_json().encode()
        assert written == expected or json.loads(written) == json.loads(expected), raw
    if from_dict:
        return
    try:
        decoded = wire.decode(raw, kind)
    except ValidationError:
        assert reference is None, raw
        return
    assert reference is not None, raw
    assert normal(decoded) == normal(reference.model_dump()), raw


CASES = [
    (wire.AIResult, ai_result(st.booleans()), True),
    (wire.ReportFinal, report_final, True),
    (wire.JoinInput, join_input, False),
    (wire.AdjudicatedCase, adjudicated_case, False),
]


@pytest.mark.parametrize(("kind", "valid", "from_dict"), CASES,
                         ids=[c[0].__name__ for c in CASES])
def test_the_shortcut_takes_the_valid_documents_with_pydantics_values(
        kind: type[wire.Struct], valid: st.SearchStrategy[dict[str, Any]],
        from_dict: bool) -> None:
    @SETTINGS
    @given(valid_bytes(valid))
    def run(raw: bytes) -> None:
        check(raw, kind, from_dict)
        assert wire.fast(raw, kind) is not None, raw  # ordinary documents: no slow path

    run()


@pytest.mark.parametrize(("kind", "valid", "from_dict"), CASES,
                         ids=[c[0].__name__ for c in CASES])
def test_mutated_documents_get_pydantics_verdict(
        kind: type[wire.Struct], valid: st.SearchStrategy[dict[str, Any]],
        from_dict: bool) -> None:
    @settings(SETTINGS, max_examples=1500)
    @given(mutated(valid))
    def run(raw: bytes) -> None:
        check(raw, kind, from_dict)

    run()


# Ingest's whole verdict, with the pydantic-only path as the oracle: `_parse` is that
# path (json, the model, then the same checks); the shortcut must not change a verdict.
INGEST = Ingest(b"k", ["intracranial_hemorrhage", "pneumothorax"], 64 * 1024)


def ingest_reference(topic: str, raw: bytes) -> Any:
    parsed = INGEST._parse(topic, raw)
    if isinstance(parsed, Rejected):
        return parsed
    if isinstance(parsed, wire.AIResult):
        return INGEST._ai(parsed, NOW, screened=False)
    return INGEST._report(parsed, NOW, screened=False)


@SETTINGS
@given(st.one_of(
    st.tuples(st.just(AI_RESULTS), st.one_of(valid_bytes(ai_result(st.booleans())),
                                             mutated(ai_result(st.booleans())))),
    st.tuples(st.just(REPORTS_FINAL), st.one_of(valid_bytes(report_final),
                                                mutated(report_final)))))
def test_ingest_gives_the_verdict_of_the_pydantic_path(message: tuple[str, bytes]) -> None:
    topic, raw = message
    got = INGEST.accept(topic, raw, NOW, 1)
    expected = ingest_reference(topic, raw)
    if isinstance(expected, Rejected):
        assert got == expected
        return
    assert not isinstance(got, Rejected), (raw, got)
    assert normal(got[0]) == normal(expected)


# The case stage's read of `cases.adjudicated` (`internal.read_case`), with the
# pydantic-only path as the oracle: the same function with the shortcut turned off
# (the model, then every check, control characters included). Accepted cases must give
# the case record the pydantic model gave, to the byte of the changelog JSON.
FAR = datetime(9999, 12, 30, tzinfo=UTC)  # every generated date is in range
ALL_DATES = DateRange(earliest=date(1, 1, 1))
HEADERS = list(source_headers(1, datetime(2026, 7, 1, tzinfo=UTC)).items())


@SETTINGS
@given(st.one_of(valid_bytes(adjudicated_case), mutated(adjudicated_case)),
       st.sampled_from([HEADERS, []]))
def test_read_case_gives_the_verdict_and_record_of_the_pydantic_path(
        raw: bytes, headers: list[tuple[str, bytes]]) -> None:
    got = internal.read_case(raw, headers, 4, FAR, ALL_DATES)
    with mock.patch.object(wire, "fast", lambda raw, kind: None):
        expected = internal.read_case(raw, headers, 4, FAR, ALL_DATES)
    event("rejected" if isinstance(expected, Rejected) else "accepted")
    if isinstance(expected, Rejected):
        assert got == expected
        return
    assert not isinstance(got, Rejected), (raw, got)
    case, source, reached = got
    assert (source, reached) == tuple(expected[1:])
    assert normal(case) == normal(expected[0])
    model = wire.MODELS[wire.AdjudicatedCase].model_validate_json(raw)
    assert isinstance(model, contracts.AdjudicatedCase)
    record, before = record_of(case, 2, source), record_of(model, 2, source)
    assert record == before
    assert msgspec.json.encode(record.as_dict()) == msgspec.json.encode(before.as_dict())
    assert json.dumps(record.as_dict()) == json.dumps(before.as_dict())
