"""The event-time clock of the tool-keyed case stream: a low watermark over its sources.

Cases reach the case agent from every join partition, interleaved as the join side read
its input. Live, the partitions move together in event time. Reading a backlog (a worker
catching up after an outage, a historical backfill, a bulk replay) they do not: the
consumer fetches each partition in chunks, so one partition can be a week of event time
ahead of another. A clock that follows the latest event time seen then closes days
before the lagging partitions have delivered them, and their cases land in later days'
windows: small, mixed windows and false drift alarms, exactly when on-call is busiest.

`SourceWatermark` keeps, per source (join partition), the latest event time it reported,
and gives the minimum over the sources heard from within the last `idle_seconds` of wall
time: the point in event time every active source has reached. A source that has gone
quiet (caught up, or no traffic) stops holding the clock back after `idle_seconds`; with
sparse live traffic the clock is then the latest event time seen, as before. Sources
`expected` but not heard from yet (every join partition, after an assignment) hold the
clock where it is until they report or `idle_seconds` pass: the first partition read
after a restart must not move the clock past the others. The clock never moves backwards.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

#: Kafka headers on `cases.adjudicated`: the join partition a case comes from and the
#: event time that partition's AI results have reached when the case was emitted.
SOURCE_HEADER, WATERMARK_HEADER = "join-partition", "join-ai-watermark"
#: Cases from a producer that sent no (or unreadable) source headers: one source of their
#: own, at each case's own AI result time.
UNKNOWN_SOURCE = -1


def source_headers(partition: int, reached: datetime) -> dict[str, bytes]:
    return {SOURCE_HEADER: str(partition).encode(),
            WATERMARK_HEADER: reached.astimezone(UTC).isoformat().encode()}


def read_source(headers: Any, fallback: datetime) -> tuple[int, datetime]:
    """(source, event time it has reached) from a message's headers (a sequence of
    (name, bytes) pairs, as Kafka clients give them)."""
    try:
        found = dict(headers or ())
        source = int(found[SOURCE_HEADER])
        reached = datetime.fromisoformat(found[WATERMARK_HEADER].decode())
    except (KeyError, ValueError, TypeError, AttributeError, UnicodeDecodeError):
        return UNKNOWN_SOURCE, fallback
    if reached.tzinfo is None or source < 0:
        return UNKNOWN_SOURCE, fallback
    return source, reached.astimezone(UTC)


class SourceWatermark:
    def __init__(
        self, idle_seconds: float, expected: Iterable[int] = (), now: float = 0.0
    ) -> None:
        """`expected`: sources to wait for from wall time `now` (monotonic s)."""
        if idle_seconds <= 0:
            raise ValueError("idle_seconds must be positive")
        self.idle_seconds = idle_seconds
        self._sources: dict[int, tuple[datetime, float]] = {}
        self._pending = dict.fromkeys(expected, now)
        self._low: datetime | None = None

    def observe(self, source: int, at: datetime, now: float) -> None:
        """`source` has reached event time `at`, as of wall time `now` (monotonic s)."""
        self._pending.pop(source, None)
        seen = self._sources.get(source)
        if seen is None or at > seen[0]:
            self._sources[source] = (at, now)
        else:
            self._sources[source] = (seen[0], now)

    def low(self, now: float) -> datetime | None:
        """The event time all sources active within `idle_seconds` of `now` have reached;
        None before any source has reported."""
        if self._pending:
            self._pending = {s: t for s, t in self._pending.items()
                             if now - t <= self.idle_seconds}
        if self._pending or not self._sources:
            return self._low
        active = [at for at, heard in self._sources.values() if now - heard <= self.idle_seconds]
        candidate = min(active) if active else max(at for at, _ in self._sources.values())
        if self._low is None or candidate > self._low:
            self._low = candidate
        return self._low
