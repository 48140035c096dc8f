"""The worker's rewind reads the case table's changelog as `Held` records (three fields and
an offset, `stream.case_history`) instead of whole values, and reads the values it puts
back again at their offsets: the same rewind as over the whole values (the bulk runner's
`engine.rewind.Rewind` over `bulk.changelog.restore`'s table).

Pure: the generated changelogs and snapshots of `tests/test_snapshot_rewind.py`, encoded
as the changelog holds them; the oracle is `Rewind` fed the whole values.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from surveillance.bulk import changelog
from surveillance.engine.rewind import Rewind
from surveillance.engine.snapshots import FORMAT
from surveillance.stream.case_history import Follower, Held
from tests.test_snapshot_rewind import TOOLS, digests, fold, run, step


@settings(max_examples=300, deadline=None)
@given(st.lists(step, max_size=60), st.data())
def test_a_rewind_over_held_records_puts_back_what_one_over_whole_values_does(
    steps: list[tuple[str, int, str]], data: st.DataObject,
) -> None:
    log, ends = run(steps)
    cuts = {tool: data.draw(st.one_of(st.none(), st.sampled_from(ends)), label=tool)
            for tool in TOOLS}
    snapshots = {tool: {"format": FORMAT, "digest": digests(fold(log[:cut])).get(tool, 0),
                        "offset": cut} for tool, cut in cuts.items() if cut is not None}
    whole = Rewind(snapshots)
    fold(log, whole)
    held = Rewind(snapshots)
    follower = Follower(held.change)
    encoded = [changelog.encode(key, value) for key, value in log]
    for offset, (key, value) in enumerate(encoded):
        follower.take(offset, key, value)
    expected, expected_seek = whole.undo()
    undo, seek = held.undo()
    assert seek == expected_seek
    read_again: dict[str, Any] = {}
    for key, value in undo.items():
        if isinstance(value, Held):
            written_key, written = log[value.offset]  # the record at its offset
            assert written_key == key and written is not None
            value = written
        read_again[key] = value
    assert read_again == expected
    # What the follower holds is one small record per live key, not the values.
    assert set(follower.state) == set(fold(log))
    assert all(isinstance(v, Held) for k, v in follower.state.items() if not k.startswith("~"))


def test_a_held_record_reads_as_a_case_record_and_skips_its_features() -> None:
    value = {"tool": "ich-triage", "partition": 3, "revision": 2, "outcome": "TP",
             "features": {"kvp": 120.0, "manufacturer": "GE"}, "site": "Main Campus"}
    states: list[Any] = []
    follower = Follower(lambda key, before, after: states.append((key, before, after)))
    follower.take(41, *changelog.encode("case-1", value))
    follower.take(42, *changelog.encode("case-1", {**value, "revision": 3}))
    follower.take(43, *changelog.encode("case-1", None))
    follower.take(44, None, b"{}")  # no key: not a table record
    (_, none, first), (_, again, second), (_, last, gone) = states
    assert none is None and again is first and last is second and gone is None
    assert (first["tool"], first["partition"], first["revision"], first.offset) == (
        "ich-triage", 3, 2, 41)
    assert (second["revision"], second.offset) == (3, 42)
    assert not hasattr(first, "__dict__")  # slots only: no features kept
    assert follower.state == {}
