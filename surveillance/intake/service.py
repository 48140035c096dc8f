"""Accepting one report: dedup by submission id, publish, then remember it.

A report counts as recorded only after the broker acknowledged it; it is written to the
local store after that, so a resubmission of the same id finds it and publishes nothing.
A publish that fails leaves no record, so the person's retry publishes again (the same
`event_id`: if the failed attempt did reach the topic, consumers drop the copy).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from surveillance.clinical.baselines import ToolBaseline
from surveillance.clinical.regulatory_clock import Obligation
from surveillance.contracts import AdverseEvent
from surveillance.intake.errors import SubmissionConflict
from surveillance.intake.listing import report_obligations
from surveillance.intake.publisher import Publisher
from surveillance.intake.store import ReportStore, StoredReport
from surveillance.intake.submission import (
    AdverseEventSubmission,
    content_hash,
    reference_for,
    to_event,
)
from surveillance.privacy import pseudonymize

_LOCK_STRIPES = 64


@dataclass(frozen=True)
class Receipt:
    reference: str
    submission_id: str
    duplicate: bool
    obligations: tuple[Obligation, ...]


class IntakeService:
    def __init__(
        self,
        publisher: Publisher,
        store: ReportStore,
        key: bytes,
        registry: Mapping[str, ToolBaseline],
        clock: Callable[[], datetime],
    ) -> None:
        self.publisher = publisher
        self.store = store
        self.key = key
        self.registry = registry
        self.clock = clock
        # Striped locks: two concurrent submissions of one id cannot both publish.
        self._locks = [threading.Lock() for _ in range(_LOCK_STRIPES)]

    @staticmethod
    def new_submission_id() -> str:
        return uuid.uuid4().hex

    def submit(self, sub: AdverseEventSubmission, submitted_by: str) -> Receipt:
        """Record the report; raises `PublishError` (not recorded) or `SubmissionConflict`."""
        sid = sub.submission_id or self.new_submission_id()
        skey = pseudonymize(self.key, "submission", sid)
        reference = reference_for(self.key, sid)
        chash = content_hash(self.key, sub, submitted_by)
        with self._locks[hash(skey) % _LOCK_STRIPES]:
            existing = self.store.find(skey)
            if existing is not None:
                if existing.content_hash != chash:
                    raise SubmissionConflict(existing.reference)
                return Receipt(existing.reference, sid, True, self._obligations(existing.event))
            event = to_event(sub, sid, self.clock(), self.key, self.registry)
            self.publisher.publish(event.device.tool_id.encode(), event.model_dump_json().encode())
            self.store.add(skey, reference, chash, submitted_by, event)
        return Receipt(reference, sid, False, self._obligations(event))

    @staticmethod
    def _obligations(event: AdverseEvent) -> tuple[Obligation, ...]:
        return tuple(report_obligations(StoredReport("", "", event, frozenset())))
