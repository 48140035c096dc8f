"""Models the hot path builds without pydantic's validation (`contracts.base.trusted`),
against the validated model (the old path, written out here as the oracle):

- the drift bank's view of a stored case (`stream.case_features.ai_result_of`), on
  generated cases: every case `internal.read_case` takes (valid ones, and mutated ones it
  still accepts) gives an AI result that pydantic accepts, with the same values of the
  same types, the same fields set and the same JSON, also after the record's round trip
  through the changelog's JSON (a rebuild reads those);
- a daily evaluation's agreement snapshot (`daily_evaluation.agreement_snapshot`), on
  generated identifiers, times and figures (ints where floats go, empty figures)."""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import event, given
from hypothesis import strategies as st

from surveillance.clinical.alert_fitting import bounded_id
from surveillance.clinical.daily_evaluation import agreement_snapshot
from surveillance.clinical.ledger import CaseRecord, record_of
from surveillance.contracts import Acquisition, AIResult, MetricSnapshot, Scanner
from surveillance.stream import internal
from surveillance.stream.case_features import ai_result_of
from surveillance.stream.ingest import Rejected
from tests.test_contracts_wire import (
    ALL_DATES,
    FAR,
    HEADERS,
    SETTINGS,
    adjudicated_case,
    aware,
    ident,
    mutated,
    valid_bytes,
)


def validated(f: dict[str, Any]) -> AIResult:
    """The AI result as pydantic builds it from the features (the path before)."""
    return AIResult(
        event_id=f["ai_event_id"], tool_id=f["tool_id"], manufacturer="", model="",
        software_version=f["software_version"], finding_code=f["finding_code"],
        ai_result=f["ai_result"], operating_threshold=f["operating_threshold"],
        result_indicator=f["result_indicator"], patient_id=f["accession"],
        accession_number=f["accession"], study_instance_uid=f["accession"],
        study_date=f["study_date"], site=f["site"], modality=f["modality"],
        body_part_examined="", contrast_indication=f["contrast_indication"],
        scanner=Scanner(manufacturer=f["scanner_manufacturer"], model=f["scanner_model"],
                        software_version=f["scanner_software_version"]),
        acquisition=Acquisition(kvp=f["kvp"], slice_thickness=f["slice_thickness"],
                                pixel_spacing=f["pixel_spacing"],
                                protocol_name=f["protocol_name"]),
        age=f["age"], sex=f["sex"], inference_date=f["inference_date"], pseudonymized=True)


def typed(model: Any) -> Any:
    """Every value with its type, nested models included (1 == 1.0 would hide a type)."""
    if hasattr(model, "__pydantic_fields_set__"):
        return (type(model), sorted(model.__pydantic_fields_set__),
                {k: typed(v) for k, v in model.__dict__.items()})
    if hasattr(model, "utcoffset"):
        return (type(model), model, model.utcoffset())
    return (type(model), model)


@SETTINGS
@given(st.one_of(valid_bytes(adjudicated_case), valid_bytes(adjudicated_case),
                 mutated(adjudicated_case)))
def test_the_unvalidated_view_equals_the_validated_model(raw: bytes) -> None:
    read = internal.read_case(raw, HEADERS, 4, FAR, ALL_DATES)
    event("rejected" if isinstance(read, Rejected) else "accepted")
    if isinstance(read, Rejected):
        return
    record = record_of(read[0], 2, read[1])
    assert record.features is not None
    # As the case stage has it, and as a rebuild reads it back from the changelog.
    restored = CaseRecord.from_dict(msgspec.json.decode(msgspec.json.encode(
        record.as_dict())))
    for features in (record.features, restored.features):
        assert features is not None
        expected = validated(features)  # pydantic takes every case read_case takes
        got = ai_result_of(features)
        assert got == expected
        assert typed(got) == typed(expected)
        assert got.model_dump_json() == expected.model_dump_json()


number = st.one_of(st.floats(-1e6, 1e6, allow_nan=False), st.integers(-10**6, 10**6))


@SETTINGS
@given(st.lists(ident, min_size=3, max_size=3), st.sampled_from(["7d", "30d", "last200"]),
       st.sampled_from(["sensitivity", "ppv", "kappa"]), aware, st.none() | number,
       st.none() | st.tuples(number, number), st.integers(0, 10**9))
def test_the_unvalidated_snapshot_equals_the_validated_model(
        names: list[str], window: str, metric: str, now: Any, value: Any, interval: Any,
        n: int) -> None:
    tool, version, site = names
    snapshot_id = bounded_id("agreement", tool, version, site, window, metric,
                             now.date().isoformat())
    got = agreement_snapshot(snapshot_id, now, tool, version, site, window, metric, value,
                             interval, n)
    expected = MetricSnapshot(
        snapshot_id=snapshot_id, kind="agreement", at=now, tool_id=tool,
        software_version=version, site=site, window=window, metric=metric, value=value,
        lower=None if interval is None else interval[0],
        upper=None if interval is None else interval[1], n=n)
    assert got == expected
    assert typed(got) == typed(expected)
    assert got.model_dump_json() == expected.model_dump_json()
