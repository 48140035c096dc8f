"""The case stage's state snapshots (`engine.snapshots`, `engine.state_codec`).

The oracle of the property test is the uninterrupted run itself: an engine restarted from
its snapshots mid-stream must give the same alerts (every field, in order), the same
counts and, at the end, the same state, written by the same codec, as one that never
stopped. The codec's own tests check values against Python's equality and identity.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
from collections import Counter, deque
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from surveillance.clinical.ledger import CaseRecord
from surveillance.contracts import Alert
from surveillance.engine import horizon, snapshots
from surveillance.engine.cases import CaseStage
from surveillance.engine.config import EngineConfig
from surveillance.engine.horizon import case_records, is_summary, light_record
from surveillance.engine.local import LocalPipeline
from surveillance.engine.pipeline import CASE_SNAPSHOTS, CASE_TABLE, Engine
from surveillance.engine.state_codec import StateCodecError, decode, encode, encode_json
from surveillance.engine.tables import Table
from surveillance.simulate import Faults, Scenario, simulate
from tests.state_codec_reference import reference_encode

# -- the codec ---------------------------------------------------------------------------

_floats = st.floats(allow_nan=True, allow_infinity=True)
_moments = st.datetimes(timezones=st.just(UTC))
_leaves = (st.none() | st.booleans() | st.integers() | st.text(max_size=5) | _floats
           | _moments | st.dates() | st.timedeltas())
_keys = st.text(max_size=4) | st.integers() | st.tuples(st.text(max_size=3), st.integers())
_values = st.recursive(_leaves, lambda inner: (
    st.lists(inner, max_size=4) | st.tuples(inner, inner)
    | st.dictionaries(_keys, inner, max_size=4) | st.frozensets(st.integers(), max_size=4)
    | st.sets(st.text(max_size=3), max_size=4)), max_leaves=20)


def _same(a: Any, b: Any) -> bool:
    """Equal, with NaN equal to NaN, and of the same types all the way down."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) ==
                                                      math.copysign(1, b))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, datetime):
        return a == b and a.tzinfo == b.tzinfo
    return bool(a == b)


@given(_values)
@settings(max_examples=300, deadline=None)
def test_any_value_round_trips_exactly(value: Any) -> None:
    back = decode(encode(value, {}, {}), {}, {})
    assert _same(back, value)


def test_shared_objects_stay_shared_and_externals_are_not_copied() -> None:
    entry = [2]
    live = object()
    state = {"a": deque([entry, entry], maxlen=3), "b": [entry], "live": live,
             "counts": Counter({("x", 1): 2}),
             "array": np.array([[1.5, math.nan], [-0.0, 3.0]], dtype=np.float32),
             "scalar": np.float64(0.1)}
    back = decode(encode(state, {}, {id(live): "live"}), {}, {"live": live})
    assert back["a"][0] is back["a"][1] is back["b"][0]
    assert back["a"].maxlen == 3 and back["live"] is live
    assert back["counts"] == state["counts"] and type(back["counts"]) is Counter
    assert back["array"].dtype == np.float32 and back["array"].shape == (2, 2)
    assert np.array_equal(back["array"], state["array"], equal_nan=True)
    assert type(back["scalar"]) is np.float64 and back["scalar"] == 0.1


def test_what_the_codec_may_not_write_or_read_is_an_error() -> None:
    class Unlisted:
        pass

    with pytest.raises(StateCodecError, match="Unlisted is not a class"):
        encode({"x": Unlisted()}, {}, {})
    with pytest.raises(StateCodecError, match="not in UTC"):
        encode(datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=2))), {}, {})
    with pytest.raises(StateCodecError, match=r"does not know: os\.system"):
        decode(["o", 0, "os.system", []], {}, {})
    with pytest.raises(StateCodecError, match="unknown live object"):
        decode(["x", "settings"], {}, {})
    with pytest.raises(StateCodecError, match="malformed"):
        decode(["l", 0, [["r", 7]]], {}, {})
    assert decode(encode(date(2026, 2, 3), {}, {}), {}, {}) == date(2026, 2, 3)


# -- restarts from snapshots -------------------------------------------------------------

