"""The drift banks of the case stage: one per tool, the worker's configuration."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from surveillance.clinical.ledger import CaseRecord
from surveillance.contracts import AdjudicatedCase, AIResult, Alert
from surveillance.stats.drift_bank import DriftBank
from surveillance.stream.case_features import as_ai_result, new_bank, rebuild_drift_banks

log = logging.getLogger(__name__)


class DriftBanks:
    def __init__(self, banks: dict[str, DriftBank] | None = None) -> None:
        self.banks = banks if banks is not None else {}

    def bank(self, tool: str) -> DriftBank:
        bank = self.banks.get(tool)
        if bank is None:
            bank = self.banks[tool] = new_bank(tool)
        return bank

    def update(self, tool: str, result: AIResult) -> None:
        """A new case's AI result into its tool's bank."""
        self.bank(tool).update(result)

    def take(self, previous: CaseRecord | None, case: AdjudicatedCase) -> DriftBank:
        """The case's tool bank, with the case's AI result in if the case is new."""
        bank = self.bank(case.tool_id)
        if previous is None:
            bank.update(as_ai_result(case))
        return bank

    def advance(self, tool: str, clock: datetime) -> list[Alert]:
        return [v.to_alert() for v in self.bank(tool).advance(clock)]

    def rebuild(self, records: Iterable[CaseRecord]) -> None:
        """Banks of the owned tools, rebuilt from their stored cases (not restarted)."""
        stored = list(records)
        rebuilt = rebuild_drift_banks(stored, new_bank)
        self.banks.clear()
        self.banks.update(rebuilt)
        if rebuilt:
            log.info("drift banks rebuilt from %d stored cases: %s", len(stored),
                     ", ".join(f"{t} (monitoring: {b.monitoring})"
                               for t, b in sorted(rebuilt.items())))
