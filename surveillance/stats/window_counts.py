"""The counts behind `stats.windows`: per group of keys, per day, and its last N entries;
per key, its latest day, its late count and (if it keeps them) its own last N entries.

A group is a set of keys that cases count under together (the monitor's 8 keys of one
placement); its day buckets count for all of them at once. `AgreementWindows` reads a
key's calendar window as the sum of its groups' (`KeyGroup.window_rows`), and the last N
of a key that keeps no entries of its own as the latest N of its groups' last N.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from surveillance.stats.agreement import Confusion

_IN_MATRIX = 4  # columns below this index are TP, FP, TN, FN
#: The column of an entry whose case has since left the matrix: counted nowhere.
_LEFT = 7

#: One entry into the confusion matrix: `[column, number]`, shared by the keys and the
#: group of its case; numbers increase in the order entries are made.
Entry = list[int]


@dataclass(frozen=True, slots=True)
class WindowCounts:
    """One window of one key: the confusion matrix and the cases kept out of it."""

    confusion: Confusion
    indeterminate: int
    pending: int
    unlabelled: int


#: An empty group's window (never changed: a window's sum is a new list).
_EMPTY = [0] * 7


def _counts(row: Sequence[int]) -> WindowCounts:
    return WindowCounts(
        Confusion(tp=row[0], fp=row[1], tn=row[2], fn=row[3]),
        indeterminate=row[4],
        pending=row[5],
        unlabelled=row[6],
    )


def last_n_counts(entries: Iterable[Entry]) -> WindowCounts:
    """The last-N window of these entries (those since left the matrix count nowhere)."""
    row = [0] * 8
    for entry in entries:
        row[entry[0]] += 1
    return _counts([*row[:_IN_MATRIX], 0, 0, 0])


class KeyWindows:
    """What one key holds of its own: its latest day, its late count and, if it keeps
    them, its last N entries (else they are read from its groups'). Its day counts are
    those of the groups it belongs to (`KeyGroup`)."""

    __slots__ = ("_entries", "late_ignored", "watermark")

    def __init__(self, last_n: int, kept: bool = True) -> None:
        #: Latest UTC day of a case counted under this key.
        self.watermark = -1
        self._entries: deque[Entry] | None = deque(maxlen=last_n) if kept else None
        self.late_ignored = 0

    @property
    def entries(self) -> deque[Entry] | None:
        """The key's own last N entries; None if it keeps none (`AgreementWindows.group`)."""
        return self._entries


class KeyGroup:
    """One set of keys that cases count under together (a placement's 8 keys), with that
    set's counts per day, its own last N entries (when some of its keys keep none) and the
    deques of its keys' that keep theirs.

    Counts per UTC day (ordinal) still readable, in `COLUMN` order. The group drops a day
    once it is at or before (its own latest day - longest window); a key's latest day is
    the latest of its groups', so every day a key can still read is held by each of its
    groups.

    Window sums kept running (`window_rows`): per calendar window, the sum of the held
    buckets in the window ending on an anchor day, the current bucket (the latest day's,
    where nearly every count lands) left out. A count in the current bucket changes no
    sum; a count in another day's bucket (a late case, a correction of an earlier day)
    adds to the sums whose window holds that day; a day that stops being current is added
    in, a dropped day taken out. A read at another day moves the anchor: the days that
    enter and leave each window, not every held day (a window read a day later costs two
    bucket look-ups, whatever the history). The sums are derived: made again from the
    buckets when a snapshot is read.
    """

    __slots__ = ("_anchor", "_ordered", "_rows", "appends", "buckets", "current", "days",
                 "entries", "last", "sums", "watermark", "windows")
    #: Not state: made again when a state snapshot is read (`engine.state_codec`).
    __derived__ = ("_anchor", "_rows", "appends", "sums")

    def __init__(self, windows: tuple[KeyWindows, ...], days: tuple[int, ...], last_n: int
                 ) -> None:
        self.windows = windows
        self.days = days
        #: The group's last N entries, from which its keys that keep none read theirs:
        #: one append per entry for all of them (a key's last N are among its groups').
        self.last: deque[Entry] | None = (
            deque(maxlen=last_n) if any(w.entries is None for w in windows) else None
        )
        kept = tuple(w.entries for w in windows if w.entries is not None)
        self.entries = kept if self.last is None else (self.last, *kept)
        self.buckets: dict[int, list[int]] = {}
        #: True while `buckets` was filled in increasing day order (no late day since the
        #: last full drop): the days to drop are then its first ones.
        self._ordered = True
        #: Latest UTC day counted in this group, and its bucket.
        self.watermark = -1
        self.current: list[int] = [0] * 7
        self.__restore_derived__()

    def __restore_derived__(self) -> None:
        #: Each deque's bound `append`, looked up once rather than once per case and key.
        self.appends = tuple(entries.append for entries in self.entries)
        #: (day, one row per calendar window ending that day), until the next count.
        self.sums: tuple[int, list[list[int]]] | None = None
        #: The running sums (see the class docstring): per window, the held buckets of
        #: the window ending on `_anchor` other than the current one; None until read.
        self._anchor: int | None = None
        self._rows: list[list[int]] = []

    def count_at(self, bucket: list[int], day: int, column: int, delta: int) -> None:
        """Add `delta` to `column` of `bucket` (the held bucket of `day`), keeping the
        running sums: the per-case path's counts in the current bucket need not call this."""
        bucket[column] += delta
        self.sums = None
        anchor = self._anchor
        if anchor is None or day == self.watermark or day > anchor:
            return
        for days, row in zip(self.days, self._rows, strict=True):
            if day > anchor - days:
                row[column] += delta

    def _retire(self, day: int, bucket: list[int], sign: int) -> None:
        """Add (`sign` 1) or take out (-1) a non-current held bucket in the running sums."""
        anchor = self._anchor
        if anchor is None or day > anchor:
            return
        for days, row in zip(self.days, self._rows, strict=True):
            if day > anchor - days:
                for column, count in enumerate(bucket):
                    if count:
                        row[column] += sign * count

    def new_bucket(self, day: int) -> list[int] | None:
        """A bucket for `day`, which has none; None if already dropped."""
        watermark = self.watermark
        buckets = self.buckets
        if day > watermark:
            if watermark in buckets:  # no longer current: in the running sums from now
                self._retire(watermark, buckets[watermark], 1)
            self.watermark = day
            for state in self.windows:
                if day > state.watermark:
                    state.watermark = day
            horizon = day - self.days[-1]
            if self._ordered:
                # Once per group and day: look at the oldest days only, not all 90.
                while buckets:
                    first = next(iter(buckets))
                    if first > horizon:
                        break
                    self._retire(first, buckets.pop(first), -1)
            else:
                for old in [d for d in buckets if d <= horizon]:
                    self._retire(old, buckets.pop(old), -1)
                buckets = self.buckets = dict(sorted(buckets.items()))
                self._ordered = True
            bucket = self.current = buckets[day] = [0, 0, 0, 0, 0, 0, 0]
            return bucket
        if day <= watermark - self.days[-1]:
            return None
        bucket = buckets[day] = [0, 0, 0, 0, 0, 0, 0]
        self._ordered = False
        return bucket

    def window_rows(self, today: int) -> list[list[int]]:
        """The group's counts over each calendar window ending on `today` (cached until
        the next count: a daily evaluation reads each group under several keys)."""
        sums = self.sums
        if sums is not None and sums[0] == today:
            return sums[1]
        if self._anchor != today:
            self._move(today)
        watermark, current = self.watermark, self.current
        rows = []
        for days, row in zip(self.days, self._rows, strict=True):
            if today - days < watermark <= today and watermark in self.buckets:
                rows.append([a + b for a, b in zip(row, current, strict=True)])
            else:
                rows.append(row[:])
        self.sums = (today, rows)
        return rows

    def _move(self, today: int) -> None:
        """Move the running sums' anchor to `today`: per window, the days that enter and
        leave it, or the whole window again when it moved by its length or more."""
        anchor, buckets, watermark = self._anchor, self.buckets, self.watermark
        if anchor is None:
            self._rows = [self._sum(today - days + 1, today) for days in self.days]
            self._anchor = today
            return
        get = buckets.get
        for index, days in enumerate(self.days):
            if abs(today - anchor) >= days:
                self._rows[index] = self._sum(today - days + 1, today)
                continue
            row = self._rows[index]
            if today > anchor:
                entering, leaving = range(anchor + 1, today + 1), range(anchor - days + 1,
                                                                       today - days + 1)
            else:
                entering, leaving = range(today - days + 1, anchor - days + 1), range(
                    today + 1, anchor + 1)
            for sign, span in ((1, entering), (-1, leaving)):
                for day in span:
                    if day != watermark:
                        bucket = get(day)
                        if bucket is not None:
                            for column, count in enumerate(bucket):
                                if count:
                                    row[column] += sign * count
        self._anchor = today

    def _sum(self, first: int, last: int) -> list[int]:
        """The held buckets of days first .. last, the current one left out."""
        watermark = self.watermark
        picked = [bucket for day, bucket in self.buckets.items()
                  if first <= day <= last and day != watermark]
        return [sum(column) for column in zip(*picked, strict=True)] if picked else [0] * 7
