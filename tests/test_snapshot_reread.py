"""A restarted bulk runner reading a rewound partition again writes no snapshot of its
tools until the re-read has passed the partition's end at the restart, and restores the
partition's case clock as it stood where the re-read starts (`CaseSnapshots.reread`).

The clock: restored from the latest of the partition's snapshots (another tool's, written
after the rewound one's), it was ahead of the re-read, and the rewound tool's days were
evaluated before their cases were read again (the crash test, seed 481752004: ich-triage
5.3.0 on 07-11, n=95 against 96).

Written mid re-read, a snapshot held some rewound records as rewound and others as made
again: a state no point of the changelog (which still has the crashed batch's values)
holds, so the next restart could not rewind to it and replayed the tool, whose days
evaluated since its earlier snapshot were then never published again (the crash test,
seed 1754246176: lvo-triage and ptx-triage 07-04 to 07-11).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from surveillance.engine.config import EngineConfig
from surveillance.engine.local import LocalPipeline
from surveillance.engine.pipeline import CASE_SNAPSHOTS, Engine
from surveillance.engine.snapshots import is_part
from surveillance.simulate import simulate


@pytest.fixture(scope="module")
def stopped() -> LocalPipeline:
    """Six days in, every tool's snapshot written (the tables hold them)."""
    events, _ = simulate(days=6, seed=3, volume_scale=0.25)
    path = LocalPipeline(EngineConfig.plain(4), snapshots=True)
    for event in events:
        path.feed(event)
    path._apply(path.engine.snapshot())
    return path


def test_a_reread_partition_writes_its_tools_snapshots_only_past_its_end(
        stopped: LocalPipeline) -> None:
    path = stopped
    stage = path.engine.cases
    tools = sorted({r.tool for r in path.records().values()})
    assert len(tools) > 1
    # One tool on the re-read partition, the others on another.
    reread = 0
    partition_of = {tool: reread if tool == tools[0] else 1 for tool in tools}
    end = stage.offsets.get(reread, 0) + 10

    def written(offset: int) -> set[str]:
        """The tools whose snapshot a batch ending at `offset` of the partition writes."""
        for tool, partition in partition_of.items():
            stage.snapshots.changed(tool, partition)
        stage.snapshots.write(stage.monitor, stage.drift, stage.evaluation, stage.ahead,
                              stage.sources, {**stage.offsets, reread: offset}, None)
        assert path.engine.snapshot_table is not None
        return {c.key for c in path.engine.snapshot_table.changes()
                if c.table == CASE_SNAPSHOTS and not is_part(c.key)}

    stage.snapshots.reread(reread, 0, end)
    others = {t for t, p in partition_of.items() if p != reread}
    assert written(end - 1) == others
    assert written(end) == set(partition_of)  # passed: written, and not waited for again
    assert written(end - 5) == set(partition_of)


def test_a_reread_partition_gets_the_clock_of_the_snapshots_at_or_before_its_start(
        stopped: LocalPipeline) -> None:
    """Two tools of one partition, their snapshots at offsets 10 and 20: read again from
    10 (the first was rewound), the partition's case clock is the first's; from the
    committed offset (no rewind), the latest of them."""
    path = stopped
    saved = path.tables[CASE_SNAPSHOTS]
    tools = sorted(t for t, v in saved.items() if not is_part(t) and v.get("clock"))
    assert len(tools) >= 2 and {r.partition for r in path.records().values()} == {0}
    day = datetime(2026, 7, 3, tzinfo=UTC)

    def clock(at: datetime) -> dict[str, Any]:
        return {"sources": [[s, at.isoformat()] for s in range(4)], "pending": [],
                "low": at.isoformat()}

    table = dict(saved)
    for tool in tools:
        table[tool] = {**saved[tool], "offset": 20, "clock": clock(day + timedelta(days=2))}
    table[tools[0]] = {**saved[tools[0]], "offset": 10, "clock": clock(day)}

    def restored(start: int | None) -> datetime | None:
        engine = Engine(path.config, *{**path.tables, CASE_SNAPSHOTS: dict(table)}.values())
        if start is not None:
            engine.cases.snapshots.reread(0, start, 100)
        engine.cases.rebuild(list(path.records().items()))
        assert engine.cases.restored == sorted(t for t in saved if not is_part(t))
        return engine.cases._sources(0, 0.0).low(0.0)

    assert restored(10) == day
    assert restored(None) == day + timedelta(days=2)
