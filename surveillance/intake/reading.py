"""Reading a stored report: who may, the audit of every read, and its private text.

Every read of a report is audited: a row in the store and a log line (who, when, which
reference; nothing from the report).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from fastapi import HTTPException

from surveillance.contracts import AdverseEvent
from surveillance.intake.auth import Identity, is_reviewer
from surveillance.intake.config import IntakeSettings
from surveillance.intake.sealing import Sealer, SealError, join
from surveillance.intake.store import ReportStore, StoredReport

audit_log = logging.getLogger("surveillance.intake.audit")
NO_SUCH_REPORT = "There is no report with this reference that you may read."


class Reader:
    def __init__(self, store: ReportStore, sealer: Sealer, cfg: IntakeSettings) -> None:
        self._store, self._sealer, self._cfg = store, sealer, cfg

    def audited(self, identity: Identity, action: str, references: Sequence[str]) -> None:
        at = datetime.now(UTC)
        self._store.audit(at, identity.id, action, references)
        audit_log.info(
            "report %s by=%s at=%s references=%s",
            action,
            identity.id,
            at.isoformat(timespec="seconds"),
            ",".join(references) or "-",
        )

    def readable(self, identity: Identity, reference: str) -> StoredReport:
        """The report, if this identity may read it (audited either way); else 404."""
        report = self._store.get(reference) if len(reference) <= 64 else None
        if report is None:
            raise HTTPException(404, NO_SUCH_REPORT)
        if report.submitted_by != identity.id and not is_reviewer(identity, self._cfg):
            self.audited(identity, "read-refused", [report.reference])
            raise HTTPException(404, NO_SUCH_REPORT)
        self.audited(identity, "read", [report.reference])
        return report

    def full_event(self, report: StoredReport) -> tuple[AdverseEvent, str | None]:
        """The event with its private text, or with `NOT_KEPT` and the reason why."""
        try:
            private = self._sealer.open(report.sealed, report.submission_key)
        except SealError as exc:
            return report.event, str(exc)
        if private is None:
            return report.event, (
                "The narrative and the reporter's name and contact are not kept by this "
                "intake (no store key is configured)."
            )
        return join(report.event, private), None
