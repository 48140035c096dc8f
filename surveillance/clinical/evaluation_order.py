"""Case revisions wait for their tool's evaluation point, then reach the monitor in
event-time order.

The monitor's state is sequential: the CUSUM charts feed observations one by one and date
a signal by the latest report seen, the last-N window keeps the cases in the order they
entered, the label-free reference is a version's first days as seen, a version change is
the first case of a new version seen. Fed in arrival order, which Kafka fixes for no two
partitions or topics, two runs over the same cases could differ. So a revision waits here
until its tool's day is evaluated, and the monitor takes it then, in an order fixed by the
cases themselves.

A revision's effect time is when it became true in event time:
- labelled (a confusion outcome or indeterminate): its report's time, never before its AI
  call;
- pending: its AI call;
- unlabelled: its AI call plus the join's unlabelled horizon (when it expired);
and never before the effect time of the case's revision it replaces (a cancelled report
takes the case back to pending no earlier than the report it cancels).

`due(tool, cut)` gives what the monitor takes before the evaluation of the day ending at
`cut`: per waiting case, its highest revision whose effect time is before `cut`; for a case
the monitor holds nothing of whose AI call is before `cut` but whose first revision known
here is later (its report comes after `cut`), a pending stand-in, so the case is counted
as pending on its day (windows, label-free tests) however the join revised it (pending then
labelled, or labelled at once). They come ordered by (effect time, case id). The monitor's
state after a day then depends on the cases whose effect time is before the day's end,
not on the order or the batches they were read in, provided each arrived before its day
was evaluated (the grace, `engine.evaluation`).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import msgspec

from surveillance.clinical.ledger import CaseRecord
from surveillance.contracts import AdjudicatedCase, CaseOutcome
from surveillance.contracts.wire import AnyAdjudicatedCase

#: The outcomes of a case with no report (no report time).
_UNREPORTED = (CaseOutcome.PENDING.value, CaseOutcome.UNLABELLED.value)
_UNLABELLED = CaseOutcome.UNLABELLED.value


def effect_ts(outcome: str, inference_ts: float, labelled_ts: float | None,
              unlabelled_after: float) -> float:
    """A revision's own effect time (POSIX seconds), before the not-earlier-than-previous
    rule (`EvaluationQueue.add`)."""
    if outcome == _UNLABELLED:
        return inference_ts + unlabelled_after
    if outcome in _UNREPORTED or labelled_ts is None:
        return inference_ts
    return max(inference_ts, labelled_ts)


@dataclass(slots=True)
class _Waiting:
    #: The case's record as the monitor last took it (None: nothing of it yet).
    applied: CaseRecord | None
    #: Effect time of `applied` (0.0 with none).
    applied_effect: float
    #: Revisions not taken yet, in revision order: (effect time, case, its record).
    revisions: list[tuple[float, AnyAdjudicatedCase, CaseRecord]] = field(default_factory=list)

    def due_from(self) -> float:
        """The earliest cut (POSIX s) before which `due` takes something of this case: its
        first waiting revision's effect time, or, while the monitor holds nothing of it,
        that revision's AI call (a pending stand-in; effect times are never earlier)."""
        first = self.revisions[0]
        return first[2].inference_ts if self.applied is None else first[0]


