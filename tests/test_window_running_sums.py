"""A group's running window sums (`KeyGroup.window_rows`) equal a plain recomputation.

The running sums are kept by the counts (a count off the current day adds to the sums
whose window holds its day), by the days that stop being current or are dropped, and by
the reads (a read at another day moves the sums by the days that enter and leave each
window). The oracle here adds up the group's held buckets of each window afresh: what
`window_rows` computed before the sums were kept running. Streams are
hypothesis-generated: new cases on days in and out of order (late days, days already
dropped, jumps longer than the longest window), corrections of earlier cases in and out
of the matrix, and reads at days forwards, backwards, far ahead and far behind; some
steps write the windows through the state codec and read them back (the sums are
derived: made again on reading). After every step each group read at the step's day
must equal the oracle, and so must each key's window (the sum of its groups').
"""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import example, given, settings
from hypothesis import strategies as st

from surveillance.engine import state_codec
from surveillance.stats.intervals import StatsParameterError
from surveillance.stats.window_counts import KeyGroup, KeyWindows
from surveillance.stats.windows import AgreementWindows, Key

DAYS = (3, 7, 10)
BASE = 700_000  # a proleptic ordinal: the stream's days are offsets from it
A: Key = (("site", "A"),)
B: Key = (("site", "B"),)
ALL: Key = (("site", "all"),)
GROUPS: tuple[tuple[Key, ...], ...] = ((A, ALL), (B, ALL), (A, (*A, ("sex", "F")), ALL))
CLASSES = {f"{c.__module__}.{c.__qualname__}": c
           for c in (AgreementWindows, KeyGroup, KeyWindows)}


steps = st.lists(
    st.one_of(
        # a new case: group, its day as a move from the last step's (mostly forwards,
        # sometimes back, sometimes past the longest window), outcome column
        st.tuples(st.just("new"), st.integers(0, len(GROUPS) - 1),
                  st.one_of(st.integers(-3, 4), st.integers(-15, 15)), st.integers(0, 6)),
        # a correction of an earlier case: which one, its new column
        st.tuples(st.just("revise"), st.integers(0, 10_000), st.integers(0, 6)),
        # a read of every group and key at a move from the last step's day (any
        # direction, any distance)
        st.tuples(st.just("read"), st.integers(-25, 25)),
        # the windows written through the state codec and read back
        st.tuples(st.just("restore"),),
    ),
    max_size=100,
)


def _plain_rows(group: KeyGroup, today: int) -> list[list[int]]:
    """Each window's sum of the group's held buckets, added up afresh."""
    rows = []
    for days in group.days:
        picked = [bucket for day, bucket in group.buckets.items() if today - days < day <= today]
        rows.append([sum(column) for column in zip(*picked, strict=True)] if picked
                    else [0] * 7)
    return rows


def _check(windows: AgreementWindows, today: int) -> None:
    groups = [windows.group(keys) for keys in GROUPS if keys in windows._groups]
    for group in groups:
        assert group.window_rows(today) == _plain_rows(group, today)
        assert group.window_rows(today) == _plain_rows(group, today)  # the cached read
    now = datetime.fromordinal(today).replace(tzinfo=UTC)
    for key in list(windows.keys()):
        for days in DAYS:
            index = DAYS.index(days)
            mine = [_plain_rows(g, today)[index] for g in windows._groups_of(key)]
            expected = [sum(column) for column in zip(*mine, strict=True)]
            try:
                counts = windows.window(key, days, now)
            except StatsParameterError:
                continue  # days already dropped for this key: not readable
            c = counts.confusion
            assert [c.tp, c.fp, c.tn, c.fn, counts.indeterminate, counts.pending,
                    counts.unlabelled] == expected


@settings(max_examples=300, deadline=None)
@given(steps)
# A day dropped inside the window of the sums' day: in order (days 0, 5, 10), and after a
# late day (0, 8, 3, 11: the drop of an unordered group's days); the sums must take it out.
@example([("new", 0, 0, 2), ("new", 0, 5, 2), ("new", 0, 5, 1)])
@example([("new", 0, 0, 2), ("new", 0, 8, 2), ("new", 0, -5, 3), ("new", 0, 8, 0)])
def test_running_window_sums_equal_a_plain_recomputation(
    stream: list[tuple[object, ...]],
) -> None:
    windows = AgreementWindows(DAYS, last_n=3)
    cases: list[tuple[str, int, int, int]] = []  # (case id, group, day, column) as counted
    today = BASE
    for number, step in enumerate(stream):
        kind = step[0]
        if kind == "new":
            _, g, offset, column = step
            assert isinstance(g, int) and isinstance(offset, int) and isinstance(column, int)
            case_id, day = f"c{number}", today + offset
            windows.apply_group(windows.group(GROUPS[g]), case_id, None, column, day)
            cases.append((case_id, g, day, column))
            today = day
        elif kind == "revise" and cases:
            _, which, column = step
            assert isinstance(which, int) and isinstance(column, int)
            at = which % len(cases)
            case_id, g, day, before = cases[at]
            group = windows.group(GROUPS[g])
            if day <= group.watermark - DAYS[-1]:
                continue  # its day was dropped: the monitor's path never gets here
            windows.apply_group(group, case_id, before, column, day)
            cases[at] = (case_id, g, day, column)
            today = day
        elif kind == "read":
            offset = step[1]
            assert isinstance(offset, int)
            today += offset
        elif kind == "restore":
            value = state_codec.encode(windows, CLASSES, {})
            windows = state_codec.decode(value, CLASSES, {})
        _check(windows, today)
