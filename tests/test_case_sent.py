"""A case partition's saved alerts (`engine.case_sent`): kept in parts, sent again first
by the next owner, kept saved until replaced, deleted once a later batch of the partition
is written (pure code; the kill itself: `tests/test_worker_case_crash.py`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from surveillance.engine import case_sent
from surveillance.engine.config import EngineConfig
from surveillance.engine.pipeline import CASE_SNAPSHOTS, Engine
from surveillance.engine.records import Output, Produce
from surveillance.stream.topics import ALERTS, CASES_ADJUDICATED, SNAPSHOTS, dlq

NOW = datetime(2026, 7, 20, tzinfo=UTC)


def _engine(tables: dict[str, dict[str, Any]]) -> Engine:
    engine = Engine(EngineConfig.plain(1), {}, {}, {}, tables[CASE_SNAPSHOTS])
    engine.cases.keep_sent = True
    return engine


def _alert(i: int, tool: str = "ich-triage", size: int = 10) -> Produce:
    body = '{"alert_id": "a' + str(i) + '", "x": "' + "y" * size + '"}'
    return Produce(ALERTS, tool.encode(), body.encode())


def _saved(out: Output, tables: dict[str, dict[str, Any]]) -> None:
    out.apply_to(tables)


def test_the_records_go_in_parts_and_read_back_as_they_were_sent() -> None:
    sent = [_alert(i, size=50_000) for i in range(12)]  # ~600 kB: parts of 6 (300 kB)
    records = case_sent.records(3, sent)
    assert len(records) == 2
    assert records[-1][0] == case_sent.sent_key(3)  # the first part last, with the count
    assert all(len(str(v)) < case_sent.PART_BYTES + 60_000 for _, v in records)
    backing = dict(records)
    assert case_sent.saved(backing, 3) == sent
    assert case_sent.keys(backing, 3) == [case_sent.sent_key(3, i) for i in range(2)]
    assert case_sent.saved(backing, 2) == []


def test_a_batch_saves_its_alerts_and_published_days_not_its_dead_letters() -> None:
    tables: dict[str, dict[str, Any]] = {CASE_SNAPSHOTS: {}}
    engine = _engine(tables)
    published = Produce(SNAPSHOTS, b"ich-triage", b'{"day": 1}')
    dead = Produce(dlq(CASES_ADJUDICATED), b"x", b"{}")
    engine.cases.keep([_alert(1), published, dead], 0)
    engine.cases.partition_of["dr-screen"] = 1
    engine.cases.keep([_alert(2, "dr-screen")])  # a tool's alert outside a record: its own
    engine.cases.save_sent()
    out = Output(changes=engine.snapshot_table.changes()) if engine.snapshot_table else Output()
    _saved(out, tables)
    assert case_sent.saved(tables[CASE_SNAPSHOTS], 0) == [_alert(1), published]
    assert case_sent.saved(tables[CASE_SNAPSHOTS], 1) == [_alert(2, "dr-screen")]


def test_the_next_owner_sends_them_first_keeps_them_then_a_later_batch_deletes_them() -> None:
    tables: dict[str, dict[str, Any]] = {CASE_SNAPSHOTS: {}}
    first = _engine(tables)
    many = [_alert(i, size=50_000) for i in range(8)]  # two parts
    first.cases.keep(many, 0)
    first.cases.save_sent()
    assert first.snapshot_table is not None
    _saved(Output(changes=first.snapshot_table.changes()), tables)
    assert len(case_sent.keys(tables[CASE_SNAPSHOTS], 0)) == 2

    # Killed: the next owner sends them before anything else, and saves them again in the
    # same write (a second kill before its records are acknowledged loses none).
    restarted = _engine(tables)
    restarted.cases.rebuild([], {0})
    out = restarted.process([], NOW, 0.0)
    assert out.produce[:len(many)] == many
    _saved(out, tables)
    assert case_sent.saved(tables[CASE_SNAPSHOTS], 0) == many
    assert restarted.process([], NOW, 0.0).produce == []  # sent once

    # A later batch of the partition that raised nothing: the saved ones were
    # acknowledged before its first write, so they go, every part.
    restarted.cases.keep([], 0)
    restarted.cases.save_sent()
    _saved(Output(changes=restarted.snapshot_table.changes()), tables)  # type: ignore[union-attr]
    assert case_sent.keys(tables[CASE_SNAPSHOTS], 0) == []
    assert not any(k.startswith(case_sent.SENT_KEY_PREFIX) for k in tables[CASE_SNAPSHOTS])


def test_a_caller_that_sends_its_records_first_sends_them_again_and_deletes_them() -> None:
    """The bulk runner taking over from a killed worker (`keep_sent` False)."""
    tables: dict[str, dict[str, Any]] = {CASE_SNAPSHOTS: {}}
    first = _engine(tables)
    first.cases.keep([_alert(1)], 0)
    first.cases.save_sent()
    assert first.snapshot_table is not None
    _saved(Output(changes=first.snapshot_table.changes()), tables)
    bulk = Engine(EngineConfig.plain(1), {}, {}, {}, tables[CASE_SNAPSHOTS])
    bulk.cases.rebuild([], {0})
    out = bulk.process([], NOW, 0.0)
    assert out.produce == [_alert(1)]
    _saved(out, tables)
    assert tables[CASE_SNAPSHOTS] == {}
