"""Adverse-event reports joined to their tool and case, counted per tool, and turned into alerts.

Pure: the case lookup is a function the caller passes (a table read in the agent, a dict
in tests). Alert ids are derived from the report and the obligation, so raising the
"same" alert again is visible to the caller as an id it already holds: given the ids
already raised, `alerts_to_raise` returns each alert at most once, however often a report
is evaluated.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from surveillance.clinical.baselines import ToolBaseline
from surveillance.clinical.regulatory_clock import Obligation, ObligationStatus, status
from surveillance.contracts import (
    AdverseEvent,
    Alert,
    AlertSeverity,
    CaseOutcome,
    DiscordanceType,
    Outcome,
)


class CaseLike(Protocol):
    """What linking needs of a case: an `AdjudicatedCase` or the worker's stored record."""

    @property
    def case_id(self) -> str: ...
    @property
    def tool_id(self) -> str: ...
    @property
    def software_version(self) -> str: ...
    @property
    def revision(self) -> int: ...
    @property
    def outcome(self) -> CaseOutcome: ...


#: Cases recorded for one pseudonymized accession (one per tool that read the study).
CaseLookup = Callable[[str], Sequence[CaseLike]]

#: The case outcome a reported discordance implies; other discordances are not checkable.
_EXPECTED_OUTCOME = {
    DiscordanceType.FALSE_NEGATIVE: CaseOutcome.FN,
    DiscordanceType.FALSE_POSITIVE: CaseOutcome.FP,
}
_DECIDED = frozenset({CaseOutcome.TP, CaseOutcome.FP, CaseOutcome.TN, CaseOutcome.FN})
_CRITICAL_OUTCOMES = frozenset({Outcome.DEATH, Outcome.LIFE_THREATENING})
AlertKind = Literal["adverse_event", "regulatory_due_soon", "regulatory_overdue"]


@dataclass(frozen=True)
class AdverseLink:
    """What a report is about, as far as the registry and the case history tell."""

    event_id: str
    tool_id: str
    software_version: str
    known_tool: bool
    registry_clearance: str | None
    clearance_matches: bool | None
    case_id: str | None
    case_outcome: CaseOutcome | None
    #: Whether the case's outcome agrees with the reported discordance (None: not checkable).
    consistent: bool | None


def _pick_case(cases: Sequence[CaseLike], tool_id: str, version: str) -> CaseLike | None:
    same_tool = [c for c in cases if c.tool_id == tool_id]
    if not same_tool:
        return None
    # Prefer the reported version; among equals the latest revision is the current label.
    return max(same_tool, key=lambda c: (c.software_version == version, c.revision))


def link_report(
    event: AdverseEvent, registry: Mapping[str, ToolBaseline], lookup: CaseLookup
) -> AdverseLink:
    """Link a (pseudonymized) report to its tool, version and, when the accession is known,
    to the adjudicated case of that tool on that study."""
    device = event.device
    entry = registry.get(device.tool_id)
    registry_clearance = entry.clearance.submission if entry is not None else None
    clearance_matches = (
        None
        if device.clearance_number is None or registry_clearance is None
        else device.clearance_number.strip().upper() == registry_clearance.upper()
    )
    case = None
    if event.accession_number is not None:
        case = _pick_case(lookup(event.accession_number), device.tool_id, device.software_version)
    expected = _EXPECTED_OUTCOME.get(event.discordance_type)
    consistent = (
        None
        if case is None or expected is None or case.outcome not in _DECIDED
        else case.outcome is expected
    )
    return AdverseLink(
        event_id=event.event_id,
        tool_id=device.tool_id,
        software_version=device.software_version,
        known_tool=entry is not None,
        registry_clearance=registry_clearance,
        clearance_matches=clearance_matches,
        case_id=case.case_id if case is not None else None,
        case_outcome=case.outcome if case is not None else None,
        consistent=consistent,
    )


