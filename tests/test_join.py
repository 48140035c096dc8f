"""The case join, fed lists of events: exact cases out (pure, no Kafka)."""

from __future__ import annotations

from datetime import timedelta

from surveillance.clinical import join
from surveillance.contracts import Acquisition, CaseOutcome, Label, ReportStatus
from surveillance.contracts.wire import JoinInput
from tests.factories import T0, ai_in, ai_result, report_in

H = timedelta(days=14)


def run(items: list[JoinInput], watermark_from_events: bool = True) -> list[tuple[str, int, str]]:
    """Fold items into one accession's state; return (case_id, revision, outcome) emitted."""
    state = None
    out = []
    watermark = None
    for item in items:
        state, cases = join.apply(state, item, 0, H, watermark)
        if watermark_from_events:
            at = join.event_time(item)
            watermark = at if watermark is None or at > watermark else watermark
        out += [(c.case_id, c.revision, c.outcome.value) for c in cases]
    return out


def test_ai_then_report_emits_pending_then_labelled() -> None:
    assert run([ai_in(), report_in()]) == [
        ("ACC1:ich-triage", 0, "pending"),
        ("ACC1:ich-triage", 1, "TP"),
    ]


def test_report_first_then_ai_emits_labelled_once() -> None:
    assert run([report_in(), ai_in()]) == [("ACC1:ich-triage", 0, "TP")]


def test_negative_call_and_absent_label_is_tn_and_missed_finding_is_fn() -> None:
    absent = {"intracranial_hemorrhage": Label.ABSENT}
    assert run([ai_in(positive=False), report_in(labels=absent)])[-1][2] == "TN"
    assert run([ai_in(positive=False), report_in()])[-1][2] == "FN"
    assert run([ai_in(positive=True), report_in(labels=absent)])[-1][2] == "FP"


def test_duplicate_event_id_has_no_second_effect_but_replays_the_same_revision() -> None:
    out = run([ai_in(), report_in(), ai_in(), report_in()])
    assert out == [
        ("ACC1:ich-triage", 0, "pending"),
        ("ACC1:ich-triage", 1, "TP"),
        ("ACC1:ich-triage", 1, "TP"),  # replay of the duplicate AI result: same revision
        ("ACC1:ich-triage", 1, "TP"),  # replay of the duplicate report
    ]


def test_a_replay_re_emits_the_case_as_emitted_not_by_a_later_correction_that_kept_it(
) -> None:
    """Read again after a crash, an AI result whose case was labelled by a report and then
    kept by a correction with the same label: the case comes back as it was emitted,
    labelled by the first report at its time (with the correction's time the monitor
    counted it on another day)."""
    addendum = report_in(event_id="rep-2", at=T0 + timedelta(days=1),
                         status=ReportStatus.ADDENDUM)
    state = None
    emitted = []
    for item in (ai_in(), report_in(), addendum, ai_in(), report_in()):
        state, cases = join.apply(state, item, 0, H, None)
        emitted += cases
    labelled, *replays = emitted[1:]
    assert labelled.report_event_id == "rep-1" and len(replays) == 2
    for replay in replays:
        assert replay == labelled  # every field: revision, report, its time and status
    # A state written before the join kept the labelling report: the held one, as before.
    assert state is not None
    old = join.JoinState.from_dict(state.as_dict())
    tool = old.tools["ich-triage"]
    tool.labelled_by = tool.labelled_at = tool.label_status = None
    [before] = join.apply(old, ai_in(), 0, H, None)[1]
    assert (before.report_event_id, before.labelled_at) == ("rep-2", T0 + timedelta(days=1))


def test_corrected_report_replaces_label_with_higher_revision() -> None:
    correction = report_in(
        event_id="rep-2",
        labels={"intracranial_hemorrhage": Label.ABSENT},
        at=T0 + timedelta(days=2),
        status=ReportStatus.CORRECTED,
    )
    out = run([ai_in(), report_in(), correction])
    assert out[-1] == ("ACC1:ich-triage", 2, "FP")


def test_addendum_that_keeps_the_label_emits_nothing() -> None:
    addendum = report_in(event_id="rep-2", at=T0 + timedelta(days=1), status=ReportStatus.ADDENDUM)
    assert run([ai_in(), report_in(), addendum]) == run([ai_in(), report_in()])


def test_older_report_arriving_after_a_newer_correction_is_ignored() -> None:
    correction = report_in(
        event_id="rep-2", labels={"intracranial_hemorrhage": Label.ABSENT},
        at=T0 + timedelta(days=2), status=ReportStatus.CORRECTED,
    )
    original = report_in(event_id="rep-1", at=T0 + timedelta(hours=6))
    assert run([ai_in(), correction, original])[-1] == ("ACC1:ich-triage", 1, "FP")


def test_report_without_the_finding_is_indeterminate_and_uncertain_label_too() -> None:
    assert run([ai_in(), report_in(labels={})])[-1][2] == "indeterminate"
    unsure = {"intracranial_hemorrhage": Label.INDETERMINATE}
    assert run([ai_in(), report_in(labels=unsure)])[-1][2] == "indeterminate"


