"""Adverse-event reports: linked to their tool, version and case; regulatory clocks started.

`adverse.events` is keyed by tool id like `cases.adjudicated`, and co-partitioned with it,
so the case a report is about is in this worker's case table, or, once past the case
horizon (`engine.horizon`), in the store. The adverse table keeps no
narrative and no reporter identity (`adverse_redact.for_table`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from surveillance.clinical import adverse_redact, regulatory_clock
from surveillance.clinical.adverse_link import AdverseLink, alerts_to_raise, link_report
from surveillance.clinical.ledger import CaseRecord
from surveillance.clinical.regulatory_clock import ObligationStatus
from surveillance.contracts import AdverseEvent, Alert, CaseOutcome
from surveillance.engine.config import EngineConfig
from surveillance.engine.deadletter import dead_letter
from surveillance.engine.records import Output, Record
from surveillance.engine.tables import Table
from surveillance.stream.ingest import Rejected, describe


@dataclass(frozen=True)
class StoredCase:
    case_id: str
    tool_id: str
    software_version: str
    revision: int
    outcome: CaseOutcome


class AdverseStage:
    def __init__(self, config: EngineConfig, table: Table[dict[str, Any]],
                 cases: Table[CaseRecord]) -> None:
        self.config = config
        self.table = table
        self.cases = cases
        #: Ids of the clock alerts raised (deterministic), so each is raised once.
        self.raised: set[str] = set()

    def take(self, record: Record, now: datetime, out: Output) -> None:
        out.metric("processed", record.topic)
        try:
            report = AdverseEvent.model_validate_json(record.value or b"")
        except ValidationError as exc:
            dead_letter(self.config, record, Rejected("schema", describe(exc)), now, out)
            return
        if not report.pseudonymized:
            dead_letter(self.config, record, Rejected(
                "schema", "pseudonymized: adverse events must come through intake"), now, out)
            return
        if report.event_id in self.table:
            out.metric("duplicate", record.topic)
            return
        link = link_report(report, self.config.registry, self._cases_of_accession)
        self.table.put(report.event_id, {
            "event": adverse_redact.for_table(report),  # no narrative, no reporter
            "link": {"case_id": link.case_id, "consistent": link.consistent,
                     "case_outcome": link.case_outcome.value if link.case_outcome else None},
            "partition": record.partition,
        }, record.partition)
        out.metric("adverse_event", report.device.tool_id, report.event.outcome)
        out.alert([with_link(a, link) for a in self._clock_alerts(report, now)])

    def tick(self, owned: Collection[int], now: datetime, out: Output) -> None:
        """Re-evaluate every open report's clocks on the owned partitions (wall clock:
        deadlines are real days): alerts due now, and the per-tool gauges."""
        per_tool: dict[str, list[int]] = {}
        for _, value in self.table.stored():
            if value["partition"] not in owned:
                continue
            report = AdverseEvent.model_validate(value["event"])
            out.alert(self._clock_alerts(report, now))
            obligations = regulatory_clock.obligations(report.event.outcome, report.aware_date)
            states = [regulatory_clock.status(o, now.astimezone().date()) for o in obligations]
            counts = per_tool.setdefault(report.device.tool_id, [0, 0, 0])
            counts[0] += 1
            counts[1] += any(s is ObligationStatus.DUE_SOON for s in states)
            counts[2] += any(s is ObligationStatus.OVERDUE for s in states)
        for tool, (open_, soon, overdue) in per_tool.items():
            out.metric("regulatory_clock", tool, open_, min(soon, open_ - overdue), overdue)

    def _clock_alerts(self, report: AdverseEvent, now: datetime) -> list[Alert]:
        """Received / due-soon / overdue alerts not raised yet (ids are deterministic)."""
        obligations = regulatory_clock.obligations(report.event.outcome, report.aware_date)
        alerts = alerts_to_raise(report, obligations, now.astimezone(), self.raised)
        self.raised.update(a.alert_id for a in alerts)
        return alerts

    def _cases_of_accession(self, accession: str | None) -> list[StoredCase]:
        if not accession:
            return []
        found = []
        lookup = self.config.case_lookup  # a case past the horizon is only in the store
        for tool in self.config.registry:
            case_id = f"{accession}:{tool}"
            r = self.cases.get(case_id)
            if r is not None:
                found.append(StoredCase(case_id, r.tool, r.version, r.revision,
                                        CaseOutcome(r.outcome)))
            elif lookup is not None and (s := lookup(case_id)) is not None:
                found.append(StoredCase(case_id, s.tool, s.version, s.revision,
                                        CaseOutcome(s.outcome)))
        return found


def with_link(alert: Alert, link: AdverseLink) -> Alert:
    """Say on the received alert what the report was linked to, so on-call need not look."""
    if alert.kind != "adverse_event":
        return alert
    if link.case_id is None:
        context = "no adjudicated case found for the accession"
    else:
        agrees = {True: "agrees with the report", False: "does NOT agree with the report",
                  None: "cannot confirm the report"}[link.consistent]
        outcome = link.case_outcome.value if link.case_outcome else "unknown"
        context = f"linked case outcome {outcome} ({agrees})"
    if link.clearance_matches is False:
        context += f"; clearance number differs from the registry ({link.registry_clearance})"
    return alert.model_copy(update={
        "summary": f"{alert.summary}; {context}"[:1000],
        "details": {**alert.details, "case_outcome": link.case_outcome, "consistent":
                    link.consistent},
    })