Run = tuple[list[Alert], dict[str, Counter[str]], dict[str, Any]]


def _state(path: LocalPipeline) -> dict[str, Any]:
    """Every tool's snapshot record, written now (the whole per-tool state)."""
    stage = path.engine.cases
    for tool in {r.tool for r in path.records().values()}:
        stage.snapshots.dirty[tool] = 0
    path._apply(path.engine.snapshot())
    return {tool: (value["digest"], value["evaluated"], value["state"])
            for tool, value in path.tables[CASE_SNAPSHOTS].items()}


def _run(events: list[Any], restart_at: int | None) -> Run:
    path = LocalPipeline(EngineConfig.plain(4), snapshots=True)
    for i, event in enumerate(events):
        if i == restart_at:
            path._apply(path.engine.snapshot())  # a batch end
            engine = path.engine
            # Only the case stage restarts: a new engine would also restore the join's
            # clocks from its table and wait for every join partition again (by design),
            # and release cases held ahead of the clock a few records later than without
            # the restart (`test_engine_restart` restarts the whole engine). Here any
            # difference left is one the snapshots made.
            stage = CaseStage(path.config, engine.case_table, engine.horizon_summaries,
                              engine.snapshot_table)
            records = list(path.records().items())
            stage.rebuild(records)
            assert stage.restored == sorted({r.tool for _, r in records})
            stage.sources = engine.cases.sources
            engine.cases = stage
        path.feed(event)
    # The drift banks restored were past their reference: detectors and windows in use.
    assert any(bank.monitoring for bank in path.engine.cases.drift.banks.values())
    counts: dict[str, Counter[str]] = {}
    for record in path.records().values():
        counts.setdefault(record.tool, Counter())[record.outcome] += 1
    return path.alerts, counts, _state(path)


@given(days=st.integers(40, 44), seed=st.integers(0, 2**16),
       volume=st.floats(0.2, 0.25), split=st.floats(0.05, 0.95),
       drop=st.sampled_from([None, 12]), corrections=st.floats(0.0, 0.05))
@settings(max_examples=3, deadline=None, phases=[Phase.generate],  # a run takes seconds
          suppress_health_check=[HealthCheck.too_slow])
def test_a_restart_from_snapshots_continues_as_if_uninterrupted(
        days: int, seed: int, volume: float, split: float, drop: int | None,
        corrections: float) -> None:
    events, _ = simulate(days=days, seed=seed, volume_scale=volume,
                         scenario=Scenario(sensitivity_drop_day=drop, drop_to=0.5,
                                           protocol_change_day=20),
                         faults=Faults(duplicate_rate=0.02, correction_rate=corrections))
    once = _run(events, None)
    restarted = _run(events, int(len(events) * split))
    assert restarted[0] == once[0]
    assert restarted[1] == once[1]
    assert restarted[2] == once[2]


@pytest.fixture(scope="module")
def stopped() -> LocalPipeline:
    """A pipeline 40 days in (drift references calibrated), its snapshots written."""
    events, _ = simulate(days=40, seed=3, volume_scale=0.25,
                         scenario=Scenario(protocol_change_day=20))
    path = LocalPipeline(EngineConfig.plain(4), snapshots=True)
    for event in events:
        path.feed(event)
    path._apply(path.engine.snapshot())
    assert any(bank.monitoring for bank in path.engine.cases.drift.banks.values())
    return path


def test_the_state_is_written_as_the_reference_writes_it(stopped: LocalPipeline) -> None:
    """Each tool's whole state (monitor, drift bank, waiting revisions), 40 days in, has
    the bytes the codec's plain reference gives (`tests/state_codec_reference`)."""
    stage = stopped.engine.cases
    for tool in sorted(stage.drift.banks):
        externals = {id(stage.monitor.settings): "settings",
                     **snapshots._ids(snapshots._drift_externals(stage.drift))}
        baseline = stage.monitor.settings.registry.get(tool)
        if baseline is not None:
            externals[id(baseline)] = "baseline"
        state = {"monitor": stage.monitor.tool_state(tool), "drift": stage.drift.banks[tool],
                 "ahead": [], "waiting": stage.evaluation.queue.of_tool(tool)}
        written = encode_json(state, snapshots.CLASSES, externals)
        assert written == msgspec.json.encode(
            reference_encode(state, snapshots.CLASSES, externals))
        assert len(written) > 10_000  # windows, charts and a drift bank in use


