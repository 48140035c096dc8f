"""The engine's batch contract, checked on simulated streams (pure: no broker).

- A batch writes each changed table key once, in the changelog format (the dict a Faust
  table holds: `JoinState.as_dict()`, `CaseRecord.as_dict()`), and gives
  the same records and the same state as the same events taken one batch each.
- An engine started on the tables another left (a worker or a backfill taking over)
  continues to the same counts as an uninterrupted one, and to the simulator's truth.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from surveillance.clinical.join import JoinState
from surveillance.clinical.ledger import CaseRecord
from surveillance.contracts import SnapshotBatch
from surveillance.engine.config import EngineConfig
from surveillance.engine.local import LocalPipeline
from surveillance.engine.pipeline import Engine
from surveillance.engine.records import Change, MetricCall, Output, Produce, Record
from surveillance.engine.tables import Table
from surveillance.simulate import SimEvent, ToolTruth, simulate
from surveillance.store.rows import Decoder, Rows
from surveillance.stream import topics
from tests.factories import input_records

PARTITIONS = 4
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def stream() -> tuple[list[SimEvent], dict[str, ToolTruth]]:
    return simulate(days=21, seed=5)


def records_of(events: list[SimEvent]) -> list[Record]:
    """Input records on their accession's partition, numbered as a broker would."""
    return input_records(events, PARTITIONS)


def run(batches: list[list[Record]]) -> tuple[dict[str, dict[str, Any]], list[bytes], int]:
    """Join-side batches at one wall clock: final tables, the case records produced in
    order, and how many changes were written."""
    tables: dict[str, dict[str, Any]] = {"join_state": {}, "case_state": {},
                                         "adverse_state": {}}
    engine = Engine(EngineConfig.plain(PARTITIONS), *tables.values())
    cases: list[bytes] = []
    written = 0
    for batch in batches:
        out = engine.process(batch, NOW, 0.0)
        keys = [(c.table, c.key) for c in out.changes]
        assert len(keys) == len(set(keys)), "a key written twice in one batch"
        written += len(keys)
        out.apply_to(tables)
        cases += [p.value for p in out.produce if p.topic == topics.CASES_ADJUDICATED]
    return tables, cases, written


def test_a_batch_writes_each_changed_key_once_and_equals_one_event_at_a_time(
    stream: tuple[list[SimEvent], dict[str, ToolTruth]],
) -> None:
    records = records_of(stream[0][:6000])
    one_by_one = run([[r] for r in records])
    batched = run([records[i:i + 1000] for i in range(0, len(records), 1000)])
    print(f"\n{len(records)} events: {one_by_one[2]} table writes one at a time, "
          f"{batched[2]} in batches of 1000; {len(batched[1])} case records")
    assert batched[0] == one_by_one[0]
    assert batched[1] == one_by_one[1]
    assert len(batched[1]) > 1000
    assert batched[2] < 0.75 * one_by_one[2]  # an accession's AI results and report share writes
    for raw in batched[0]["join_state"].values():  # the changelog format, as Faust stores it
        assert JoinState.from_dict(raw).as_dict() == raw


def counts(tables: dict[str, dict[str, Any]]) -> dict[str, Counter[str]]:
    out: dict[str, Counter[str]] = {}
    for raw in tables["case_state"].values():
        record = CaseRecord.from_dict(raw)
        out.setdefault(record.tool, Counter())[record.outcome] += 1
    return out


