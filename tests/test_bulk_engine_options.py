"""The bulk runner's engine options change no byte it writes (pure: no broker).

`Engine(join_objects=True, metrics=False)` is how the bulk runner builds its engine: the
join table's changes carry `JoinState` objects (msgspec encodes them for the changelog)
and its backing holds them, and no metric call is kept. Checked against the engine as the
worker builds it (dicts, metrics kept), on the same simulated batches: the same changelog
records (key and value bytes, partition, in order), the same records produced, and the
same tables once both are read back from their changelogs (what a restarted runner or a
worker recovers).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from surveillance.bulk import changelog
from surveillance.clinical.join import JoinState
from surveillance.engine.config import EngineConfig
from surveillance.engine.pipeline import JOIN_TABLE, Engine
from surveillance.engine.records import Record
from surveillance.simulate import Faults, Scenario, simulate
from surveillance.stream import topics
from tests.factories import input_records

PARTITIONS = 4
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
Written = list[tuple[str, int, bytes, bytes | None]]


def run(records: list[Record], chunk: int, **options: Any
        ) -> tuple[Written, list[tuple[str, bytes, bytes, int | None]], dict[str, Any], int]:
    """Chunks as the bulk runner takes them (both stages in one engine, `cases.join` and
    `cases.adjudicated` fed back as the next chunks): the changelog records, the records
    produced, the join table as backed, and the metric calls kept."""
    tables: dict[str, dict[str, Any]] = {t: {} for t in changelog.TABLES}
    engine = Engine(EngineConfig.plain(PARTITIONS), *(tables[t] for t in changelog.TABLES),
                    **options)
    written: Written = []
    produced: list[tuple[str, bytes, bytes, int | None]] = []
    metrics = 0
    pending = list(records)
    clock = NOW
    while pending:
        chunk_records, pending = pending[:chunk], pending[chunk:]
        out = engine.process(chunk_records, clock, 0.0)
        clock += timedelta(seconds=1)
        out.apply_to(tables)
        metrics += len(out.metrics)
        for change in out.changes:
            key, value = changelog.encode(change.key, change.value)
            written.append((change.table, change.partition, key, value))
        for p in out.produce:
            produced.append((p.topic, p.key, p.value, p.partition))
            if p.topic in (topics.CASES_JOIN, topics.CASES_ADJUDICATED):
                partition = p.partition if p.partition is not None else 0
                pending.append(Record(p.topic, partition, 0, p.key, p.value,
                                      tuple((p.headers or {}).items())))
    return written, produced, tables[JOIN_TABLE], metrics


@pytest.mark.parametrize("chunk", [1, 250])
def test_the_bulk_runners_engine_writes_what_the_workers_does(chunk: int) -> None:
    events, _ = simulate(days=7, seed=11, scenario=Scenario(), faults=Faults())
    records = input_records(events, PARTITIONS)

    written, produced, join_backing, metrics = run(records, chunk)
    bulk_written, bulk_produced, bulk_backing, bulk_metrics = run(
        records, chunk, join_objects=True, metrics=False)

    assert any(table == JOIN_TABLE and value is not None for table, _, _, value in written)
    assert bulk_written == written
    assert bulk_produced == produced
    assert metrics > 0 and bulk_metrics == 0
    # The backings differ in kind (objects against dicts) but not in state.
    assert all(isinstance(v, JoinState) for v in bulk_backing.values())
    assert {k: v.as_dict() for k, v in bulk_backing.items()} == join_backing
    # Read back from the changelog, as a restart restores them.
    restored: dict[str, dict[str, Any]] = {t: {} for t in changelog.TABLES}
    for table in changelog.TABLES:
        changelog.apply(restored, table, [(k, v) for t, _, k, v in bulk_written
                                          if t == table])
    assert restored[JOIN_TABLE] == join_backing
