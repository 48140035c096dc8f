"""A tool killed before its first snapshot was written, then restarted: the same days
published, with the same figures, as one uninterrupted run (`engine.rewind.Rewind`).

Pure: the engine takes a simulated backlog in chunks as the bulk runner does (its internal
records fed back as later chunks, `tests.test_calibration_process`), every table change
persisted at each chunk end, and the case stage's `cases.adjudicated` records kept per
partition as the log a restart reads again. At a chunk end the engine is dropped, as a
kill drops it, and a new one starts on the tables, with one tool's snapshot missing: as
if every one of its snapshots so far had been held back (a re-read of its partition holds
them, `CaseSnapshots.reread`; a calibration holds them, `engine.drift`) or the kill came
between its records and its first snapshot.

Before, that tool was replayed from its case records (`PerformanceMonitor.rebuild`): its
daily evaluation started again at the latest case day its records held, so the days it
had evaluated since the last one published, up to that one, were never published (CI seed
3299872936 of `tests/test_backfill_crashes.py`: every figure of ich-triage's 07-04 was
missing). Now a tool never snapshotted is rewound to empty and its partition read again
from offset 0; when retention has moved that partition's log start, it cannot be read
again, and the tool is replayed (the second test).
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from surveillance.bulk import changelog
from surveillance.clinical.ledger import CaseRecord
from surveillance.contracts import SnapshotBatch
from surveillance.engine.pipeline import CASE_SNAPSHOTS, CASE_TABLE
from surveillance.engine.records import Record
from surveillance.engine.rewind import Rewind
from surveillance.engine.snapshots import is_part
from surveillance.simulate import Faults, Scenario, simulate
from surveillance.stream import topics
from tests.factories import input_records
from tests.test_calibration_process import MINUTE, NOW, PARTITIONS, feed_back, start

TOOLS = ("ich-triage", "ptx-triage", "lvo-triage")
CHUNK = 150
#: The restart comes at the first chunk end after the tool has published this many days.
RESTART_AFTER_DAYS = 5


def backlog() -> list[Record]:
    events, _ = simulate(days=12, seed=4, volume_scale=0.4, tools=TOOLS,
                         scenario=Scenario(model_update_day=6, sensitivity_drop_day=3,
                                           drop_tool="ich-triage", drop_to=0.3),
                         faults=Faults())
    return input_records(events, PARTITIONS)


def run(records: list[Record], unsaved: str | None = None,
        log_start: int = 0) -> tuple[dict[tuple[str, str], bytes], set[bytes]]:
    """Per (tool, day) its published figures (the `snapshots.published` record), and the
    alerts. With `unsaved`, a restart without that tool's snapshot once it has published
    `RESTART_AFTER_DAYS` days, each `cases.adjudicated` partition's log starting at
    `log_start`."""
    tables: dict[str, dict[str, Any]] = {t: {} for t in changelog.TABLES}
    engine = start(tables, None)
    published: dict[tuple[str, str], bytes] = {}
    alerts: set[bytes] = set()
    history: list[tuple[str, Any]] = []  # the case table's changelog
    logs: dict[int, list[Record]] = {}  # cases.adjudicated, per partition
    offsets: Counter[tuple[str, int]] = Counter()
    pending, clock, chunks = list(records), NOW, 0
    restarted = False
    while pending:
        if unsaved is not None and not restarted and sum(
                tool == unsaved for tool, _ in published) >= RESTART_AFTER_DAYS:
            restarted = True
            saved = tables[CASE_SNAPSHOTS]
            assert unsaved in saved
            for key in [k for k in saved if k == unsaved or (is_part(k) and k.endswith(
                    f":{unsaved}"))]:
                del saved[key]
            rewind = Rewind(saved)
            seen: dict[str, Any] = {}
            for key, value in history:
                rewind.change(key, seen.get(key), value)
                seen[key] = value
            undo, seek = rewind.undo({p: log_start for p in range(PARTITIONS)})
            for key, value in undo.items():
                if value is None:
                    tables[CASE_TABLE].pop(key, None)
                else:
                    tables[CASE_TABLE][key] = value
            again = [r for p, offset in sorted(seek.items()) for r in logs[p][offset:]]
            waiting = {id(r) for r in pending}
            pending = [r for r in again if id(r) not in waiting] + pending
            engine = start(tables, None)
            # As the runner does: the partitions read again first, then the case stage
            # rebuilt (its clock from the snapshots at or before where each is read from).
            for part, offset in seek.items():
                engine.cases.snapshots.reread(part, offset, len(logs[part]))
            engine.cases.rebuild([(k, CaseRecord.from_dict(v))
                                  for k, v in tables[CASE_TABLE].items()])
        chunk, pending = pending[:CHUNK], pending[CHUNK:]
        out = engine.process(chunk, clock, chunks * MINUTE)
        chunks += 1
        clock += timedelta(seconds=1)
        out.apply_to(tables)
        history += [(c.key, c.value) for c in out.changes if c.table == CASE_TABLE]
        for p in out.produce:
            if p.topic == topics.ALERTS:
                alerts.add(p.value)
            elif p.topic == topics.SNAPSHOTS:
                batch = SnapshotBatch.model_validate_json(p.value)
                published[batch.tool_id, batch.at.date().isoformat()] = p.value
            feed_back(p, offsets, pending, logs)
    assert restarted or unsaved is None
    out = engine.snapshot()
    for p in out.produce:
        if p.topic == topics.ALERTS:
            alerts.add(p.value)
    return published, alerts


@pytest.fixture(scope="module")
def reference() -> tuple[dict[tuple[str, str], bytes], set[bytes]]:
    return run(backlog())


@pytest.mark.parametrize("tool", TOOLS)
def test_a_tool_restarted_without_any_snapshot_publishes_every_day_as_one_run(
    reference: tuple[dict[tuple[str, str], bytes], set[bytes]], tool: str,
) -> None:
    published, alerts = run(backlog(), unsaved=tool)
    expected, expected_alerts = reference
    # Not vacuous: the tool had evaluated days before the restart, and after.
    days = sorted(day for t, day in expected if t == tool)
    assert len(days) >= 8, days
    assert sorted(published) == sorted(expected)  # the same days of every tool
    assert published == expected  # with the same figures
    assert alerts == expected_alerts and expected_alerts


def test_a_tool_whose_first_offsets_left_the_log_is_replayed_and_skips_days(
    reference: tuple[dict[tuple[str, str], bytes], set[bytes]],
) -> None:
    """What the rewind avoids, where it cannot: the log no longer holds offset 0 of the
    tool's partition (retention), so the tool is replayed from its records, and its
    evaluation goes on from its latest case day, past the days it had not published."""
    published, _ = run(backlog(), unsaved="ich-triage", log_start=1)
    expected, _ = reference
    missing = sorted(set(expected) - set(published))
    assert missing and all(tool == "ich-triage" for tool, _ in missing), missing
    assert not set(published) - set(expected)