def test_two_tools_on_one_study_are_two_cases_labelled_by_one_report() -> None:
    lvo = ai_in(event_id="ai-2", tool="lvo-triage", finding="large_vessel_occlusion",
                positive=False)
    labels = {"intracranial_hemorrhage": Label.PRESENT, "large_vessel_occlusion": Label.ABSENT}
    out = run([ai_in(), lvo, report_in(labels=labels)])
    assert out == [
        ("ACC1:ich-triage", 0, "pending"),
        ("ACC1:lvo-triage", 0, "pending"),
        ("ACC1:ich-triage", 1, "TP"),
        ("ACC1:lvo-triage", 1, "TN"),
    ]


def test_expire_turns_pending_into_unlabelled_and_a_late_report_labels_it() -> None:
    state, _ = join.apply(None, ai_in(), 0, H, None)
    assert join.pending_deadlines(state, H) == [T0 + H]
    assert join.expire(state, H, T0 + H - timedelta(seconds=1)) == []
    [case] = join.expire(state, H, T0 + H)
    assert (case.revision, case.outcome) == (1, CaseOutcome.UNLABELLED)
    assert join.expire(state, H, T0 + H + timedelta(days=1)) == []  # once only
    late = report_in(at=T0 + timedelta(days=20))
    state, [labelled] = join.apply(state, late, 0, H, T0 + timedelta(days=20))
    assert (labelled.revision, labelled.outcome) == (2, CaseOutcome.TP)


def test_ai_result_arriving_past_the_horizon_without_report_is_unlabelled_at_once() -> None:
    _, [case] = join.apply(None, ai_in(), 0, H, T0 + H + timedelta(hours=1))
    assert case.outcome is CaseOutcome.UNLABELLED


def test_rerun_of_a_tool_replaces_the_score_with_a_new_revision() -> None:
    rerun = ai_in(event_id="ai-9", at=T0 + timedelta(hours=1), positive=False)
    out = run([ai_in(), report_in(), rerun])
    assert out[-1] == ("ACC1:ich-triage", 2, "FN")


def test_state_round_trips_through_json_as_the_table_stores_it() -> None:
    state, _ = join.apply(None, ai_in(), 3, H, None)
    state, _ = join.apply(state, report_in(), 3, H, None)
    again = join.JoinState.from_dict(state.as_dict())
    assert again == state
    assert again.partition == 3


def test_a_state_the_pydantic_model_wrote_reads_back_unchanged() -> None:
    """Changelogs written before the state became a msgspec struct: the same JSON, built
    here with pydantic's own dump of the AI result as the old model nested it."""
    ai = ai_result(accession="a_1", measurement=None,
                   acquisition=Acquisition(kvp=120.0, protocol_name="HEAD"),
                   acquired_at=T0 - timedelta(minutes=3)).model_copy(
        update={"pseudonymized": True})
    old = {"accession": "a_1", "partition": 2, "seen": ["ai-1", "rep-1"],
           "tools": {"ich-triage": {"ai": ai.model_dump(mode="json"), "revision": 1,
                                    "outcome": "TP", "label": "present"}},
           "report": {"event_id": "rep-1", "finalized_at": "2026-07-01T14:00:00.500000+02:00",
                      "status": "corrected", "labels": {"intracranial_hemorrhage": "present"}},
           "last_event_at": "2026-07-01T14:00:00.500000+02:00"}
    state = join.JoinState.from_dict(old)
    assert state.as_dict() == old
    assert state.tools["ich-triage"].ai.acquisition.kvp == 120.0
    assert state.report is not None and state.report.status is ReportStatus.CORRECTED


def test_stale_state_is_detected_after_retention() -> None:
    state, _ = join.apply(None, ai_in(), 0, H, None)
    assert not join.is_stale(state, timedelta(days=120), T0 + timedelta(days=119))
    assert join.is_stale(state, timedelta(days=120), T0 + timedelta(days=120))


def test_cancelled_report_withdraws_the_label_and_a_later_report_labels_again() -> None:
    cancelled = report_in(event_id="rep-x", labels={}, at=T0 + timedelta(days=1),
                          status=ReportStatus.CANCELLED)
    again = report_in(event_id="rep-3", labels={"intracranial_hemorrhage": Label.ABSENT},
                      at=T0 + timedelta(days=2), status=ReportStatus.CORRECTED)
    assert run([ai_in(), report_in(), cancelled, again]) == [
        ("ACC1:ich-triage", 0, "pending"),
        ("ACC1:ich-triage", 1, "TP"),
        ("ACC1:ich-triage", 2, "pending"),
        ("ACC1:ich-triage", 3, "FP"),
    ]


def test_cancelled_report_older_than_the_held_one_changes_nothing() -> None:
    stale = report_in(event_id="rep-x", labels={}, at=T0, status=ReportStatus.CANCELLED)
    assert run([ai_in(), report_in(), stale]) == [
        ("ACC1:ich-triage", 0, "pending"),
        ("ACC1:ich-triage", 1, "TP"),
    ]


def test_cancelled_before_the_ai_result_leaves_the_case_pending_then_unlabelled() -> None:
    state, _ = join.apply(None, report_in(labels={}, status=ReportStatus.CANCELLED), 0, H, None)
    state, cases = join.apply(state, ai_in(), 0, H, None)
    assert [(c.outcome, c.label, c.label_status) for c in cases] == [
        (CaseOutcome.PENDING, None, None)]
    assert [c.outcome for c in join.expire(state, H, T0 + H)] == [CaseOutcome.UNLABELLED]
