"""Cases far ahead of their join partition's clock wait before they reach the monitor.

The performance monitor and the drift banks keep clocks of their own, moved by the cases
they are given: the agreement windows drop days older than their longest window before
their latest case day, the CUSUM charts release settling cases as their latest report
time passes, and each version is evaluated as of its latest case. One live, now-dated case
read in the middle of a backfill moved all three to today: the backlog still to come was
then "late" (ignored by the windows), the charts released every settling case at once,
and a false CUSUM alert was raised.

A case carries the event time its join partition's clock had reached when the join
emitted it (the `join-ai-watermark` header, `stream.watermark.EventClock`), which no single
event can move. A new case whose own AI time is more than `tolerance` past that is
counted at once (ledger, case table, volume metrics), but held here, with any later
revision of it, until the case agent's clock (the low watermark of the join partitions)
comes within `tolerance` of it; then the monitor and the drift bank take it as if it had
just arrived. Live, every case is within minutes of its partition's clock and nothing is
held.
"""

from __future__ import annotations

import heapq
from datetime import datetime, timedelta

from surveillance.contracts.wire import AnyAdjudicatedCase

#: How far a case's AI time may lead its partition's clock and still be applied at once:
#: the drift banks' lateness (cases within a partition come a little out of order).
AHEAD_TOLERANCE = timedelta(days=2)


class AheadCases:
    def __init__(self, tolerance: timedelta = AHEAD_TOLERANCE) -> None:
        self.tolerance = tolerance
        self._held: dict[str, AnyAdjudicatedCase] = {}  # case id -> its latest revision
        self._due: list[tuple[datetime, str]] = []

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, case: AnyAdjudicatedCase, new: bool, reached: datetime) -> bool:
        """Hold `case` (True) if it revises a held case, or is `new` and its AI time is more
        than `tolerance` past `reached`; else False: apply it now."""
        if case.case_id in self._held:
            self._held[case.case_id] = case
            return True
        if not new or case.inference_date <= reached + self.tolerance:
            return False
        self._held[case.case_id] = case
        heapq.heappush(self._due, (case.inference_date, case.case_id))
        return True

    def release(self, clock: datetime) -> list[AnyAdjudicatedCase]:
        """The held cases (latest revisions) the clock has come within `tolerance` of,
        oldest first: new cases for the monitor and the drift bank."""
        out = []
        while self._due and self._due[0][0] <= clock + self.tolerance:
            _, case_id = heapq.heappop(self._due)
            out.append(self._held.pop(case_id))
        return out

    def held(self) -> list[AnyAdjudicatedCase]:
        """The cases held, oldest first (a snapshot keeps them: they are in the case table
        but not yet in the monitor)."""
        return [self._held[case_id] for _, case_id in sorted(self._due)]

    def restore(self, cases: list[AnyAdjudicatedCase]) -> None:
        """Hold `cases` again (from `held`), as they were held."""
        for case in cases:
            self._held[case.case_id] = case
            heapq.heappush(self._due, (case.inference_date, case.case_id))

    def clear(self) -> None:
        self._held.clear()
        self._due.clear()