@dataclass
class ToolCounts:
    total: int = 0
    serious: int = 0
    by_discordance: dict[DiscordanceType, int] = field(default_factory=dict)


def counts_per_tool(events: Iterable[AdverseEvent]) -> dict[tuple[str, str], ToolCounts]:
    """Reports per (tool, version); a report delivered twice (same event id) counts once."""
    seen: set[str] = set()
    counts: dict[tuple[str, str], ToolCounts] = {}
    for e in events:
        if e.event_id in seen:
            continue
        seen.add(e.event_id)
        c = counts.setdefault((e.device.tool_id, e.device.software_version), ToolCounts())
        c.total += 1
        c.serious += e.event.outcome is not Outcome.NON_SERIOUS
        c.by_discordance[e.discordance_type] = c.by_discordance.get(e.discordance_type, 0) + 1
    return counts


def received_severity(outcome: Outcome) -> AlertSeverity:
    if outcome in _CRITICAL_OUTCOMES:
        return AlertSeverity.CRITICAL
    if outcome is Outcome.NON_SERIOUS:
        return AlertSeverity.INFO
    return AlertSeverity.WARNING


def alert_id(event_id: str, what: str) -> str:
    """Deterministic alert id; the event id is hashed so the id stays short."""
    digest = hashlib.sha256(event_id.encode()).hexdigest()[:24]
    return f"ae-{digest}-{what}"


def alerts_to_raise(
    event: AdverseEvent,
    obligations: Iterable[Obligation],
    now: datetime,
    raised: Collection[str],
    submitted: Collection[str] = (),
) -> list[Alert]:
    """The alerts this report needs now that are not in `raised` (ids already raised).

    One `adverse_event` alert on receipt (critical for death or life-threatening, warning
    for other serious outcomes, info otherwise); per open obligation one
    `regulatory_due_soon` and one `regulatory_overdue`. An obligation already overdue when
    first seen raises only the overdue alert. `now` is in the facility's time zone: its
    date is compared with the due dates. `submitted` holds obligation keys already reported.
    """
    today = now.date()
    device = event.device
    what = f"{event.event.outcome.value} outcome, {event.discordance_type.value}"

    def alert(
        aid: str, kind: AlertKind, severity: AlertSeverity, summary: str, details: dict[str, str]
    ) -> Alert:
        return Alert(
            alert_id=aid,
            kind=kind,
            severity=severity,
            raised_at=now,
            tool_id=device.tool_id,
            software_version=device.software_version,
            summary=summary,
            details={"event_id": event.event_id, **details},
        )

    out: list[Alert] = []
    received = alert_id(event.event_id, "received")
    if received not in raised:
        out.append(
            alert(
                received,
                "adverse_event",
                received_severity(event.event.outcome),
                f"Adverse-event report on {device.tool_id} {device.software_version}: {what}",
                {
                    "outcome": event.event.outcome.value,
                    "discordance_type": event.discordance_type.value,
                    "aware_date": event.aware_date.isoformat(),
                },
            )
        )
    for ob in obligations:
        state = status(ob, today, ob.key in submitted)
        if state not in (ObligationStatus.DUE_SOON, ObligationStatus.OVERDUE):
            continue
        aid = alert_id(event.event_id, f"{ob.key}:{state.value}")
        if aid in raised:
            continue
        overdue = state is ObligationStatus.OVERDUE
        out.append(
            alert(
                aid,
                "regulatory_overdue" if overdue else "regulatory_due_soon",
                AlertSeverity.CRITICAL if overdue else AlertSeverity.WARNING,
                f"Report to {ob.recipient} ({ob.regime}) {'was' if overdue else 'is'} due on "
                f"{ob.due.isoformat()} for an adverse event on {device.tool_id}: {what}",
                {
                    "regime": ob.regime,
                    "recipient": ob.recipient,
                    "due": ob.due.isoformat(),
                    "basis": ob.basis,
                },
            )
        )
    return out
