"""A restarted bulk runner finds the case table as each tool's snapshot saw it
(`engine.rewind.Rewind`), and the case clock as it stood (`SourceWatermark.state`).

Pure: the changelog is a generated list of case-table changes, the snapshot digests are
computed from the table at generated points (`snapshots.table_digests`, as the case stage
keeps them), and the oracle is the table itself at those points.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from surveillance.clinical.ledger import CaseRecord
from surveillance.engine.horizon import summary_key
from surveillance.engine.rewind import Rewind
from surveillance.engine.snapshots import FORMAT, table_digests
from surveillance.stream.watermark import SourceWatermark

TOOLS = ("ich-triage", "pe-detect", "all")  # "all": a tool id that is also a site's
PARTITION = {"ich-triage": 0, "pe-detect": 1, "all": 0}

#: One changelog step: (tool, case number, what): "revise" (a new case or a higher
#: revision), "evict" (the record leaves the table, its count goes to its partition's
#: horizon summary) or "readmit" (a correction of an evicted case: the count leaves the
#: summary, the record comes back). As the engine writes them: the records, then the
#: summary.
step = st.tuples(st.sampled_from(TOOLS), st.integers(0, 7),
                 st.sampled_from(("revise", "revise", "revise", "evict", "readmit")))
Log = list[tuple[str, dict[str, Any] | None]]


def record(tool: str, revision: int) -> dict[str, Any]:
    return {"tool": tool, "partition": PARTITION[tool], "revision": revision,
            "outcome": "TP"}


def run(steps: list[tuple[str, int, str]]) -> tuple[Log, list[int]]:
    """The changelog the steps write, (key, value) with None for a deletion; and the
    log's length after each step (where a batch may end and a snapshot be written)."""
    table: dict[str, dict[str, Any]] = {}
    evicted: dict[int, dict[str, int]] = {}
    log: Log = []
    ends = [0]
    for tool, n, what in steps:
        key = f"{tool}/case-{n}"
        counts = evicted.setdefault(PARTITION[tool], {})
        if what == "evict" and key in table:
            del table[key]
            counts[tool] = counts.get(tool, 0) + 1
            log.append((key, None))
        elif what == "readmit" and key not in table and counts.get(tool, 0) > 0:
            counts[tool] -= 1
            table[key] = record(tool, 3)
            log.append((key, table[key]))
        elif what == "revise":
            before = table.get(key)
            table[key] = record(tool, 0 if before is None else before["revision"] + 1)
            log.append((key, table[key]))
            ends.append(len(log))
            continue
        else:
            continue
        log.append((summary_key(PARTITION[tool]), {"cutoff_day": len(log), "evicted": [
            [t, "1", "s", "TP", c] for t, c in sorted(counts.items())]}))
        ends.append(len(log))
    return log, ends


def counts_of(log: Log, tool: str) -> list[list[Any]]:
    summaries = {k: v for k, v in fold(log).items() if k.startswith("~")}
    return sorted(row for v in summaries.values() for row in v["evicted"] if row[0] == tool)


def fold(log: Log, rewind: Rewind | None = None) -> dict[str, dict[str, Any]]:
    table: dict[str, dict[str, Any]] = {}
    for key, value in log:
        if rewind is not None:
            rewind.change(key, table.get(key), value)
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    return table


def digests(table: dict[str, dict[str, Any]]) -> dict[str, int]:
    return table_digests((k, CaseRecord(**{**v, "version": "1", "site": "s", "source": None,
                                           "inference_ts": 0.0, "labelled_ts": None}))
                         for k, v in table.items() if not k.startswith("~"))


def of_tool(table: dict[str, dict[str, Any]], tool: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in table.items() if not k.startswith("~") and v["tool"] == tool}


@settings(max_examples=300, deadline=None)
@given(st.lists(step, max_size=60), st.data())
def test_the_table_is_rewound_to_each_snapshot_unless_a_record_left_after_it(
    steps: list[tuple[str, int, str]], data: st.DataObject,
) -> None:
    log, ends = run(steps)
    # Each tool's snapshot was written at some batch end, or never (None: its point is
    # then the empty table at offset 0), or could not be written ("unwritable": a marker).
    cuts = {tool: data.draw(st.one_of(st.none(), st.just("unwritable"), st.sampled_from(ends)),
                            label=tool) for tool in TOOLS}
    # Its offset: where its partition is read again from after a rewind (here the cut).
    snapshots: dict[str, dict[str, Any]] = {
        tool: {"format": FORMAT, "digest": digests(fold(log[:cut])).get(tool, 0),
               "offset": cut} for tool, cut in cuts.items() if isinstance(cut, int)}
    snapshots.update({tool: {"tool": tool, "format": FORMAT, "unwritable": True}
                      for tool, cut in cuts.items() if cut == "unwritable"})
    rewind = Rewind(snapshots)
    final = fold(log, rewind)
    table = dict(final)
    undo, seek = rewind.undo()
    for key, value in undo.items():
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    for tool in TOOLS:
        drawn = cuts[tool]
        if drawn == "unwritable":  # replayed from its records: nothing to rewind to
            assert of_tool(table, tool) == of_tool(final, tool)
            continue
        cut = 0 if drawn is None else int(drawn)
        at_cut = of_tool(fold(log[:cut]), tool)

        def moved(end: int, tool: str = tool, cut: int = cut) -> bool:
            """A record of the tool left, or its evicted counts changed, in log[cut:end]."""
            return (any(v is None and k.startswith(f"{tool}/") for k, v in log[cut:end])
                    or counts_of(log[:end], tool) != counts_of(log[:cut], tool))

        if not moved(len(log)):
            assert of_tool(table, tool) == at_cut, tool
            if at_cut != of_tool(final, tool):  # rewound: its partition is read again
                assert seek[PARTITION[tool]] <= cut
        elif any(of_tool(fold(log[:end]), tool) == at_cut and moved(end)
                 for end in range(cut + 1, len(log) + 1)):
            # An evicted case came back as new at the same revision: the digest cannot
            # tell that point from the snapshot's, either is right.
            assert of_tool(table, tool) in (of_tool(final, tool), at_cut), tool
        else:  # counts moved to or from the summary after the snapshot: not rewound
            assert of_tool(table, tool) == of_tool(final, tool), tool
    assert {k: v for k, v in table.items() if k.startswith("~")} == {
        k: v for k, v in final.items() if k.startswith("~")}  # summaries are never rewound


