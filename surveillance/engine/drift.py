"""The drift banks of the case stage: one per tool, the worker's configuration.

Calibration (seconds of Monte Carlo per tool reference and software version) is kept out
of `advance`: with `calibrate_inline=False` a bank's clock stops at the day its reference
must be calibrated, and the caller runs `calibrate_due` when it chooses (the case stage:
after the clock moved, as its own step). Thresholds are cached across the banks and
their rebuilds (`stats.drift_calibration_cache`): a rebuild after a rebalance replays the
stored cases without simulating again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from surveillance.clinical.ledger import CaseRecord
from surveillance.contracts import AdjudicatedCase, AIResult, Alert
from surveillance.stats.drift_bank import DriftBank
from surveillance.stats.drift_calibration_cache import Calibrations
from surveillance.stream.case_features import as_ai_result, new_bank, rebuild_drift_banks

log = logging.getLogger(__name__)


class DriftBanks:
    def __init__(
        self,
        banks: dict[str, DriftBank] | None = None,
        calibrations: Calibrations | None = None,
        *,
        calibrate_inline: bool = True,
    ) -> None:
        self.banks = banks if banks is not None else {}
        self.calibrations = calibrations if calibrations is not None else Calibrations()
        self.calibrate_inline = calibrate_inline

    def bank(self, tool: str) -> DriftBank:
        bank = self.banks.get(tool)
        if bank is None:
            bank = self.banks[tool] = new_bank(tool, self.calibrations,
                                               calibrate_inline=self.calibrate_inline)
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

    def calibrate_due(self, tool: str) -> list[Alert]:
        """Calibrate the tool's bank if its clock waits for it; the alerts of the days
        evaluated after it."""
        bank = self.banks.get(tool)
        if bank is None or not bank.calibration_due:
            return []
        return [v.to_alert() for v in bank.calibrate()]

    def rebuild(self, records: Iterable[CaseRecord]) -> None:
        """Banks of the owned tools, rebuilt from their stored cases (not restarted)."""
        stored = list(records)
        # The replay calibrates as it goes (from the cache when it was done before).
        rebuilt = rebuild_drift_banks(stored, lambda tool: new_bank(tool, self.calibrations))
        for bank in rebuilt.values():
            bank.calibrate_inline = self.calibrate_inline
        self.banks.clear()
        self.banks.update(rebuilt)
        if rebuilt:
            log.info("drift banks rebuilt from %d stored cases: %s", len(stored),
                     ", ".join(f"{t} (monitoring: {b.monitoring})"
                               for t, b in sorted(rebuilt.items())))