class EvaluationQueue:
    """Per tool, the case revisions the monitor has not taken yet."""

    def __init__(self, unlabelled_after: timedelta) -> None:
        self._unlabelled_after = unlabelled_after.total_seconds()
        self._tools: dict[str, dict[str, _Waiting]] = {}
        #: Per tool, (`due_from`, case id) of its waiting cases, a heap: `due` visits only
        #: the cases it takes something of, not every case waiting (most wait for a
        #: report). An entry whose case has moved on since is skipped when popped.
        self._next: dict[str, list[tuple[float, str]]] = {}

    @property
    def unlabelled_after(self) -> float:
        """The join's unlabelled horizon, in seconds (`effect_ts`)."""
        return self._unlabelled_after

    def __len__(self) -> int:
        return sum(len(w.revisions) for cases in self._tools.values() for w in cases.values())

    def add(self, previous: CaseRecord | None, case: AnyAdjudicatedCase,
            record: CaseRecord) -> None:
        """One new revision of a case (`previous`: the case's record before it, which the
        monitor holds unless an earlier revision still waits here; `record`: as stored)."""
        cases = self._tools.setdefault(case.tool_id, {})
        waiting = cases.get(case.case_id)
        if waiting is None:
            after = self._unlabelled_after
            held = 0.0 if previous is None else effect_ts(
                previous.outcome, previous.inference_ts, previous.labelled_ts, after)
            waiting = cases[case.case_id] = _Waiting(previous, held)
            fresh = True
        else:
            fresh = False
        floor = waiting.revisions[-1][0] if waiting.revisions else waiting.applied_effect
        own = effect_ts(record.outcome, record.inference_ts, record.labelled_ts,
                        self._unlabelled_after)
        waiting.revisions.append((max(own, floor), case, record))
        if fresh:  # a later revision leaves the first one, and so `due_from`, unchanged
            heapq.heappush(self._next.setdefault(case.tool_id, []),
                           (waiting.due_from(), case.case_id))

    def first_day(self, tool: str) -> date | None:
        """The UTC day of the earliest AI call waiting for `tool` (None: nothing waits)."""
        cases = self._tools.get(tool)
        if not cases:
            return None
        first = min(w.revisions[0][2].inference_ts for w in cases.values())
        return datetime.fromtimestamp(first, UTC).date()

    def due(self, tool: str, cut: datetime
            ) -> list[tuple[CaseRecord | None, AnyAdjudicatedCase, CaseRecord]]:
        """(record the monitor holds, revision to take, its record as stored) for each case
        of `tool` with something in effect before `cut`, in (effect time, case id) order;
        taken off the queue."""
        cases = self._tools.get(tool)
        if not cases:
            return []
        end = cut.timestamp()
        taken: list[tuple[float, str, CaseRecord | None, AnyAdjudicatedCase, CaseRecord]] = []
        heap = self._next.setdefault(tool, [])
        kept: list[str] = []
        while heap and heap[0][0] < end:
            due_from, case_id = heapq.heappop(heap)
            waiting = cases.get(case_id)
            if waiting is None or waiting.due_from() != due_from:
                continue  # taken or moved on since this entry was pushed
            revisions = waiting.revisions
            last = -1
            for i, (effect, _case, _record) in enumerate(revisions):
                if effect < end:
                    last = i
            if last >= 0:
                effect, case, record = revisions[last]
                taken.append((effect, case_id, waiting.applied, case, record))
                waiting.applied, waiting.applied_effect = record, effect
                del revisions[:last + 1]
            elif waiting.applied is None and revisions[0][2].inference_ts < end:
                effect, case, record = revisions[0][0], revisions[0][1], revisions[0][2]
                stand_in = _pending(case, record)
                taken.append((record.inference_ts, case_id, None, *stand_in))
                waiting.applied, waiting.applied_effect = stand_in[1], record.inference_ts
            if not revisions:
                del cases[case_id]
            else:
                kept.append(case_id)
        for case_id in kept:  # after the loop: their `due_from` is now at `end` or later
            heapq.heappush(heap, (cases[case_id].due_from(), case_id))
        taken.sort(key=lambda t: (t[0], t[1]))
        return [(applied, case, record) for _effect, _id, applied, case, record in taken]

    def forget(self) -> None:
        """Drop everything waiting (a rebuild counts the stored records instead)."""
        self._tools.clear()
        self._next.clear()

    def of_tool(self, tool: str) -> dict[str, _Waiting]:
        """What waits for `tool` (for its state snapshot, `engine.snapshots`)."""
        return self._tools.get(tool, {})

    def restore(self, tool: str, waiting: dict[str, _Waiting]) -> None:
        """Put back what waited for `tool` when its snapshot was written."""
        if waiting:
            self._tools[tool] = waiting
            heap = [(w.due_from(), case_id) for case_id, w in waiting.items()]
            heapq.heapify(heap)
            self._next[tool] = heap
        else:
            self._tools.pop(tool, None)
            self._next.pop(tool, None)


def _pending(case: AnyAdjudicatedCase, record: CaseRecord
             ) -> tuple[AnyAdjudicatedCase, CaseRecord]:
    """The case as it was before its report: pending, revision -1 (below every real one:
    the join numbers from 0; not validated, it never leaves the process)."""
    update: dict[str, object] = {
        "revision": -1, "outcome": CaseOutcome.PENDING, "label": None, "label_status": None,
        "labelled_at": None, "report_event_id": None,
    }
    stand_in: AnyAdjudicatedCase = (case.model_copy(update=update)
                                    if isinstance(case, AdjudicatedCase)
                                    else msgspec.structs.replace(case, **update))
    return stand_in, msgspec.structs.replace(
        record, revision=-1, outcome=CaseOutcome.PENDING.value, labelled_ts=None)
