"""Reports with their regulatory obligations and status, for the web listing and the CLI."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from surveillance.clinical.regulatory_clock import Obligation, ObligationStatus, obligations, status
from surveillance.intake.store import ReportStore, StoredReport, store_path


@dataclass(frozen=True)
class ObligationRow:
    regime: str
    recipient: str
    due: date
    status: ObligationStatus
    basis: str


@dataclass(frozen=True)
class ReportRow:
    reference: str
    received_at: datetime
    aware_date: date
    tool_id: str
    software_version: str
    outcome: str
    discordance_type: str
    obligations: tuple[ObligationRow, ...]

    @property
    def open(self) -> bool:
        return any(o.status is not ObligationStatus.DONE for o in self.obligations)


def report_obligations(report: StoredReport) -> list[Obligation]:
    event = report.event
    maker = event.device.manufacturer.strip()
    return obligations(
        event.event.outcome,
        event.aware_date,
        manufacturer_known=bool(maker) and maker.casefold() != "unknown",
    )


def to_row(report: StoredReport, today: date) -> ReportRow:
    e = report.event
    return ReportRow(
        reference=report.reference,
        received_at=e.received_at,
        aware_date=e.aware_date,
        tool_id=e.device.tool_id,
        software_version=e.device.software_version,
        outcome=e.event.outcome.value,
        discordance_type=e.discordance_type.value,
        obligations=tuple(
            ObligationRow(
                o.regime, o.recipient, o.due, status(o, today, o.key in report.done), o.basis
            )
            for o in report_obligations(report)
        ),
    )


def list_open_reports(state_dir: Path, now: datetime) -> list[ReportRow]:
    """Reports with at least one obligation not yet reported, newest first.

    `now` is in the facility's time zone; its date decides due-soon and overdue.
    """
    path = store_path(state_dir)
    if not path.exists():
        return []
    rows = (to_row(r, now.date()) for r in ReportStore(path).recent())
    return [r for r in rows if r.open]
