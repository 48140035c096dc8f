"""`EvaluationQueue.due` visits only the cases it takes something of (a heap of each
case's earliest due time); checked against the straightforward computation it replaced,
written out here: scan every waiting case, take its highest revision in effect before the
cut, or a pending stand-in for a case the monitor holds nothing of whose AI call is
before the cut. Both queues get the same case revisions of a simulated stream (read in
orders hypothesis draws, a case's revisions in their own order, as the ledger gives them)
and the same cuts, now and then earlier than the last one, with a snapshot's
`of_tool` / `restore` round trip in between; every `due` must return the same revisions
in the same order, and both must hold the same waiting revisions afterwards."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from surveillance.clinical.evaluation_order import EvaluationQueue, _pending, _Waiting
from surveillance.clinical.ledger import CaseRecord, record_of
from surveillance.contracts.wire import AnyAdjudicatedCase
from surveillance.engine.config import EngineConfig
from surveillance.engine.local import revisions
from surveillance.simulate import simulate

Revision = tuple[CaseRecord | None, AnyAdjudicatedCase, CaseRecord]
Due = list[tuple[CaseRecord | None, AnyAdjudicatedCase, CaseRecord]]


class ScanAll(EvaluationQueue):
    """`due` as it was: every waiting case of the tool, each time."""

    def due(self, tool: str, cut: datetime) -> Due:
        cases = self._tools.get(tool)
        if not cases:
            return []
        end = cut.timestamp()
        taken = []
        for case_id, waiting in list(cases.items()):
            revisions_ = waiting.revisions
            in_effect = [i for i, (effect, _, _) in enumerate(revisions_) if effect < end]
            if in_effect:
                effect, case, record = revisions_[in_effect[-1]]
                taken.append((effect, case_id, waiting.applied, case, record))
                waiting.applied, waiting.applied_effect = record, effect
                del revisions_[:in_effect[-1] + 1]
            elif waiting.applied is None and revisions_[0][2].inference_ts < end:
                case, record = _pending(revisions_[0][1], revisions_[0][2])
                taken.append((revisions_[0][2].inference_ts, case_id, None, case, record))
                waiting.applied = record
                waiting.applied_effect = revisions_[0][2].inference_ts
            if not revisions_:
                del cases[case_id]
        taken.sort(key=lambda t: (t[0], t[1]))
        return [(applied, case, record) for _, _, applied, case, record in taken]


@pytest.fixture(scope="module")
def stream() -> list[Revision]:
    events, _ = simulate(days=10, seed=3)
    return [(previous, case, record_of(case, 0))
            for _, previous, case in revisions(EngineConfig.plain(4), events)]


def _copy(waiting: dict[str, _Waiting]) -> dict[str, _Waiting]:
    return {k: _Waiting(w.applied, w.applied_effect, list(w.revisions))
            for k, w in waiting.items()}


def _shown(due: Due) -> list[tuple[object, ...]]:
    return [(previous, case.case_id, case.revision, record) for previous, case, record in due]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.data_too_large])
@given(st.data())
def test_due_takes_what_a_scan_of_every_waiting_case_takes(stream: list[Revision],
                                                           data: st.DataObject) -> None:
    # Read order: each revision moved up to a few places (a case's own stay in order).
    shuffle = random.Random(data.draw(st.integers(0, 2**32), label="seed"))
    keys = [i + shuffle.randint(0, 40) * 0.5 for i in range(len(stream))]
    by_case: dict[str, list[int]] = {}
    for i, (_, case, _) in enumerate(stream):
        by_case.setdefault(case.case_id, []).append(i)
    order = sorted(range(len(stream)), key=lambda i: keys[i])
    slots = {cid: sorted(ix) for cid, ix in by_case.items()}
    seen: dict[str, int] = {}
    fed: list[int] = []
    for i in order:  # the k-th read of a case is its k-th revision
        cid = stream[i][1].case_id
        fed.append(slots[cid][seen.get(cid, 0)])
        seen[cid] = seen.get(cid, 0) + 1
    ours, theirs = EvaluationQueue(timedelta(days=14)), ScanAll(timedelta(days=14))
    tools = sorted({case.tool_id for _, case, _ in stream})
    start = min(r.inference_ts for _, _, r in stream)
    every = data.draw(st.integers(20, 400), label="every")
    for n, i in enumerate(fed, 1):
        for queue in (ours, theirs):
            queue.add(*stream[i])
        if n % every:
            continue
        cut = datetime.fromtimestamp(
            start + data.draw(st.floats(0, 14 * 86_400), label="cut"), UTC)
        for tool in tools:
            assert _shown(ours.due(tool, cut)) == _shown(theirs.due(tool, cut))
        if data.draw(st.booleans(), label="restore"):
            tool = data.draw(st.sampled_from(tools), label="tool")
            ours.restore(tool, _copy(ours.of_tool(tool)))
    end = datetime.fromtimestamp(start + 40 * 86_400, UTC)
    for tool in tools:
        assert _shown(ours.due(tool, end)) == _shown(theirs.due(tool, end))
        assert ours.of_tool(tool) == theirs.of_tool(tool) == {}