def test_an_engine_started_on_another_engines_tables_continues_exactly(
    stream: tuple[list[SimEvent], dict[str, ToolTruth]],
) -> None:
    events, truth = stream
    whole = LocalPipeline(EngineConfig.plain(PARTITIONS, snapshots=False))
    for e in events:
        whole.feed(e)
    cut = len(events) // 3
    first = LocalPipeline(EngineConfig.plain(PARTITIONS, snapshots=False))
    for e in events[:cut]:
        first.feed(e)
    second = LocalPipeline(EngineConfig.plain(PARTITIONS, snapshots=False))
    second.tables.update(copy.deepcopy(first.tables))
    second.engine = Engine(second.config, *second.tables.values())
    second.engine.cases.rebuild(list(second.records().items()))
    for e in events[cut:]:
        second.feed(e)
    taken_over, uninterrupted = counts(second.tables), counts(whole.tables)
    print(f"\ncut at event {cut} of {len(events)}: {dict(taken_over)}")
    assert taken_over == uninterrupted
    for tool, t in truth.items():
        for outcome in ("TP", "FP", "TN", "FN", "indeterminate"):
            assert taken_over[tool][outcome] == t.final_outcomes[outcome], (tool, outcome)
        assert sum(taken_over[tool].values()) == t.cases


def test_a_table_reads_its_own_writes_and_reports_each_key_once() -> None:
    backing = {"a": {"n": 1}, "b": {"n": 2}}
    table: Table[dict[str, Any]] = Table("t", backing, dict, dict)
    table.put("a", {"n": 10}, 0)
    table.put("a", {"n": 11}, 1)
    table.delete("b", 2)
    table.put("c", {"n": 3}, 3)
    assert table.get("a") == {"n": 11} and table.get("b") is None and "c" in table
    assert dict(table.stored()) == {"a": {"n": 11}, "c": {"n": 3}}
    changes = {(c.key, c.partition): c.value for c in table.changes()}
    assert changes == {("a", 1): {"n": 11}, ("b", 2): None, ("c", 3): {"n": 3}}
    assert backing == {"a": {"n": 1}, "b": {"n": 2}}  # the caller persists, not the table
    assert table.changes() == [] and table.get("a") == {"n": 1}


def test_apply_to_writes_each_change_in_order_and_a_deletion_removes_the_key() -> None:
    out = Output(changes=[Change("join_state", "a", {"n": 1}, 0),
                          Change("case_state", "c", {"r": 0}, 1),
                          Change("join_state", "a", None, 0),
                          Change("join_state", "gone", None, 2),  # never written: no error
                          Change("join_state", "b", {"n": 2}, 3)])
    tables: dict[str, dict[str, Any]] = {"join_state": {"a": {"n": 0}}, "case_state": {}}
    out.apply_to(tables)
    assert tables == {"join_state": {"b": {"n": 2}}, "case_state": {"c": {"r": 0}}}
    with pytest.raises(KeyError):  # a change for a table the caller does not hold
        Output(changes=[Change("adverse_state", "x", {}, 0)]).apply_to(tables)


def forged(**fields: Any) -> bytes:
    case = {"case_id": "a_x:ich-triage", "revision": 0, "outcome": "TP", "label": "present",
            "tool_id": "ich-triage", "software_version": "1", "site": "site-a",
            "finding_code": "intracranial_hemorrhage", "ai_result": 0.9,
            "operating_threshold": 0.5, "result_indicator": True, "accession": "a_x",
            "study_date": "2026-11-30", "inference_date": "2026-11-30T10:00:00Z",
            "modality": "CT", "scanner_manufacturer": "GE", "scanner_model": "m",
            "scanner_software_version": "1", "ai_event_id": "e1", **fields}
    return json.dumps(case).encode()