def _restarted(path: LocalPipeline, snapshot_table: dict[str, Any]) -> Engine:
    tables = {**path.tables, CASE_SNAPSHOTS: snapshot_table}
    engine = Engine(path.config, *tables.values())
    engine.cases.rebuild(list(path.records().items()))
    return engine


def test_a_snapshot_not_matching_the_case_table_is_replayed_with_a_reason(
        stopped: LocalPipeline, caplog: pytest.LogCaptureFixture) -> None:
    saved = stopped.tables[CASE_SNAPSHOTS]
    assert _restarted(stopped, saved).cases.restored == sorted(saved)
    stale = {tool: {**value, "digest": (value["digest"] + 1) % 2**64}
             for tool, value in saved.items()}
    old = {tool: {**value, "format": snapshots.FORMAT + 1} for tool, value in saved.items()}
    other = {tool: {**value, "code": "0" * 16} for tool, value in saved.items()}
    # Cut short, its hash made to match (else the hash check finds it: the next test).
    broken = {tool: {**value, "state": value["state"][:-8],
                     "sha256": hashlib.sha256(value["state"][:-8].encode()).hexdigest()}
              for tool, value in saved.items()}
    # Each on one tool (the others load), so each is one tool's replay.
    tools = sorted(saved)
    unknown = f"its format {snapshots.FORMAT + 1} is not {snapshots.FORMAT}"
    for i, (table, reason) in enumerate(((stale, "the case table has changed"),
                                         (old, unknown),
                                         (other, "written by other code"), (broken, "Error"))):
        tool = tools[i % len(tools)]
        table = {**saved, tool: table[tool]}
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger=snapshots.__name__):
            engine = _restarted(stopped, table)
        assert engine.cases.restored == [t for t in tools if t != tool]
        assert len(caplog.records) == 1 and tool in caplog.text and reason in caplog.text
        # Replayed: the counts are the records' all the same.
        assert engine.cases.ledger.per_tool() == stopped.engine.cases.ledger.per_tool()


def test_a_digest_follows_every_record_change_and_eviction(stopped: LocalPipeline) -> None:
    """The digests kept batch by batch are those recomputed from the table."""
    stage = stopped.engine.cases
    records = list(stopped.records().items())
    assert stage.snapshots.digests == snapshots.table_digests(records)
    case_id, record = records[0]
    changed = [(case_id, CaseRecord(**{**record.as_dict(), "revision": record.revision + 1}))]
    assert snapshots.table_digests(changed + records[1:]) != snapshots.table_digests(records)


