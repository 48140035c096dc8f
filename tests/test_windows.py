"""Windowed agreement counts against a brute-force recount of the full case history."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from surveillance.contracts import CaseOutcome
from surveillance.stats.agreement import Confusion
from surveillance.stats.intervals import StatsParameterError
from surveillance.stats.windows import AgreementWindows, Key, WindowCounts, age_band, subgroup_keys

T0 = datetime(2024, 1, 1, tzinfo=UTC)
BASE: Key = (("tool", "ich-triage"), ("version", "2.1"), ("site", "A"))
MATRIX = {CaseOutcome.TP, CaseOutcome.FP, CaseOutcome.TN, CaseOutcome.FN}


def keys_for(scanner: str) -> tuple[Key, ...]:
    return subgroup_keys(BASE, {"scanner_manufacturer": scanner})


@dataclass
class History:
    """Everything that happened, kept in full: the oracle the windows must agree with."""

    time: dict[str, datetime] = field(default_factory=dict)
    scanner: dict[str, str] = field(default_factory=dict)
    outcome: dict[str, CaseOutcome] = field(default_factory=dict)
    entry: dict[tuple[Key, str], int] = field(default_factory=dict)  # latest matrix entry
    entries: dict[Key, int] = field(default_factory=dict)


def brute_calendar(history: History, key: Key, days: int, today: int) -> WindowCounts:
    cells = dict.fromkeys(CaseOutcome, 0)
    for case, outcome in history.outcome.items():
        if key not in keys_for(history.scanner[case]):
            continue
        day = history.time[case].astimezone(UTC).toordinal()
        if today - days < day <= today:
            cells[outcome] += 1
    return WindowCounts(
        Confusion(
            cells[CaseOutcome.TP],
            cells[CaseOutcome.FP],
            cells[CaseOutcome.TN],
            cells[CaseOutcome.FN],
        ),
        cells[CaseOutcome.INDETERMINATE],
        cells[CaseOutcome.PENDING],
        cells[CaseOutcome.UNLABELLED],
    )


def brute_last_n(history: History, key: Key, last_n: int) -> WindowCounts:
    # Counted iff the case is in the matrix now and its latest entry into the matrix is
    # among the last `last_n` entries made under this key (the documented definition).
    cells = dict.fromkeys(CaseOutcome, 0)
    newest = history.entries.get(key, 0)
    for case, outcome in history.outcome.items():
        if key not in keys_for(history.scanner[case]) or outcome not in MATRIX:
            continue
        if history.entry[(key, case)] > newest - last_n:
            cells[outcome] += 1
    return WindowCounts(
        Confusion(
            cells[CaseOutcome.TP],
            cells[CaseOutcome.FP],
            cells[CaseOutcome.TN],
            cells[CaseOutcome.FN],
        ),
        0,
        0,
        0,
    )


outcomes = st.sampled_from(list(CaseOutcome))
new_case = st.tuples(
    st.just("new"),
    st.integers(min_value=0, max_value=220),  # day offset: several windows, many prunes
    st.integers(min_value=0, max_value=24 * 60 - 1),  # minute of day
    st.sampled_from(["GE", "Siemens"]),
    outcomes,
)
# A correction picks any earlier case or, as often, one of the last few (still in last N).
correction = st.tuples(st.just("fix"), st.integers(min_value=0), st.booleans(), outcomes)
operations = st.lists(st.one_of(new_case, new_case, correction), min_size=1, max_size=250)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(operations, st.integers(min_value=1, max_value=12), st.integers(min_value=0, max_value=40))
def test_windows_equal_brute_force_recount(
    ops: list[tuple[object, ...]], last_n: int, read_later_by: int
) -> None:
    windows = AgreementWindows(days=(7, 30, 90), last_n=last_n)
    history = History()
    for op in ops:
        if op[0] == "new":
            _, day, minute, scanner, outcome = op
            assert isinstance(day, int) and isinstance(minute, int)
            assert isinstance(scanner, str) and isinstance(outcome, CaseOutcome)
            case = f"case-{len(history.time)}"
            history.time[case] = T0 + timedelta(days=day, minutes=minute)
            history.scanner[case] = scanner
            previous = None
        else:
            if not history.time:
                continue
            _, pick, recent, outcome = op
            assert isinstance(pick, int) and isinstance(outcome, CaseOutcome)
            cases = list(history.time)
            span = min(len(cases), 4) if recent else len(cases)
            case = cases[len(cases) - 1 - pick % span]
            previous = history.outcome[case]
        keys = keys_for(history.scanner[case])
        windows.apply(keys, case, previous, outcome, history.time[case])
        history.outcome[case] = outcome
        if outcome in MATRIX and previous not in MATRIX:
            for key in keys:
                history.entries[key] = history.entries.get(key, 0) + 1
                history.entry[(key, case)] = history.entries[key]

    for key in {k for scanner in ("GE", "Siemens") for k in keys_for(scanner)}:
        seen = [history.time[c] for c in history.time if key in keys_for(history.scanner[c])]
        if not seen:
            assert windows.window(key, 90) == WindowCounts(Confusion(), 0, 0, 0)
            continue
        watermark = max(t.astimezone(UTC).toordinal() for t in seen)
        later = T0 + timedelta(days=watermark - T0.toordinal() + read_later_by)
        for days in (7, 30, 90):
            assert windows.window(key, days) == brute_calendar(history, key, days, watermark)
            assert windows.window(key, days, now=later) == brute_calendar(
                history, key, days, watermark + read_later_by
            )
        assert windows.window(key, "last_n") == brute_last_n(history, key, last_n)
        assert windows.memory_cells(key) <= 90 + last_n


def test_correction_moves_a_case_between_cells_without_counting_it_twice() -> None:
    windows = AgreementWindows()
    t = T0 + timedelta(hours=5)
    windows.apply([BASE], "c1", None, CaseOutcome.PENDING, t)
    assert windows.window(BASE, 7) == WindowCounts(Confusion(), 0, 1, 0)
    assert windows.window(BASE, "last_n") == WindowCounts(Confusion(), 0, 0, 0)
    windows.apply([BASE], "c1", CaseOutcome.PENDING, CaseOutcome.FN, t)
    windows.apply([BASE], "c1", CaseOutcome.FN, CaseOutcome.TP, t)  # corrected report
    assert windows.window(BASE, 7) == WindowCounts(Confusion(tp=1), 0, 0, 0)
    assert windows.window(BASE, "last_n") == WindowCounts(Confusion(tp=1), 0, 0, 0)
    windows.apply([BASE], "c1", CaseOutcome.TP, CaseOutcome.INDETERMINATE, t)
    assert windows.window(BASE, 7) == WindowCounts(Confusion(), 1, 0, 0)
    assert windows.window(BASE, "last_n") == WindowCounts(Confusion(), 0, 0, 0)


def test_last_n_keeps_the_most_recent_entries_and_shrinks_on_retraction() -> None:
    windows = AgreementWindows(last_n=3)
    for i, outcome in enumerate([CaseOutcome.TP, CaseOutcome.FN, CaseOutcome.TN, CaseOutcome.FP]):
        windows.apply([BASE], f"c{i}", None, outcome, T0)
    assert windows.window(BASE, "last_n").confusion == Confusion(fn=1, tn=1, fp=1)
    windows.apply([BASE], "c0", CaseOutcome.TP, CaseOutcome.FN, T0)  # displaced: ignored
    assert windows.window(BASE, "last_n").confusion == Confusion(fn=1, tn=1, fp=1)
    windows.apply([BASE], "c2", CaseOutcome.TN, CaseOutcome.INDETERMINATE, T0)
    assert windows.window(BASE, "last_n").confusion == Confusion(fn=1, fp=1)
    assert windows.window(BASE, 7).confusion == Confusion(fn=2, fp=1)  # calendar keeps all


def test_calendar_windows_cover_the_last_d_utc_days_and_drop_older_buckets() -> None:
    windows = AgreementWindows(days=(7, 30))
    for day in range(0, 40):
        windows.apply([BASE], f"d{day}", None, CaseOutcome.TN, T0 + timedelta(days=day))
    assert windows.window(BASE, 7).confusion == Confusion(tn=7)  # days 33..39
    assert windows.window(BASE, 30).confusion == Confusion(tn=30)
    assert windows.memory_cells(BASE) == 30 + 40  # 30 day buckets, 40 last-N entries
    windows.apply([BASE], "late", None, CaseOutcome.TP, T0 + timedelta(days=5))
    assert windows.late_ignored(BASE) == 1
    assert windows.window(BASE, 30).confusion == Confusion(tn=30)
    with pytest.raises(StatsParameterError):
        windows.window(BASE, 30, now=T0 + timedelta(days=20))  # reaches dropped days


def test_memory_stays_bounded_over_a_long_stream() -> None:
    windows = AgreementWindows(last_n=100)
    keys = keys_for("GE")
    for i in range(20_000):  # two years, ~27 cases a day
        windows.apply(keys, f"c{i}", None, CaseOutcome.TN, T0 + timedelta(minutes=53 * i))
    assert all(windows.memory_cells(key) == 90 + 100 for key in keys)


def test_case_day_is_the_utc_day() -> None:
    windows = AgreementWindows()
    plus5 = timezone(timedelta(hours=5))
    windows.apply([BASE], "a", None, CaseOutcome.TP, datetime(2024, 3, 1, 1, 0, tzinfo=plus5))
    windows.apply([BASE], "b", None, CaseOutcome.TN, datetime(2024, 3, 1, 12, 0, tzinfo=UTC))
    assert windows.window(BASE, 7).confusion == Confusion(tp=1, tn=1)
    one_day = windows.window(BASE, 7, now=datetime(2024, 2, 29, 23, 0, tzinfo=UTC))
    assert one_day.confusion == Confusion(tp=1)  # 01:00+05:00 on 1 March is 29 Feb UTC


def test_bad_arguments_raise() -> None:
    with pytest.raises(StatsParameterError):
        AgreementWindows(days=(0, 7))
    with pytest.raises(StatsParameterError):
        AgreementWindows(last_n=0)
    windows = AgreementWindows()
    with pytest.raises(StatsParameterError):
        windows.apply([BASE], "a", None, CaseOutcome.TP, datetime(2024, 1, 1))  # naive
    with pytest.raises(StatsParameterError):
        windows.window(BASE, 14)
    with pytest.raises(StatsParameterError):  # a "correction" of a case never counted
        windows.apply([BASE], "b", CaseOutcome.TP, CaseOutcome.FN, datetime(2024, 1, 1, tzinfo=UTC))


def test_subgroup_keys_and_age_bands() -> None:
    assert keys_for("GE") == (BASE, (*BASE, ("scanner_manufacturer", "GE")))
    bands = [age_band(a) for a in (None, 0, 17, 18, 39, 40, 64, 65, 79, 80, 130)]
    assert bands == [
        "unknown",
        "0-17",
        "0-17",
        "18-39",
        "18-39",
        "40-64",
        "40-64",
        "65-79",
        "65-79",
        "80+",
        "80+",
    ]
