"""The windows counted per group of keys give every key exactly what counting each key on
its own gave (`tests.monitor_old_path.OldAgreementWindows`, main 7474894's per-key
windows kept as the oracle).

Streams are hypothesis-generated over overlapping key groups (the monitor's shape: a site
key and an all-sites key shared by groups, subgroup keys shared by some), with days far
apart (a group lagging the others by more than the longest window, so a key drops days
its other groups still hold, and cases arrive too late for some keys and not others),
time going backwards, corrections in and out of the matrix and retractions of cases
displaced from the last N; with every key keeping its own last N, none (each reads its
groups'), or the site keys only. After every step both must hold the same for every key:
each calendar window read at its latest day and at days after it, the last N, the late
count and the days held.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from surveillance.stats.intervals import StatsParameterError
from surveillance.stats.windows import AgreementWindows, Key
from tests.monitor_old_path import OldAgreementWindows

DAYS = (3, 7, 10)
LAST_N = 4
SITE_A: Key = (("site", "A"),)
SITE_B: Key = (("site", "B"),)
ALL: Key = (("site", "all"),)
#: Groups as the monitor makes them: (site, all sites) x (itself, a subgroup).
GROUPS: tuple[tuple[Key, ...], ...] = (
    (SITE_A, (*SITE_A, ("sex", "F")), ALL, (*ALL, ("sex", "F"))),
    (SITE_A, (*SITE_A, ("sex", "M")), ALL, (*ALL, ("sex", "M"))),
    (SITE_B, (*SITE_B, ("sex", "F")), ALL, (*ALL, ("sex", "F"))),
    (SITE_B,),
)
KEYS = sorted({key for group in GROUPS for key in group})

# One step: a new case (group, day as an offset, column) or a revision of an earlier case.
steps = st.lists(
    st.one_of(
        st.tuples(st.just("new"), st.integers(0, len(GROUPS) - 1),
                  st.integers(-15, 25), st.integers(0, 6)),
        st.tuples(st.just("revise"), st.integers(0, 10_000), st.integers(0, 6)),
    ),
    max_size=60,
)


def _held(windows: AgreementWindows | OldAgreementWindows) -> list[object]:
    out: list[object] = []
    for key in KEYS:
        out.append((windows.window(key, "last_n"), windows.late_ignored(key),
                     windows.memory_cells(key)))
        for days in DAYS:
            for ahead in (None, 0, 4, 30):
                try:
                    now = None if ahead is None else _latest(windows, key, ahead)
                    out.append(windows.window(key, days, now))
                except StatsParameterError:
                    out.append("dropped")
    return out


def _latest(windows: AgreementWindows | OldAgreementWindows, key: Key, ahead: int
            ) -> datetime:
    """The start of the day `ahead` days after the key's latest case day."""
    return datetime.fromordinal(max(_watermark(windows, key), 1) + ahead).replace(tzinfo=UTC)


def _watermark(windows: AgreementWindows | OldAgreementWindows, key: Key) -> int:
    state = windows._keys.get(key)
    return -1 if state is None else state.watermark


# Which keys keep their own last N (the others read their groups'): every key, none,
# or the monitor's choice (the site keys, each in several groups).
KEPT = (None, (), (SITE_A, SITE_B, ALL))


@pytest.mark.parametrize("kept", KEPT)
@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(steps, st.integers(0, 40))
def test_per_group_counts_equal_per_key_counts(
    kept: tuple[Key, ...] | None, ops: list[tuple[object, ...]], lag: int
) -> None:
    new = AgreementWindows(DAYS, LAST_N)
    old = OldAgreementWindows(DAYS, LAST_N)
    cases: list[tuple[int, int, int]] = []  # group, day, latest column
    base = 740_000
    for op in ops:
        if op[0] == "new":
            _, g, offset, column = op
            assert isinstance(g, int) and isinstance(offset, int) and isinstance(column, int)
            # The last group lags the others by `lag` days.
            day = base + offset - (lag if g == len(GROUPS) - 1 else 0)
            previous = None
            case = len(cases)
            cases.append((g, day, column))
        else:
            if not cases:
                continue
            _, pick, column = op
            assert isinstance(pick, int) and isinstance(column, int)
            case = pick % len(cases)
            g, day, previous = cases[case]
            cases[case] = (g, day, column)
        new.apply_group(new.group(GROUPS[g], kept), f"c{case}", previous, column, day)
        old.apply_group(old.group(GROUPS[g]), f"c{case}", previous, column, day)
        assert _held(new) == _held(old)


def test_a_correction_of_an_outcome_never_counted_raises_and_changes_nothing() -> None:
    windows = AgreementWindows(DAYS, LAST_N)
    group = windows.group(GROUPS[0])
    windows.apply_group(group, "a", None, 5, 740_000)
    before = _held(windows)
    with pytest.raises(StatsParameterError):
        windows.apply_group(group, "a", 0, 2, 740_000)  # it was counted pending, not TP
    assert _held(windows) == before
