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

Cost. The monitor counts every case under 8 keys, so the per-case path is what matters:
`group(keys)` resolves a key set once to its `KeyWindows` (the monitor keeps the group per
tool/version/site/subgroup placement), and `apply_group` then costs one list increment per
key when the case falls on the key's latest day. The last N of a key is a bounded deque of
the entries made under it; an entry is one small list `[column]` shared by every key the
case counts under, so a correction changes it once for all of them and the counts are
summed when the window is read (once per day per key, not once per case).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from surveillance.contracts import CaseOutcome
from surveillance.stats.agreement import Confusion
from surveillance.stats.intervals import StatsParameterError

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
_IN_MATRIX = 4  # columns below this index are TP, FP, TN, FN
#: The column of an entry whose case has since left the matrix: counted nowhere.
_LEFT = 7

#: One entry into the confusion matrix: `[column]`, shared by the keys of its case.
Entry = list[int]


@dataclass(frozen=True, slots=True)
class WindowCounts:
    """One window of one key: the confusion matrix and the cases kept out of it."""

    confusion: Confusion
    indeterminate: int
    pending: int
    unlabelled: int


def _counts(row: Sequence[int]) -> WindowCounts:
    return WindowCounts(
        Confusion(tp=row[0], fp=row[1], tn=row[2], fn=row[3]),
        indeterminate=row[4],
        pending=row[5],
        unlabelled=row[6],
    )


def utc_day(moment: datetime) -> int:
    """Proleptic ordinal of the UTC calendar day of an aware datetime."""
    if moment.tzinfo is None:
        raise StatsParameterError("case_time must be timezone-aware (e.g. ...+00:00)")
    return moment.astimezone(UTC).toordinal()


class KeyWindows:
    """Windows of one key. Usually reached through `AgreementWindows`."""

    __slots__ = ("_days", "_entries", "_ordered", "buckets", "current", "late_ignored",
                 "watermark")

    def __init__(self, days: tuple[int, ...], last_n: int) -> None:
        self._days = days
        #: Counts per UTC day (ordinal) still readable, in `COLUMN` order.
        self.buckets: dict[int, list[int]] = {}
        #: True while `buckets` was filled in increasing day order (no late day since the
        #: last full drop): the days to drop are then its first ones.
        self._ordered = True
        #: Latest UTC day seen under this key, and its bucket.
        self.watermark = -1
        self.current: list[int] = [0] * 7
        self._entries: deque[Entry] = deque(maxlen=last_n)
        self.late_ignored = 0

    def new_bucket(self, day: int) -> list[int] | None:
        """A bucket for `day`, which has none; None (and counted late) if already dropped."""
        watermark = self.watermark
        buckets = self.buckets
        if day > watermark:
            self.watermark = day
            horizon = day - self._days[-1]
            if self._ordered:
                # Once per key and day: look at the oldest days only, not all 90.
                while buckets:
                    first = next(iter(buckets))
                    if first > horizon:
                        break
                    del buckets[first]
            else:
                for old in [d for d in buckets if d <= horizon]:
                    del buckets[old]
                buckets = self.buckets = dict(sorted(buckets.items()))
                self._ordered = True
            bucket = self.current = buckets[day] = [0, 0, 0, 0, 0, 0, 0]
            return bucket
        if day <= watermark - self._days[-1]:
            self.late_ignored += 1
            return None
        bucket = buckets[day] = [0, 0, 0, 0, 0, 0, 0]
        self._ordered = False
        return bucket

    @property
    def entries(self) -> deque[Entry]:
        return self._entries

    def calendar(self, days: int, today: int) -> WindowCounts:
        first = today - days + 1
        rows = [bucket for day, bucket in self.buckets.items() if first <= day <= today]
        if not rows:
            return _counts([0] * 7)
        return _counts([sum(column) for column in zip(*rows, strict=True)])

    def last_n(self) -> WindowCounts:
        row = [0] * 8
        for entry in self._entries:
            row[entry[0]] += 1
        return _counts([*row[:_IN_MATRIX], 0, 0, 0])

    def memory_cells(self) -> int:
        return len(self.buckets) + len(self._entries)


