"""The drift banks of the case stage: one per tool, the worker's configuration.

Calibration (seconds of Monte Carlo per tool reference and software version) is kept out
of `advance`: with `calibrate_inline=False` a bank's clock stops at the day its reference
must be calibrated, and the caller runs `calibrate_due` when it chooses (the case stage:
after the clock moved, as its own step). Thresholds are cached across the banks and
their rebuilds (`stats.drift_calibration_cache`): a rebuild after a rebalance replays the
stored cases without simulating again.

With a `Calibrator` (the bulk runner's calibration process) the Monte Carlo runs
elsewhere. A tool whose `calibrate_due` finds thresholds missing is held: its bank is
not touched until they arrive, and every drift call for it meanwhile (`update`,
`advance`, `calibrate_due`, in order) is queued; once they are installed (`collect`),
the bank is calibrated from the cache and the queue replayed. The bank then sees
exactly the calls, in the same order, that it sees when calibrating in process, so its
verdicts and alerts are the same whenever the thresholds arrive; only the batch that
carries the alerts is later. A held tool's state snapshot waits too (`engine.snapshots`),
so no snapshot holds a queue: a restart rewinds to the tool's last snapshot before the
hold and submits its calibration again.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Protocol

from surveillance.clinical.ledger import CaseRecord
from surveillance.contracts import AdjudicatedCase, AIResult, Alert
from surveillance.stats.drift_bank import DriftBank
from surveillance.stats.drift_calibration_cache import Calibrations, Entries
from surveillance.stats.drift_feature_bank import Reference, all_cached
from surveillance.stream.case_features import as_ai_result, new_bank, rebuild_drift_banks

log = logging.getLogger(__name__)

_UPDATE, _ADVANCE, _CALIBRATE = range(3)
_Call = tuple[int, AIResult | datetime | None]


class Calibrator(Protocol):
    """Computes thresholds away from the caller (`stats.drift_feature_bank.thresholds_of`)."""

    def submit(self, job: int, references: list[Reference]) -> None:
        """Start computing the thresholds of `references`; `results` hands them back."""

    def results(self, block: bool) -> list[tuple[int, Entries]]:
        """The jobs finished since the last call; `block`: wait for at least one."""


class DriftBanks:
    def __init__(
        self,
        banks: dict[str, DriftBank] | None = None,
        calibrations: Calibrations | None = None,
        *,
        calibrate_inline: bool = True,
        calibrator: Calibrator | None = None,
    ) -> None:
        self.banks = banks if banks is not None else {}
        self.calibrations = calibrations if calibrations is not None else Calibrations()
        self.calibrate_inline = calibrate_inline
        self.calibrator = calibrator
        #: Per held tool, the drift calls waiting for its thresholds, in order.
        self._held: dict[str, deque[_Call]] = {}
        #: Submitted jobs and the tool each one holds.
        self._jobs: dict[int, str] = {}
        self._next_job = 0

    @property
    def held(self) -> Collection[str]:
        """The tools waiting for thresholds from the calibrator."""
        return self._held.keys()

    def bank(self, tool: str) -> DriftBank:
        bank = self.banks.get(tool)
        if bank is None:
            bank = self.banks[tool] = new_bank(tool, self.calibrations,
                                               calibrate_inline=self.calibrate_inline)
        return bank

    def update(self, tool: str, result: AIResult) -> None:
        """A new case's AI result into its tool's bank."""
        held = self._held.get(tool)
        if held is not None:
            held.append((_UPDATE, result))
            return
        self.bank(tool).update(result)

    def take(self, previous: CaseRecord | None, case: AdjudicatedCase) -> DriftBank:
        """The case's tool bank, with the case's AI result in if the case is new."""
        bank = self.bank(case.tool_id)
        if previous is None:
            bank.update(as_ai_result(case))
        return bank

    def advance(self, tool: str, clock: datetime) -> list[Alert]:
        held = self._held.get(tool)
        if held is not None:
            held.append((_ADVANCE, clock))
            return []
        return [v.to_alert() for v in self.bank(tool).advance(clock)]

    def calibrate_due(self, tool: str) -> list[Alert]:
        """Calibrate the tool's bank if its clock waits for it; the alerts of the days
        evaluated after it (with a calibrator and thresholds missing: none yet, the tool
        is held until they arrive)."""
        held = self._held.get(tool)
        if held is not None:
            held.append((_CALIBRATE, None))
            return []
        return self._calibrate(tool)

    def collect(self, block: bool = False) -> list[Alert]:
        """Thresholds the calibrator has finished: installed, and the tools they held
        calibrated and their queued calls replayed; the alerts of it. `block`: wait for
        at least one."""
        if self.calibrator is None or not self._jobs:
            return []
        alerts: list[Alert] = []
        for job, entries in self.calibrator.results(block):
            self.calibrations.install(entries)
            tool = self._jobs.pop(job, None)
            if tool is not None:  # else its tool was rebuilt meanwhile
                alerts += self._release(tool)
        return alerts

    def settle(self) -> list[Alert]:
        """Every held tool released (waits for the calibrator); the alerts of it."""
        alerts: list[Alert] = []
        while self._held:
            alerts += self.collect(block=True)
        return alerts

    def _calibrate(self, tool: str) -> list[Alert]:
        bank = self.banks.get(tool)
        if bank is None or not bank.calibration_due:
            return []
        if self.calibrator is not None:
            references = bank.references_due()
            if not all_cached(references, self.calibrations):
                job, self._next_job = self._next_job, self._next_job + 1
                self._jobs[job] = tool
                self._held[tool] = deque()
                self.calibrator.submit(job, references)
                return []
        return [v.to_alert() for v in bank.calibrate()]

    def _release(self, tool: str) -> list[Alert]:
        calls = self._held.pop(tool)
        bank = self.banks[tool]
        alerts = [v.to_alert() for v in bank.calibrate()]  # from the cache now
        while calls:
            kind, argument = calls.popleft()
            if kind == _UPDATE:
                assert isinstance(argument, AIResult)
                bank.update(argument)
            elif kind == _ADVANCE:
                assert isinstance(argument, datetime)
                alerts += [v.to_alert() for v in bank.advance(argument)]
            else:
                alerts += self._calibrate(tool)
                if tool in self._held:  # another reference to calibrate: held again
                    self._held[tool] = calls
                    break
        return alerts

    def rebuild(self, records: Iterable[CaseRecord]) -> None:
        """Banks of the owned tools, rebuilt from their stored cases (not restarted)."""
        stored = list(records)
        # The held calls belong to the banks replaced here; a job still out only fills
        # the cache when it arrives.
        self._held.clear()
        self._jobs.clear()
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