def test_a_snapshot_too_big_for_a_changelog_record_is_not_written(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    events, _ = simulate(days=3, seed=4, volume_scale=0.2)
    path = LocalPipeline(EngineConfig.plain(4), snapshots=True)
    for event in events:
        path.feed(event)
    tools = sorted({r.tool for r in path.records().values()})
    stage = path.engine.cases
    for tool in tools:
        stage.snapshots.dirty[tool] = 0
    monkeypatch.setattr(snapshots, "MAX_STATE_BYTES", 100)
    with caplog.at_level(logging.WARNING, logger=snapshots.__name__):
        out = path.engine.snapshot()
    written = {c.key: c.value for c in out.changes if c.table == CASE_SNAPSHOTS}
    # In place of each (an older one would be stale), a marker: a restart replays the
    # tool rather than rewind it to empty as a tool never snapshotted (`engine.rewind`).
    assert written == {tool: {"tool": tool, "format": snapshots.FORMAT, "unwritable": True}
                       for tool in tools}
    assert caplog.text.count("over the 100 a snapshot may take") == len(tools)


# -- snapshots over a record's size, in parts --------------------------------------------


def _write_into(backing: dict[str, Any], path: LocalPipeline) -> dict[str, Any]:
    """Every tool's snapshot of `path`'s case stage written now into `backing` (as a
    batch end applies the changes), by a snapshot writer of its own; `backing` returned."""
    stage = path.engine.cases
    writer = snapshots.CaseSnapshots(Table(CASE_SNAPSHOTS, backing, dict, dict))
    writer.digests = dict(stage.snapshots.digests)
    for record in path.records().values():
        writer.dirty[record.tool] = record.partition
    writer.write(stage.monitor, stage.drift, stage.evaluation, stage.ahead, stage.sources,
                 stage.offsets, None)
    assert writer.table is not None
    for change in writer.table.changes():
        if change.value is None:
            backing.pop(change.key, None)
        else:
            backing[change.key] = change.value
    return backing


def _whole(table: dict[str, Any]) -> dict[str, str]:
    """Each tool's packed state, its parts joined in order."""
    return {tool: value["state"] + "".join(
                table[snapshots.part_key(tool, n)]["state"] for n in range(1, value["parts"]))
            for tool, value in table.items() if not snapshots.is_part(tool)}


@pytest.mark.parametrize("part_bytes", [997])
def test_a_snapshot_over_a_record_size_goes_in_parts_and_loads_exactly(
        stopped: LocalPipeline, part_bytes: int, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    whole = _write_into({}, stopped)  # one record per tool: the default part size
    assert not any(snapshots.is_part(k) for k in whole)
    tools = sorted(whole)
    monkeypatch.setattr(snapshots, "PART_BYTES", part_bytes)
    parted = _write_into({}, stopped)
    for tool in tools:
        size = len(whole[tool]["state"])
        n = -(-size // part_bytes)
        keys = {tool} | {snapshots.part_key(tool, i) for i in range(1, n)}
        assert parted[tool]["parts"] == n
        assert {k for k, v in parted.items() if k == tool or v.get("tool") == tool} == keys
        assert all(len(parted[k]["state"]) <= part_bytes for k in keys)
    assert any(parted[tool]["parts"] > 1 for tool in tools)
    assert _whole(parted) == {t: whole[t]["state"] for t in tools}
    with caplog.at_level(logging.WARNING, logger=snapshots.__name__):
        restarted = _restarted(stopped, parted)
    assert restarted.cases.restored == tools and not caplog.records
    # The state loaded from the parts is the one written: written again, the same bytes.
    assert restarted.cases.ledger.per_tool() == stopped.engine.cases.ledger.per_tool()
    monkeypatch.setattr(snapshots, "PART_BYTES", 900_000)
    again = _write_into({}, _Engined(stopped, restarted))
    assert _whole(again) == _whole(whole)


class _Engined:
    """`stopped`'s tables with another engine (what `_write_into` reads)."""

    def __init__(self, path: LocalPipeline, engine: Engine) -> None:
        self.engine = engine
        self.records = path.records


def test_a_missing_or_foreign_part_makes_its_tool_replay(
        stopped: LocalPipeline, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(snapshots, "PART_BYTES", 2048)
    parted = _write_into({}, stopped)
    tools = sorted(k for k in parted if not snapshots.is_part(k))
    missing, swapped = tools[:2]
    broken = dict(parted)
    del broken[snapshots.part_key(missing, parted[missing]["parts"] - 1)]
    # Two parts of the same tool exchanged: each a genuine part, the whole not the state.
    first, second = (snapshots.part_key(swapped, n) for n in (1, 2))
    broken[first], broken[second] = parted[second], parted[first]
    with caplog.at_level(logging.WARNING, logger=snapshots.__name__):
        engine = _restarted(stopped, broken)
    assert engine.cases.restored == [t for t in tools if t not in (missing, swapped)]
    assert caplog.text.count("its parts are missing or not the ones it was written with") == 2
    assert missing in caplog.text and swapped in caplog.text
    assert engine.cases.ledger.per_tool() == stopped.engine.cases.ledger.per_tool()


def test_a_smaller_snapshot_deletes_the_parts_it_no_longer_has(
        stopped: LocalPipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshots, "PART_BYTES", 1024)
    table = _write_into({}, stopped)
    assert any(snapshots.is_part(k) for k in table)
    monkeypatch.setattr(snapshots, "PART_BYTES", 900_000)
    _write_into(table, stopped)  # over the parted one, as the next write would be
    assert not any(snapshots.is_part(k) for k in table)
    assert all(value["parts"] == 1 for value in table.values())
    # Too big in all: every part goes, the snapshot's place keeps a marker (an older one
    # would be stale), which a rebuild does not load.
    monkeypatch.setattr(snapshots, "PART_BYTES", 1024)
    _write_into(table, stopped)
    monkeypatch.setattr(snapshots, "MAX_STATE_BYTES", 100)
    table = _write_into(table, stopped)
    assert table and all(v == {"tool": k, "format": snapshots.FORMAT, "unwritable": True}
                         for k, v in table.items())
    stage = stopped.engine.cases
    reader = snapshots.CaseSnapshots(Table(CASE_SNAPSHOTS, table, dict, dict))
    reader.digests = dict(stage.snapshots.digests)
    assert all(reader.load(tool, stage.monitor, stage.drift) is None for tool in table)


# -- a rebuild keeping its records light -------------------------------------------------


def test_a_light_record_is_the_record_without_its_features_and_shares_its_strings(
        stopped: LocalPipeline) -> None:
    raw = [v for k, v in stopped.tables[CASE_TABLE].items() if not is_summary(k)]
    before = copy.deepcopy(raw)
    light = [light_record(v) for v in raw]
    assert raw == before  # the table's values are not touched
    assert all(r.features is not None for r in map(CaseRecord.from_dict, raw))
    assert light == [msgspec.structs.replace(CaseRecord.from_dict(v), features=None)
                     for v in raw]
    # As a disk-backed store holds them (JSON), the same.
    assert [light_record(msgspec.json.encode(v)) for v in raw] == light
    by_tool: dict[str, str] = {}
    for record in light:
        assert by_tool.setdefault(record.tool, record.tool) is record.tool


def test_a_rebuild_from_light_records_equals_one_from_full_records(
        stopped: LocalPipeline) -> None:
    """A tool whose snapshot is stale replays from its full records (`full`), the others
    load; the state written afterwards is the same bytes as after a rebuild from full
    records. Without `full` the replayed drift bank differs (the check can tell)."""
    saved = stopped.tables[CASE_SNAPSHOTS]
    stale = sorted(t for t, b in stopped.engine.cases.drift.banks.items() if b.monitoring)[0]
    table = {**saved, stale: {**saved[stale], "digest": (saved[stale]["digest"] + 1) % 2**64}}
    raw = [(k, v) for k, v in stopped.tables[CASE_TABLE].items() if not is_summary(k)]
    full_records = case_records(raw, range(4))
    light = case_records(raw, range(4), light_record)
    asked: list[set[str]] = []

    def full(tools: set[str]) -> list[tuple[str, CaseRecord]]:
        asked.append(tools)
        return [(k, r) for k, r in full_records if r.tool in tools]

    def rebuilt(records: list[tuple[str, CaseRecord]], **kwargs: Any) -> dict[str, str]:
        engine = Engine(stopped.config, *{**stopped.tables, CASE_SNAPSHOTS: table}.values())
        engine.cases.rebuild(records, **kwargs)
        assert engine.cases.restored == sorted(t for t in saved if t != stale)
        assert engine.cases.ledger.per_tool() == stopped.engine.cases.ledger.per_tool()
        return _whole(_write_into({}, _Engined(stopped, engine)))

    expected = rebuilt(full_records)
    assert rebuilt(light, full=full) == expected
    assert asked == [{stale}]
    assert rebuilt(light)[stale] != expected[stale]


def test_the_light_record_has_every_case_record_field_but_the_features_in_order() -> None:
    """`light_record` builds a `CaseRecord` positionally from `_Light`: a field added to or
    moved in `CaseRecord` alone would shift every value after it."""
    def described(struct: type) -> list[tuple[str, object, object]]:
        return [(f.name, f.type, f.default) for f in msgspec.structs.fields(struct)]
    full = [f for f in described(CaseRecord) if f[0] != "features"]
    assert described(horizon._Light) == full
