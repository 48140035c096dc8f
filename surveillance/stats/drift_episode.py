"""A feature's drift episode, and who and what its verdicts speak for.

A feature enters drift on the first window where any of its detectors crosses; that
window gives ONE verdict. Later crossings of the same feature, by any detector, extend
the episode without a new verdict; the episode ends after `clear_after` tested windows
with no crossing. A lasting shift (a new protocol) is one alert, not one per day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from surveillance.stats.drift_features import Role
from surveillance.stats.drift_verdict import VerdictKind


@dataclass
class VerdictContext:
    """Who, when and compared with what, shared by every verdict of one feature bank."""

    tool_id: str
    software_version: str | None
    role: Role
    reference_period: tuple[date, date] | None = None
    #: The drift family's false alarms per tool-year (what its alerts say they draw on).
    alarms_per_year: float | None = None

    @property
    def kind(self) -> VerdictKind:
        return "input_drift" if self.role == "input" else "output_drift"


class Episode:
    """Edge trigger of one feature across all its detectors (see module doc)."""

    def __init__(self, clear_after: int) -> None:
        self.clear_after = clear_after
        self.since: datetime | None = None
        self._quiet = 0

    def observe(self, crossed: bool, tested: bool, at: datetime) -> bool:
        """Record one window; True when it opens a new episode."""
        if crossed:
            opened = self.since is None
            if opened:
                self.since = at
            self._quiet = 0
            return opened
        if self.since is not None and tested:
            self._quiet += 1
            if self._quiet >= self.clear_after:
                self.since, self._quiet = None, 0
        return False
