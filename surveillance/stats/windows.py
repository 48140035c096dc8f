"""Agreement counts per key over calendar windows and over the last N cases, in bounded memory.

A key is any tuple of (dimension, value) pairs, e.g.
`(("tool", "ich-triage"), ("version", "2.1"), ("site", "A"), ("sex", "F"))`; the caller
decides which keys a case counts under (`subgroup_keys` builds the usual set) and counts a
case under the same keys on every revision.

Calendar windows (default 7, 30 and 90 days). Counts live in one bucket per UTC day of the
case's time. A window of D days read at day T covers the days T-D+1 .. T. Buckets at or
before (latest day seen - longest window) can never be read again and are dropped, so
memory per key is at most one bucket per day of the longest window, whatever the stream
length. A case whose day is already dropped when it arrives is counted in `late_ignored`
and nowhere else.

Last N cases. The cases that most recently entered the confusion matrix (outcome became
TP/FP/TN/FN from none, pending, unlabelled or indeterminate), in the order they entered.
A correction between confusion outcomes (FN -> TP) changes the case in place and keeps its
place. A correction out of the matrix (TP -> indeterminate) removes the case, and the
structure then holds fewer than N until new cases enter: the case it displaced was
forgotten when displaced, because remembering it would need unbounded memory. Precisely:
a case is counted iff its current outcome is in the matrix and its latest entry is among
the last N entries made under that key.

Corrections. The caller knows each case's previous outcome (it keeps the highest revision
per case) and passes it, so a correction retracts the previous outcome from the bucket of
the case's day and adds the new one: the same case is never counted twice.

Outcomes TP/FP/TN/FN enter the confusion matrix; indeterminate, pending and unlabelled are
counted per window beside it and never enter it.

Cost. The monitor counts every case under 8 keys, so the per-case path is what matters.
The calendar counts are kept per group of keys, not per key: `group(keys)` resolves a key
set once to its `KeyGroup` (the monitor keeps the group per tool/version/site/subgroup
placement), which holds one bucket per day for the whole set, so `apply_group` costs one
list increment (a new case) or one decrement and one increment (a revision) whatever
the number of keys. A key's window is the sum of its groups' windows, computed when it
is read (once per day per key, not once per case; each group's window sums are kept
running, moved by the days that enter and leave a window, and shared by its keys:
`KeyGroup.window_rows`). Each key keeps its own latest day (the latest
of its groups'), so a key reads, drops and ignores as late exactly the days it would if
it were counted on its own. The last N of a key is a bounded deque of the entries made
under it; an entry is one small list `[column, number]` shared by every key the case
counts under, so a correction changes it once for all of them and the counts are summed
when the window is read. Only the keys whose last N is read often keep such a deque of
their own (`group(keys, kept)`: the monitor's two site keys of a placement, read every
day); the others read the latest N entries of their groups' last N, which each group
keeps in one deque for all of them. So a case entering the matrix costs three appends,
not eight (each append to a full deque also drops an entry made long ago, a cache miss).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Collection, Iterable, Mapping
from datetime import UTC, datetime

from surveillance.contracts import CaseOutcome
from surveillance.stats.intervals import StatsParameterError
from surveillance.stats.window_counts import (
    _EMPTY,
    _IN_MATRIX,
    _LEFT,
    Entry,
    _counts,
    last_n_counts,
)
from surveillance.stats.window_counts import KeyGroup as KeyGroup
from surveillance.stats.window_counts import KeyWindows as KeyWindows
from surveillance.stats.window_counts import WindowCounts as WindowCounts

Key = tuple[tuple[str, str], ...]

#: Column of each outcome in a bucket; the first four are the confusion matrix.
COLUMN: dict[CaseOutcome, int] = {
    CaseOutcome.TP: 0,
    CaseOutcome.FP: 1,
    CaseOutcome.TN: 2,
    CaseOutcome.FN: 3,
    CaseOutcome.INDETERMINATE: 4,
    CaseOutcome.PENDING: 5,
    CaseOutcome.UNLABELLED: 6,
}


def utc_day(moment: datetime) -> int:
    """Proleptic ordinal of the UTC calendar day of an aware datetime."""
    if moment.tzinfo is None:
        raise StatsParameterError("case_time must be timezone-aware (e.g. ...+00:00)")
    return moment.astimezone(UTC).toordinal()


class AgreementWindows:
    """Agreement counts for every key a case belongs to.

    Parameters
    ----------
    days
        Calendar window lengths in days.
    last_n
        Size of the last-N-cases window.
    """

    #: Not state: made again when a state snapshot is read (`engine.state_codec`).
    __derived__ = ("_containing",)

    def __init__(self, days: Iterable[int] = (7, 30, 90), last_n: int = 200) -> None:
        window_days = tuple(sorted(set(days)))
        if not window_days or window_days[0] < 1:
            raise StatsParameterError(f"window lengths must be >= 1 day, got {tuple(days)}")
        if last_n < 1:
            raise StatsParameterError(f"last_n must be >= 1, got {last_n}")
        self.days = window_days
        self.last_n = last_n
        self._keys: dict[Key, KeyWindows] = {}
        self._groups: dict[tuple[Key, ...], KeyGroup] = {}
        #: The current matrix entry of each case that may still be in some key's last N.
        self._open: dict[str, Entry] = {}
        self._open_limit = 4 * last_n
        #: How many entries were made: the next one's number.
        self._entered = 0
        #: The latest day of any key minus the longest window: a case on or before it may
        #: be too late for some of its keys (`_count_late`); after it, for none.
        self._late_day = -1 - window_days[-1]
        self.__restore_derived__()

    def __restore_derived__(self) -> None:
        #: The groups each key belongs to, found on its first read after a group is made.
        self._containing: dict[Key, list[KeyGroup]] = {}

    def group(self, keys: Iterable[Key], kept: Collection[Key] | None = None) -> KeyGroup:
        """The windows of `keys` (made on first use), to pass to `apply_group`.

        `kept`: the keys that keep their own last N entries (default: all). The others
        read their last N from their groups' (the latest N of those, by entry order): one
        append per entry for all of them, and a read that merges their groups'. A key
        whose last N is read often (the monitor's site keys, every day) keeps its own; a
        key is made kept or not on its first group, and keeps that."""
        keys = tuple(keys)
        found = self._groups.get(keys)
        if found is None:
            states = []
            for key in keys:
                state = self._keys.get(key)
                if state is None:
                    own = kept is None or key in kept
                    state = self._keys[key] = KeyWindows(self.last_n, own)
                states.append(state)
            found = self._groups[keys] = KeyGroup(tuple(states), self.days, self.last_n)
            self._containing = {}
        return found

    def apply(
        self,
        keys: Iterable[Key],
        case_id: str,
        previous: CaseOutcome | None,
        new: CaseOutcome,
        case_time: datetime,
    ) -> None:
        """Count a case (or its correction) under each of `keys`.

        `previous` is the outcome this case was last applied with, None for a new case;
        `case_time` is the case's own time (the same on every revision), which places it in
        a calendar day.
        """
        day = utc_day(case_time)
        old = None if previous is None else COLUMN[previous]
        self.apply_group(self.group(keys), case_id, old, COLUMN[new], day)

    def apply_group(
        self, group: KeyGroup, case_id: str, previous: int | None, new: int, day: int
    ) -> None:
        """`apply` with the keys resolved (`group`), outcomes as `COLUMN`s and the UTC day."""
        if day <= self._late_day:
            self._count_late(group, day)
        if day == group.watermark:
            bucket: list[int] | None = group.current
        else:
            bucket = group.buckets.get(day) or self._new_bucket(group, day)
        if previous is None:
            if bucket is not None:
                group.count_at(bucket, day, new, 1)
            if new < _IN_MATRIX:
                self._enter(group, case_id, new)
            return
        if bucket is not None:
            if bucket[previous] == 0:
                # Retracting what was never added would corrupt every window of these keys.
                raise StatsParameterError(
                    "a correction names a previous outcome that was never counted for this "
                    "case's day: pass the outcome this case was last applied with"
                )
            group.count_at(bucket, day, previous, -1)
            group.count_at(bucket, day, new, 1)
        if previous < _IN_MATRIX:
            entry = self._open.get(case_id)
            if entry is None:
                return  # displaced from every key's last N; nothing there to change
            if new < _IN_MATRIX:
                entry[0] = new
            else:
                entry[0] = _LEFT
                del self._open[case_id]
        elif new < _IN_MATRIX:
            self._enter(group, case_id, new)

    def count_revision(
        self, group: KeyGroup, case_id: str, previous: int, new: int, day: int
    ) -> None:
        """`apply_group` of a revision of a case counted at `group` on `day` (with
        `previous`): the monitor's per-case path. Its usual day (the group's latest, not
        late) in line, any other through `apply_group`."""
        bucket = group.current
        if day != group.watermark or day <= self._late_day or bucket[previous] == 0:
            self.apply_group(group, case_id, previous, new, day)  # (which raises on the last)
            return
        bucket[previous] -= 1
        bucket[new] += 1
        group.sums = None
        if previous < _IN_MATRIX:
            entry = self._open.get(case_id)
            if entry is None:
                return  # displaced from every key's last N; nothing there to change
            if new < _IN_MATRIX:
                entry[0] = new
            else:
                entry[0] = _LEFT
                del self._open[case_id]
        elif new < _IN_MATRIX:
            self._enter(group, case_id, new)

    def count_new(self, group: KeyGroup, case_id: str, new: int, day: int) -> None:
        """`apply_group` of a new case (no previous outcome): the monitor's per-case path,
        its usual steps without `apply_group`'s branches for revisions."""
        if day <= self._late_day:
            self._count_late(group, day)
        if day == group.watermark:
            group.current[new] += 1
            group.sums = None
        else:
            bucket = group.buckets.get(day) or self._new_bucket(group, day)
            if bucket is not None:
                group.count_at(bucket, day, new, 1)
        if new < _IN_MATRIX:
            self._enter(group, case_id, new)

    def _new_bucket(self, group: KeyGroup, day: int) -> list[int] | None:
        bucket = group.new_bucket(day)
        late = group.watermark - self.days[-1]
        if late > self._late_day:
            self._late_day = late
        return bucket

    def _count_late(self, group: KeyGroup, day: int) -> None:
        """Count the case in `late_ignored` of each of its keys whose longest window has
        already left its day (those keys never read that day again)."""
        longest = self.days[-1]
        for state in group.windows:
            if day <= state.watermark - longest:
                state.late_ignored += 1

    def _enter(self, group: KeyGroup, case_id: str, column: int) -> None:
        number = self._entered
        self._entered = number + 1
        entry = [column, number]
        opened = self._open
        opened[case_id] = entry
        for append in group.appends:
            append(entry)
        if len(opened) > self._open_limit:
            self._forget_displaced()

    def _forget_displaced(self) -> None:
        """Drop the entries no key's last N holds any more (amortized: the map is rebuilt
        only when it has grown to twice what the keys can hold)."""
        held = {id(entry) for entries in self._entry_deques() for entry in entries}
        self._open = {c: e for c, e in self._open.items() if id(e) in held}
        self._open_limit = 2 * len(self._open) + 4 * self.last_n

    def _entry_deques(self) -> list[deque[Entry]]:
        """Every deque of last-N entries: the keys' own and the groups'."""
        own = [state.entries for state in self._keys.values() if state.entries is not None]
        return own + [group.last for group in self._groups.values() if group.last is not None]

    def _last_entries(self, key: Key, state: KeyWindows) -> Iterable[Entry]:
        """The last N entries made under `key`: its own, or the latest N of its groups'
        (a key's last N are among its groups' last N, each group's in entry order)."""
        if state.entries is not None:
            return state.entries
        decks = [g.last for g in self._groups_of(key) if g.last]
        if len(decks) == 1:
            return decks[0]
        return heapq.nlargest(self.last_n, (e for deck in decks for e in deck),
                              key=_entry_number)

    def keys(self) -> list[Key]:
        return list(self._keys)

    def window(self, key: Key, window: int | str, now: datetime | None = None) -> WindowCounts:
        """Counts of `key` over `window`: a day count from `days`, or "last_n".

        Calendar windows end on the UTC day of `now`, by default the latest case day seen
        under this key (event time). Read at or after that day: older days may be dropped.
        """
        state = self._keys.get(key)
        if window == "last_n":
            return (last_n_counts(self._last_entries(key, state)) if state is not None
                    else _counts([0] * 7))
        if window not in self.days:
            raise StatsParameterError(
                f"unknown window {window!r}: use one of {self.days} or 'last_n'"
            )
        assert isinstance(window, int)
        if state is None or state.watermark < 0:
            return _counts([0] * 7)
        today = state.watermark if now is None else utc_day(now)
        if today - window < state.watermark - self.days[-1]:
            raise StatsParameterError(
                f"a {window}-day window ending {now} reaches days already dropped: "
                f"read it at or after the latest case day"
            )
        index = self.days.index(window)
        rows = [group.window_rows(today)[index] for group in self._groups_of(key)]
        return _counts([sum(column) for column in zip(*rows, strict=True)] if rows else _EMPTY)

    def _groups_of(self, key: Key) -> list[KeyGroup]:
        found = self._containing.get(key)
        if found is None:
            found = self._containing[key] = [
                group for keys, group in self._groups.items() if key in keys
            ]
        return found

    def memory_cells(self, key: Key) -> int:
        """Days `key` can still read that hold counts, plus its last-N entries: at most
        longest window + last_n. (The day buckets are held per group, each at most one
        per day of the longest window.)"""
        state = self._keys.get(key)
        if state is None:
            return 0
        oldest = state.watermark - self.days[-1]
        days = {day for group in self._groups_of(key) for day in group.buckets if day > oldest}
        return len(days) + len(list(self._last_entries(key, state)))

    def late_ignored(self, key: Key) -> int:
        """Cases or corrections under `key` that came after their day left the longest window."""
        state = self._keys.get(key)
        return 0 if state is None else state.late_ignored


def _entry_number(entry: Entry) -> int:
    return entry[1]


def age_band(age: int | None) -> str:
    """Age band of a patient for subgroup keys."""
    if age is None:
        return "unknown"
    if age < 18:
        return "0-17"
    if age < 40:
        return "18-39"
    if age < 65:
        return "40-64"
    if age < 80:
        return "65-79"
    return "80+"


def subgroup_keys(base: Key, subgroups: Mapping[str, str]) -> tuple[Key, ...]:
    """`base` itself plus `base` refined by each subgroup dimension on its own.

    >>> subgroup_keys((("tool", "t"),), {"sex": "F", "age_band": "65-79"})
    ((('tool', 't'),), (('tool', 't'), ('sex', 'F')), (('tool', 't'), ('age_band', '65-79')))
    """
    return (base, *((*base, (dimension, value)) for dimension, value in subgroups.items()))
