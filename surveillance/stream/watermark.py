"""The event-time clock of the tool-keyed case stream: a low watermark over its sources.

Cases reach the case agent from every join partition, interleaved as the join side read
its input. Live, the partitions move together in event time. Reading a backlog (a worker
catching up after an outage, a historical backfill, a bulk replay) they do not: the
consumer fetches each partition in chunks, so one partition can be a week of event time
ahead of another. A clock that follows the latest event time seen then closes days
before the lagging partitions have delivered them, and their cases land in later days'
windows: small, mixed windows and false drift alarms, exactly when on-call is busiest.

`SourceWatermark` keeps, per source (join partition), the latest event time it reported,
and gives the minimum over the active sources: the point in event time every active
source has reached. A source that has gone quiet (caught up, or no traffic) stops holding
the clock back once it has been silent for `idle_seconds` of wall time and is at least
`idle_lag` (the evaluation grace, a day) behind the latest source in event time; with
sparse live traffic the clock then follows the latest event time seen, a day behind at
most. Both, because wall time alone made the clock depend on timing: at the end of a
stream (or of a backlog) a partition read 30 s after the others had stopped holding the
clock back and a day could be evaluated before its cases were read, in one run and not
in the next. Sources a few hours apart (the usual end of a stream) now all hold it, and
the grace keeps the daily evaluation on time (a day's end plus the grace is past a
source a grace behind it). Sources
`expected` but not heard from yet (every join partition, after an assignment) hold the
clock where it is until they report or `idle_seconds` pass: the first partition read
after a restart must not move the clock past the others. The clock never moves backwards.

`EventClock` is the clock of one join partition, upstream of all this: it times the join's
`unlabelled` horizon and retention, and its AI-result twin is the `join-ai-watermark` a
case carries. No single event can move it: it advances to the earliest event time of the
partition's last `support` (16) events, so it moves only as far as that many consecutive
events agree, and each event time is first capped at the arrival clock (the worker's wall
clock plus the allowed skew). One live, now-dated event read in the middle of a backfill
is one of the sixteen: it moves nothing, and the backlog's pending cases are not expired
as `unlabelled` nor their join state purged (with the old rule, the latest event time
seen, that one event expired 1,022 of 12,281 backfilled cases). Once the backfill is
read, live events alone are the last sixteen and the clock follows them. After an
assignment the clock is restored from the join table by the same rule: the sixteenth
latest event time stored in the partition.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

#: Kafka headers on `cases.adjudicated`: the join partition a case comes from and the
#: event time that partition's AI results have reached when the case was emitted.
SOURCE_HEADER, WATERMARK_HEADER = "join-partition", "join-ai-watermark"
#: Cases from a producer that sent no source headers: one source of their own, at each
#: case's own AI result time (headers present but unreadable: see `stream.internal`).
UNKNOWN_SOURCE = -1


#: Consecutive events of a join partition that must agree before its clock moves.
SUPPORT = 16


class EventClock:
    """The event time of one join partition, which no single event can move (see above)."""

    def __init__(self, skew: timedelta, support: int = SUPPORT) -> None:
        if support < 1:
            raise ValueError("support must be at least 1")
        self.skew = skew
        self.support = support
        self._recent: deque[datetime] = deque(maxlen=support)
        #: The least of `_recent` once it is full (kept as events come: the join observes
        #: every input event, and a `min` over the window each time was most of it).
        self._least: datetime | None = None
        self._at: datetime | None = None

    @property
    def at(self) -> datetime | None:
        """None until `support` events have been observed (or restored)."""
        return self._at

    def observe(self, at: datetime, now: datetime) -> None:
        """An event of event time `at` arrived at wall time `now`."""
        value = min(at, now + self.skew)
        recent = self._recent
        least = self._least
        if least is None:
            recent.append(value)
            if len(recent) == self.support:
                self._least = least = min(recent)
                self._advance(least)
            return
        dropped = recent[0]
        recent.append(value)
        if dropped == least:  # the least may have left the window
            least = min(recent)
        elif value < least:
            least = value
        self._least = least
        self._advance(least)

    def restore(self, times: Iterable[datetime], now: datetime) -> None:
        """Set the clock from stored event times: the `support`-th latest of them."""
        latest = heapq.nlargest(self.support, (min(t, now + self.skew) for t in times))
        if len(latest) == self.support:
            self._advance(latest[-1])

    def state(self) -> dict[str, Any]:
        """Everything the clock goes on from: its recent event times (as capped) and where
        it is. `load` gives the same clock back, in another process."""
        return {"recent": [t.isoformat() for t in self._recent],
                "at": None if self._at is None else self._at.isoformat()}

    def load(self, state: Mapping[str, Any]) -> None:
        """Become the clock `state` describes (`state`): it then moves, event by event, as
        the clock that wrote it would have."""
        self._recent.clear()
        self._recent.extend(datetime.fromisoformat(t) for t in state["recent"])
        self._at = None if state["at"] is None else datetime.fromisoformat(state["at"])
        self._least = min(self._recent) if len(self._recent) == self.support else None

    def _advance(self, candidate: datetime) -> None:
        if self._at is None or candidate > self._at:
            self._at = candidate


def source_headers(partition: int, reached: datetime) -> dict[str, bytes]:
    return {SOURCE_HEADER: str(partition).encode(),
            WATERMARK_HEADER: reached.astimezone(UTC).isoformat().encode()}


#: How far in event time a quiet source must be behind the latest one before it stops
#: holding the clock back (`SourceWatermark`): the evaluation grace's default.
IDLE_LAG = timedelta(days=1)


class SourceWatermark:
    def __init__(
        self, idle_seconds: float, expected: Iterable[int] = (), now: float = 0.0,
        idle_lag: timedelta = IDLE_LAG,
    ) -> None:
        """`expected`: sources to wait for from wall time `now` (monotonic s)."""
        if idle_seconds <= 0:
            raise ValueError("idle_seconds must be positive")
        self.idle_seconds = idle_seconds
        self.idle_lag = idle_lag
        self._sources: dict[int, tuple[datetime, float]] = {}
        self._pending = dict.fromkeys(expected, now)
        self._low: datetime | None = None
        #: The `now` `low` last worked from, and whether a source changed since: `low` is
        #: asked once per case record, and its answer is the same until one of them moves.
        self._asked: float | None = None
        self._changed = True

    def observe(self, source: int, at: datetime, now: float) -> None:
        """`source` has reached event time `at`, as of wall time `now` (monotonic s)."""
        if self._pending and self._pending.pop(source, None) is not None:
            self._changed = True
        seen = self._sources.get(source)
        if seen is None or at > seen[0]:
            self._sources[source] = (at, now)
            self._changed = True
        elif seen[1] != now:
            self._sources[source] = (seen[0], now)
            self._changed = True

    def low(self, now: float) -> datetime | None:
        """The event time all sources have reached but those quiet for over `idle_seconds`
        of `now` and at least `idle_lag` behind the latest; None before any source has
        reported."""
        if not self._changed and now == self._asked:
            return self._low
        self._changed, self._asked = False, now
        if self._pending:
            self._pending = {s: t for s, t in self._pending.items()
                             if now - t <= self.idle_seconds}
        if self._pending or not self._sources:
            return self._low
        top = max(at for at, _ in self._sources.values())
        active = [at for at, heard in self._sources.values()
                  if now - heard <= self.idle_seconds or top - at < self.idle_lag]
        candidate = min(active) if active else max(at for at, _ in self._sources.values())
        if self._low is None or candidate > self._low:
            self._low = candidate
        return self._low

    def state(self) -> dict[str, object]:
        """What a restart needs to give the same clock (`engine.snapshots`): each source's
        event time and the clock; not the wall times, which mean nothing in another
        process (a restored source counts as heard from at the restore)."""
        return {"sources": [[s, at.isoformat()] for s, (at, _) in sorted(self._sources.items())],
                "pending": sorted(self._pending),
                "low": None if self._low is None else self._low.isoformat()}

    @classmethod
    def restored(cls, idle_seconds: float, saved: list[dict[str, Any]], now: float,
                 idle_lag: timedelta = IDLE_LAG) -> SourceWatermark:
        """The clock again from `state`s (each of the partition's tools' snapshots holds
        one, as of its own writing): each source at its latest event time (they only
        grow), pending only where every state still waited for it."""
        clock = cls(idle_seconds, idle_lag=idle_lag)
        pending: set[int] | None = None
        for state in saved:
            for source, iso in state["sources"]:
                at = datetime.fromisoformat(iso)
                seen = clock._sources.get(source)
                clock._sources[source] = (at if seen is None else max(at, seen[0]), now)
            waited = set(state["pending"])
            pending = waited if pending is None else pending & waited
            if state["low"] is not None:
                low = datetime.fromisoformat(state["low"])
                if clock._low is None or low > clock._low:
                    clock._low = low
        clock._pending = {s: now for s in sorted(pending or ()) if s not in clock._sources}
        return clock
