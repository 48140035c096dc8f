"""Linking reports to tools and cases, counting them, and raising each alert once."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

from surveillance.clinical.adverse_link import (
    ToolCounts,
    alert_id,
    alerts_to_raise,
    counts_per_tool,
    link_report,
    received_severity,
)
from surveillance.clinical.baselines import load_registry
from surveillance.clinical.regulatory_clock import Obligation, obligations
from surveillance.contracts import (
    AdjudicatedCase,
    AdverseEvent,
    AEDevice,
    AEEvent,
    AEReporter,
    AlertSeverity,
    CaseOutcome,
    DiscordanceType,
    Outcome,
)

REGISTRY = load_registry()


def event(
    event_id: str = "sub-0001",
    outcome: Outcome = Outcome.DEATH,
    discordance: DiscordanceType = DiscordanceType.FALSE_NEGATIVE,
    tool: str = "ich-triage",
    version: str = "2.1",
    accession: str | None = "a_acc1",
    clearance: str | None = None,
) -> AdverseEvent:
    return AdverseEvent(
        event_id=event_id,
        received_at=datetime(2025, 3, 7, 9, tzinfo=UTC),
        aware_date=date(2025, 3, 7),
        event=AEEvent(outcome=outcome, event_date=date(2025, 3, 6), narrative="missed bleed"),
        device=AEDevice(
            tool_id=tool,
            manufacturer="RapidAI",
            software_version=version,
            clearance_number=clearance,
        ),
        reporter=AEReporter(name="Dr A", role="radiologist", contact="x1234"),
        accession_number=accession,
        discordance_type=discordance,
        pseudonymized=True,
    )


def case(tool: str, version: str, outcome: CaseOutcome, revision: int = 0) -> AdjudicatedCase:
    return AdjudicatedCase(
        case_id=f"{tool}-{version}-{revision}",
        revision=revision,
        outcome=outcome,
        label=None,
        tool_id=tool,
        software_version=version,
        finding_code="intracranial_hemorrhage",
        site="site-a",
        ai_result=0.2,
        operating_threshold=0.5,
        result_indicator=False,
        accession="a_acc1",
        study_date=date(2025, 3, 6),
        inference_date=datetime(2025, 3, 6, 10, tzinfo=UTC),
        modality="CT",
        scanner_manufacturer="GE",
        scanner_model="Revolution",
        scanner_software_version="1",
        ai_event_id="ai-1",
    )


def lookup_from(cases: dict[str, list[AdjudicatedCase]]):  # type: ignore[no-untyped-def]
    def lookup(accession: str) -> Sequence[AdjudicatedCase]:
        return cases.get(accession, [])

    return lookup


def test_link_to_tool_and_the_same_tools_latest_case() -> None:
    cases = {
        "a_acc1": [
            case("lvo-triage", "2.1", CaseOutcome.TN),
            case("ich-triage", "2.0", CaseOutcome.TP),
            case("ich-triage", "2.1", CaseOutcome.TN, revision=0),
            case("ich-triage", "2.1", CaseOutcome.FN, revision=1),
        ]
    }
    link = link_report(event(clearance="k222884"), REGISTRY, lookup_from(cases))
    assert link.known_tool is True
    assert link.registry_clearance == "K222884"
    assert link.clearance_matches is True  # case-insensitive
    assert link.case_id == "ich-triage-2.1-1"
    assert link.case_outcome is CaseOutcome.FN
    assert link.consistent is True  # reported false negative, case is FN


def test_link_flags_disagreement_and_unknowns() -> None:
    cases = {"a_acc1": [case("ich-triage", "2.1", CaseOutcome.TP)]}
    link = link_report(event(clearance="K000000"), REGISTRY, lookup_from(cases))
    assert link.clearance_matches is False
    assert link.consistent is False  # reported false negative, but the case is a TP

    delayed = event(discordance=DiscordanceType.DELAYED_NOTIFICATION)
    assert link_report(delayed, REGISTRY, lookup_from(cases)).consistent is None

    pending = {"a_acc1": [case("ich-triage", "2.1", CaseOutcome.PENDING)]}
    assert link_report(event(), REGISTRY, lookup_from(pending)).consistent is None

    unknown = link_report(event(tool="no-such", accession=None), REGISTRY, lookup_from(cases))
    assert (unknown.known_tool, unknown.registry_clearance, unknown.case_id) == (False, None, None)
    assert unknown.clearance_matches is None


def test_no_accession_means_no_lookup() -> None:
    def lookup(accession: str) -> Sequence[AdjudicatedCase]:
        raise AssertionError("lookup must not be called without an accession")

    assert link_report(event(accession=None), REGISTRY, lookup).case_id is None


def test_counts_per_tool_count_a_redelivered_report_once() -> None:
    reports = [
        event("e1", Outcome.DEATH, DiscordanceType.FALSE_NEGATIVE),
        event("e1", Outcome.DEATH, DiscordanceType.FALSE_NEGATIVE),  # redelivery
        event("e2", Outcome.NON_SERIOUS, DiscordanceType.FALSE_POSITIVE),
        event("e3", Outcome.HOSPITALIZATION, DiscordanceType.FALSE_NEGATIVE),
        event("e4", Outcome.OTHER_SERIOUS, DiscordanceType.OTHER, version="3.0"),
        event("e5", Outcome.NON_SERIOUS, DiscordanceType.OTHER, tool="ptx-triage"),
    ]
    assert counts_per_tool(reports) == {
        ("ich-triage", "2.1"): ToolCounts(
            total=3,
            serious=2,
            by_discordance={
                DiscordanceType.FALSE_NEGATIVE: 2,
                DiscordanceType.FALSE_POSITIVE: 1,
            },
        ),
        ("ich-triage", "3.0"): ToolCounts(1, 1, {DiscordanceType.OTHER: 1}),
        ("ptx-triage", "2.1"): ToolCounts(1, 0, {DiscordanceType.OTHER: 1}),
    }


def test_received_severity_by_seriousness() -> None:
    assert received_severity(Outcome.DEATH) is AlertSeverity.CRITICAL
    assert received_severity(Outcome.LIFE_THREATENING) is AlertSeverity.CRITICAL
    for o in (
        Outcome.HOSPITALIZATION,
        Outcome.DISABILITY,
        Outcome.REQUIRED_INTERVENTION,
        Outcome.OTHER_SERIOUS,
    ):
        assert received_severity(o) is AlertSeverity.WARNING
    assert received_severity(Outcome.NON_SERIOUS) is AlertSeverity.INFO


def test_overdue_report_raises_exactly_one_alert_however_often_evaluated() -> None:
    ev = event(outcome=Outcome.OTHER_SERIOUS)
    ob = [Obligation("eu_mdr", "competent_authority", date(2025, 3, 22), "MDR 87(3)")]
    now = datetime(2025, 4, 1, 8, tzinfo=UTC)  # ten days overdue
    raised = {alert_id(ev.event_id, "received")}
    first = alerts_to_raise(ev, ob, now, raised)
    assert [(a.kind, a.severity) for a in first] == [("regulatory_overdue", AlertSeverity.CRITICAL)]
    assert first[0].details["due"] == "2025-03-22"
    raised |= {a.alert_id for a in first}
    for hours in range(1, 50):
        assert alerts_to_raise(ev, ob, now + timedelta(hours=hours), raised) == []


def test_daily_evaluation_from_receipt_to_overdue_raises_each_kind_once() -> None:
    ev = event(outcome=Outcome.DEATH)  # aware Fri 2025-03-07
    obs = obligations(Outcome.DEATH, ev.aware_date)
    # us_803 fda + manufacturer due Fri 2025-03-21, eu_mdr due Mon 2025-03-17.
    raised: set[str] = set()
    log: list[tuple[date, str, str]] = []
    for day in range(30):
        now = datetime(2025, 3, 7, 9, tzinfo=UTC) + timedelta(days=day)
        for _ in range(3):  # evaluated several times a day
            for a in alerts_to_raise(ev, obs, now, raised):
                raised.add(a.alert_id)
                log.append((now.date(), a.kind, str(a.details.get("recipient", "-"))))
    assert log == [
        (date(2025, 3, 7), "adverse_event", "-"),
        (date(2025, 3, 15), "regulatory_due_soon", "competent_authority"),  # 17 - 2
        (date(2025, 3, 18), "regulatory_overdue", "competent_authority"),
        (date(2025, 3, 19), "regulatory_due_soon", "fda"),  # 21 - 2
        (date(2025, 3, 19), "regulatory_due_soon", "manufacturer"),
        (date(2025, 3, 22), "regulatory_overdue", "fda"),
        (date(2025, 3, 22), "regulatory_overdue", "manufacturer"),
    ]


def test_submitted_obligation_raises_nothing_more() -> None:
    ev = event(outcome=Outcome.DEATH)
    obs = obligations(Outcome.DEATH, ev.aware_date)
    now = datetime(2025, 4, 30, tzinfo=UTC)
    raised = {alert_id(ev.event_id, "received")}
    done = {o.key for o in obs}
    assert alerts_to_raise(ev, obs, now, raised, submitted=done) == []
    partly = alerts_to_raise(ev, obs, now, raised, submitted={"us_803:fda"})
    assert [a.details["recipient"] for a in partly] == ["manufacturer", "competent_authority"]


def test_alert_text_carries_no_narrative_and_ids_are_bounded() -> None:
    ev = event(event_id="x" * 128)
    (received,) = alerts_to_raise(ev, [], datetime(2025, 3, 7, tzinfo=UTC), set())
    assert "missed bleed" not in received.summary
    assert "missed bleed" not in str(received.details)
    assert len(received.alert_id) <= 128
    assert received.alert_id == alert_id("x" * 128, "received")