@pytest.mark.parametrize(("fields", "reason"), [
    ({"kvp": float("inf")}, "kvp: outside"), ({"kvp": float("nan")}, "kvp: outside"),
    ({"kvp": 500.0}, "kvp: outside"), ({"kvp": 0.0}, "kvp: outside"),
    ({"slice_thickness": 51.0}, "slice_thickness: outside"),
    ({"pixel_spacing": -1.0}, "pixel_spacing: outside"), ({"age": 131}, "age: outside"),
    ({"modality": ""}, "modality: 1 to 16"), ({"modality": "C" * 17}, "modality: 1 to 16"),
])
def test_a_forged_case_the_drift_bank_could_not_take_is_dead_lettered(
        fields: dict[str, Any], reason: str) -> None:
    """Our join copies these fields from a validated AI result; a forged case with them
    out of its bounds used to raise in the drift bank (a poison record), and a non-finite
    value would not survive the changelog's JSON."""
    engine = Engine(EngineConfig.plain(1), {}, {}, {})
    bad = Record(topics.CASES_ADJUDICATED, 0, 0, b"ich-triage", forged(**fields))
    out = engine.process([bad], NOW, 0.0)
    [letter] = [p for p in out.produce if p.topic == topics.dlq(topics.CASES_ADJUDICATED)]
    assert reason in json.loads(letter.value)["reason"]
    assert out.changes == []
    good = Record(topics.CASES_ADJUDICATED, 0, 1, b"ich-triage",
                  forged(kvp=200.0, slice_thickness=50.0, pixel_spacing=10.0, age=130,
                         modality="C" * 16))
    out = engine.process([good], NOW, 0.0)
    assert [c.key for c in out.changes] == ["a_x:ich-triage"]


def test_each_tools_day_is_one_snapshot_record_and_its_gauges_name_that_tool_only(
    stream: tuple[list[SimEvent], dict[str, ToolTruth]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[MetricCall] = []
    pipeline = LocalPipeline(EngineConfig.plain(PARTITIONS), on_metrics=calls.extend)
    produced: list[Produce] = []
    #: Per engine batch, the latest snapshot record of each tool evaluated in it (in the
    #: order first evaluated): what its gauges are set to once, at the batch's end.
    latest: list[SnapshotBatch] = []
    process = pipeline.engine.process

    def spy(records: list[Record], now: datetime, mono: float) -> Output:
        out = process(records, now, mono)
        mine = [p for p in out.produce if p.topic == topics.SNAPSHOTS]
        produced.extend(mine)
        last: dict[str, SnapshotBatch] = {}
        for p in mine:
            batch = SnapshotBatch.model_validate_json(p.value)
            last.setdefault(batch.tool_id, batch)
            last[batch.tool_id] = batch
        latest.extend(last.values())
        return out

    monkeypatch.setattr(pipeline.engine, "process", spy)
    for e in stream[0]:
        pipeline.feed(e)
    batches = [SnapshotBatch.model_validate_json(p.value) for p in produced]
    published = [args[0] for name, args in calls if name == "publish_snapshots"]
    print(f"\n{len(batches)} snapshot records for {sum(map(len, published))} gauges")
    assert len(batches) >= 2 * len(stream[1])  # a record per tool-day
    assert len({(b.tool_id, b.at) for b in batches}) == len(batches)
    for p, batch in zip(produced, batches, strict=True):
        assert p.key == batch.tool_id.encode()
        # Every figure of the day, in the one record.
        assert {(s.tool_id, s.at) for s in batch.snapshots} == {(batch.tool_id, batch.at)}
    # An engine batch may close several days of a tool (its clock jumped): the gauges
    # take the last day's figures, once.
    assert len(published) == len(latest) <= len(batches)
    for batch, snapshots in zip(latest, published, strict=True):
        assert batch.snapshots == snapshots
    # The store writer's decoder makes one row per snapshot of every record.
    rows = Rows.empty()
    decoder = Decoder(topics.CASES_ADJUDICATED, topics.ALERTS, topics.SNAPSHOTS,
                      topics.ADVERSE_EVENTS)
    for offset, p in enumerate(produced):
        decoder.add(rows, p.topic, 0, offset, p.value)
    assert rows.rejects == [] and len(rows.snapshots) == sum(len(b.snapshots) for b in batches)
    # Each evaluation publishes the gauges of its own tool, not every tool's again.
    judged = 0
    for i, (name, args) in enumerate(calls):
        if name == "publish_drift":
            tool = args[0]
            (verdicts_call, (verdicts,)), (charts_call, (charts,)) = calls[i + 1], calls[i + 2]
            assert (verdicts_call, charts_call) == ("publish_verdicts", "publish_charts")
            assert {key[0] for key in verdicts} <= {tool}
            assert {chart.tool for chart in charts} <= {tool}
            judged += len(verdicts)
    assert judged > 0