def test_a_rewind_never_reaches_past_an_eviction() -> None:
    """The snapshot saw case-0 and case-1 at revision 0; then case-1 was revised and case-0
    evicted (its count moved to the summary): putting case-0 back would count it twice."""
    log = [("ich-triage/case-0", record("ich-triage", 0)),
           ("ich-triage/case-1", record("ich-triage", 0))]
    snapshot = {"ich-triage": {"format": FORMAT, "digest": digests(fold(log))["ich-triage"],
                               "offset": 7}}
    log += [("ich-triage/case-1", record("ich-triage", 1)), ("ich-triage/case-0", None)]
    rewind = Rewind(snapshot)
    fold(log, rewind)
    assert rewind.undo() == ({}, {})
    # Without the eviction, the same snapshot rewinds case-1 to revision 0, and its
    # partition is read again from the snapshot's offset.
    rewind = Rewind(snapshot)
    fold(log[:3], rewind)
    assert rewind.undo() == ({"ich-triage/case-1": record("ich-triage", 0)}, {0: 7})


def test_a_snapshot_of_another_format_or_without_offset_or_unwritable_is_not_rewound_to(
) -> None:
    log = [("ich-triage/case-0", record("ich-triage", 0))]
    for saved in ({"format": FORMAT - 1, "digest": 0, "offset": 0},
                  {"format": FORMAT, "digest": 0, "offset": None},
                  {"tool": "ich-triage", "format": FORMAT, "unwritable": True}):
        rewind = Rewind({"ich-triage": saved})
        fold(log, rewind)
        assert rewind.undo() == ({}, {})


def test_a_tool_never_snapshotted_is_rewound_to_empty_unless_its_log_start_moved() -> None:
    """Killed before a tool's first snapshot (a backfill's first batches, or while its drift
    waited for a calibration: CI seed 3299872936), its records go and its partition is read
    again from offset 0; replayed, its evaluation started at its latest case day. Not when
    retention has removed the partition's first offsets: they could not be read again."""
    log = [("ich-triage/case-0", record("ich-triage", 0)),
           ("pe-detect/case-0", record("pe-detect", 0)),
           ("ich-triage/case-0", record("ich-triage", 1))]
    snapshot = {"pe-detect": {"format": FORMAT, "digest": digests(fold(log))["pe-detect"],
                              "offset": 5}}
    rewind = Rewind(snapshot)
    fold(log, rewind)
    assert rewind.undo() == ({"ich-triage/case-0": None}, {0: 0})
    assert rewind.undo({0: 0, 1: 3}) == ({"ich-triage/case-0": None}, {0: 0})
    assert rewind.undo({0: 1}) == ({}, {})


T0 = datetime(2026, 3, 1, tzinfo=UTC)
#: (source, hours after T0): a source reports the event time it has reached, in any order.
report = st.tuples(st.integers(0, 3), st.integers(-48, 24 * 30))


@settings(max_examples=300, deadline=None)
@given(st.lists(report, max_size=40), st.lists(report, max_size=40), st.data())
def test_a_restored_clock_moves_as_the_uninterrupted_one(
    before: list[tuple[int, int]], after: list[tuple[int, int]], data: st.DataObject,
) -> None:
    """The clock after a restart (from the states of several tools' snapshots, each taken
    at some point before the restart) gives the same low watermark, report by report, as
    the clock that never stopped. Within the idle time (the wall clock is still)."""
    expected = range(4)
    clock = SourceWatermark(30.0, expected, 0.0)
    states = []
    for source, hours in before:
        clock.observe(source, T0 + timedelta(hours=hours), 1.0)
        clock.low(1.0)
        if data.draw(st.booleans(), label="snapshot"):
            states.append(clock.state())
    states.append(clock.state())  # the latest snapshot: written at the batch's end
    restored = SourceWatermark.restored(30.0, data.draw(st.permutations(states)), 100.0)
    assert restored.low(100.0) == clock.low(1.0)
    for source, hours in after:
        clock.observe(source, T0 + timedelta(hours=hours), 2.0)
        restored.observe(source, T0 + timedelta(hours=hours), 101.0)
        assert restored.low(101.0) == clock.low(2.0)
