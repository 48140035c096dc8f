"""A replayed tool's records split at the day its refused snapshot was to evaluate next
(`engine.evaluation.DailyEvaluation.defer`), against an oracle written from the rule in
`clinical.evaluation_order` (pure, hypothesis).

The rule: a revision takes effect at its report's time (never before its AI call), a
pending one at its AI call, an unlabelled one at its AI call plus the horizon. The
monitor took, at each day's evaluation, what was in effect before the day's end; a case
in effect after the end of its AI call's day was first taken as pending on that day. So
after `defer(day)`: what the monitor takes now is every record in effect before the day,
and a pending stand-in of each whose AI call is before the day and whose effect is not;
every other record waits, with its stand-in first when its effect is after its AI call's
day; each waits until the evaluation whose cut passes its time; nothing is lost or taken
twice.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from surveillance.clinical.ledger import CaseRecord
from surveillance.engine.evaluation import DailyEvaluation

DAY = 86_400.0
T0 = datetime(2026, 7, 1, tzinfo=UTC).timestamp()
HORIZON = timedelta(days=14)
OUTCOMES = ("TP", "FP", "TN", "FN", "indeterminate", "pending", "unlabelled")

record = st.builds(
    lambda outcome, ai, lag: CaseRecord(
        revision=0 if outcome == "pending" else 1, outcome=outcome, tool="ich-triage",
        version="1", site="s", partition=0, inference_ts=T0 + ai,
        labelled_ts=None if outcome in ("pending", "unlabelled") else T0 + ai + lag),
    st.sampled_from(OUTCOMES), st.floats(0, 20 * DAY), st.floats(-DAY, 6 * DAY))


def effect(r: CaseRecord) -> float:
    if r.outcome == "unlabelled":
        return r.inference_ts + HORIZON.total_seconds()
    if r.outcome == "pending" or r.labelled_ts is None:
        return r.inference_ts
    return max(r.inference_ts, r.labelled_ts)


@settings(max_examples=300, deadline=None)
@given(st.lists(record, max_size=40), st.integers(0, 25))
def test_deferred_records_are_taken_as_the_daily_evaluation_took_them(
    records: list[CaseRecord], offset: int,
) -> None:
    evaluation = DailyEvaluation(unlabelled_after=HORIZON)
    day = date(2026, 7, 1) + timedelta(days=offset)
    start = datetime.combine(day, datetime.min.time(), tzinfo=UTC).timestamp()
    items = [(f"case-{i}", r) for i, r in enumerate(records)]
    now = evaluation.defer("ich-triage", day, items)
    assert evaluation.next_day["ich-triage"] == day
    steps = evaluation.deferred.get("ich-triage", [])
    assert [s[:2] for s in steps] == sorted(s[:2] for s in steps)
    taken_now: dict[str, CaseRecord] = dict(now)
    assert len(taken_now) == len(now)  # each case at most once now
    waiting: dict[str, list[tuple[float, str | None, str]]] = {}
    for at, case_id, before, view in steps:
        assert at >= start
        waiting.setdefault(case_id, []).append(
            (at, None if before is None else before.outcome.value, view.outcome.value))
    for case_id, r in items:
        stand_in = effect(r) >= (r.inference_ts // DAY + 1) * DAY
        if effect(r) < start:  # evaluated before the restart's day: taken now, as stored
            assert taken_now[case_id] == r and case_id not in waiting
        elif stand_in and r.inference_ts < start:  # pending now, its record on its day
            assert taken_now[case_id].outcome == "pending"
            assert taken_now[case_id].revision == -1
            assert waiting[case_id] == [(effect(r), "pending", r.outcome)]
        elif stand_in:  # both wait: pending at its AI call, then its record
            assert case_id not in taken_now
            assert waiting[case_id] == [(r.inference_ts, None, "pending"),
                                        (effect(r), "pending", r.outcome)]
        else:  # in effect on its AI call's day: its record alone, then
            assert case_id not in taken_now
            assert waiting[case_id] == [(effect(r), None, r.outcome)]
