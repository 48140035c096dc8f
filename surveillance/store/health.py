"""The writer's view of the database: outage start/recovery, buffered rows, back-pressure.

One log line when an outage starts and one when it ends (with its duration and the most
rows that were waiting), however many retries happen in between: an on-call engineer
reading the log sees each outage once. Every change is also pushed to the Prometheus
gauges `surveillance_store_outage` and `surveillance_store_buffered_rows`
(`surveillance.observe.metrics.set_store_state`), or to the `publish` callback given.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from surveillance.observe.metrics import set_store_state

log = logging.getLogger(__name__)

Publish = Callable[[bool, int], None]


class StoreHealth:
    """Outage and buffer state of one writer; attributes are read by tests and the demo."""

    def __init__(
        self, publish: Publish = set_store_state, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._publish = publish
        self._clock = clock
        self.outage = False
        self.outages = 0
        self.paused = False
        self.buffered_rows = 0
        self.peak_buffered_rows = 0
        self.rows_written = 0
        self.rejected = 0
        self._outage_started = 0.0
        self._outage_peak = 0

    def set_buffered(self, rows: int) -> None:
        self.buffered_rows = rows
        self.peak_buffered_rows = max(self.peak_buffered_rows, rows)
        if self.outage:
            self._outage_peak = max(self._outage_peak, rows)
        self._publish(self.outage, rows)

    def write_failed(self, reason: str, max_buffer_rows: int) -> None:
        if self.outage:
            log.debug("store still unavailable: %s", reason)
            return
        self.outage = True
        self.outages += 1
        self._outage_started = self._clock()
        self._outage_peak = self.buffered_rows
        log.warning(
            "store outage: cannot write to PostgreSQL (%s); buffering up to %d rows and "
            "retrying with backoff",
            reason,
            max_buffer_rows,
        )
        self._publish(True, self.buffered_rows)

    def write_succeeded(self, rows: int, rejected: int) -> None:
        """A batch of `rows` stored events and `rejected` invalid messages was committed."""
        self.rows_written += rows
        self.rejected += rejected
        if not self.outage:
            return
        self.outage = False
        duration = self._clock() - self._outage_started
        log.warning(
            "store recovered: PostgreSQL writes resumed after %.1f s; %d rows were buffered "
            "at most",
            duration,
            self._outage_peak,
        )
        self._publish(False, self.buffered_rows)