class KeyGroup:
    """The `KeyWindows` of one set of keys, and the deques of their last N entries."""

    __slots__ = ("appends", "entries", "windows")
    #: Not state: made again from `entries` when a state snapshot is read
    #: (`engine.state_codec`).
    __derived__ = ("appends",)

    def __init__(self, windows: tuple[KeyWindows, ...]) -> None:
        self.windows = windows
        self.entries = tuple(w.entries for w in windows)
        self.__restore_derived__()

    def __restore_derived__(self) -> None:
        #: Each deque's bound `append`, looked up once rather than once per case and key.
        self.appends = tuple(entries.append for entries in self.entries)


class AgreementWindows:
    """Agreement counts for every key a case belongs to.

    Parameters
    ----------
    days
        Calendar window lengths in days.
    last_n
        Size of the last-N-cases window.
    """

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

    def group(self, keys: Iterable[Key]) -> KeyGroup:
        """The windows of `keys` (made on first use), to pass to `apply_group`."""
        keys = tuple(keys)
        found = self._groups.get(keys)
        if found is None:
            states = []
            for key in keys:
                state = self._keys.get(key)
                if state is None:
                    state = self._keys[key] = KeyWindows(self.days, self.last_n)
                states.append(state)
            found = self._groups[keys] = KeyGroup(tuple(states))
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
        if previous is None:
            for state in group.windows:
                if day == state.watermark:
                    state.current[new] += 1
                else:
                    bucket = state.buckets.get(day) or state.new_bucket(day)
                    if bucket is not None:
                        bucket[new] += 1
            if new < _IN_MATRIX:
                self._enter(group, case_id, new)
            return
        for state in group.windows:
            if day == state.watermark:
                bucket = state.current
            else:
                bucket = state.buckets.get(day) or state.new_bucket(day)
                if bucket is None:
                    continue
            if bucket[previous] == 0:
                # Retracting what was never added would corrupt every window of this key.
                raise StatsParameterError(
                    "a correction names a previous outcome that was never counted for this "
                    "case's day: pass the outcome this case was last applied with"
                )
            bucket[previous] -= 1
            bucket[new] += 1
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

    def _enter(self, group: KeyGroup, case_id: str, column: int) -> None:
        entry = [column]
        opened = self._open
        opened[case_id] = entry
        for append in group.appends:
            append(entry)
        if len(opened) > self._open_limit:
            self._forget_displaced()

    def _forget_displaced(self) -> None:
        """Drop the entries no key's last N holds any more (amortized: the map is rebuilt
        only when it has grown to twice what the keys can hold)."""
        held = {id(entry) for state in self._keys.values() for entry in state.entries}
        self._open = {c: e for c, e in self._open.items() if id(e) in held}
        self._open_limit = 2 * len(self._open) + 4 * self.last_n

    def keys(self) -> list[Key]:
        return list(self._keys)

    def window(self, key: Key, window: int | str, now: datetime | None = None) -> WindowCounts:
        """Counts of `key` over `window`: a day count from `days`, or "last_n".

        Calendar windows end on the UTC day of `now`, by default the latest case day seen
        under this key (event time). Read at or after that day: older days may be dropped.
        """
        state = self._keys.get(key)
        if window == "last_n":
            return state.last_n() if state is not None else _counts([0] * 7)
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
        return state.calendar(window, today)

    def memory_cells(self, key: Key) -> int:
        """Day buckets plus last-N entries held for `key`: at most longest window + last_n."""
        state = self._keys.get(key)
        return 0 if state is None else state.memory_cells()

    def late_ignored(self, key: Key) -> int:
        """Cases or corrections under `key` that came after their day left the longest window."""
        state = self._keys.get(key)
        return 0 if state is None else state.late_ignored


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
