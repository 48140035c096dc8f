"""A drift finding, and the alert that says what changed, by how much, since when, where,
compared with what.

The alert's summary is one sentence a reader can act on, for example::

    ich-triage: kvp mean 120 -> 100 kV (median 120 -> 100 kV) at site-b since 2026-08-15;
    psi 2.58 vs threshold 0.41 (n=91); reference 2026-07-01..2026-07-30 (n=2712)

Alert ids are a hash of the tool, version, kind, feature (and category) and the day the
drift episode began: replaying the same stream gives the same ids, so the store and
Alertmanager deduplicate them; an episode is one alert, whatever the detector.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

from surveillance.contracts import Alert, AlertSeverity
from surveillance.stats.drift_wording import Summary, clip, quoted

#: The `Alert` contract's longest summary.
SUMMARY_LIMIT = 1_000

VerdictKind = Literal["input_drift", "output_drift", "new_category"]


@dataclass(frozen=True)
class DriftVerdict:
    """One drift finding with what a reader needs to judge it."""

    tool_id: str
    software_version: str | None
    kind: VerdictKind
    feature: str
    detector: str
    statistic: float | None
    threshold: float | None
    magnitude: float | None
    magnitude_unit: str
    window_start: datetime
    detected_at: datetime
    n_reference: int
    n_current: int
    reference: Summary
    current: Summary
    first_seen: datetime | None = None
    cause_hint: str | None = None
    category: str | None = None
    #: Every windowed test of the feature in this window: (test, value, threshold).
    tests: tuple[tuple[str, float, float], ...] = ()
    #: What moved, in the feature's units ("mean 120 -> 100 kV", "'X' 0% -> 33% of studies").
    change: str = ""
    #: The site where the shift concentrates, when one does (then `change` is that site's).
    site: str | None = None
    #: Total variation distance of the window from the reference, per site.
    by_site: tuple[tuple[str, float], ...] = ()
    #: First and last day (UTC) of the reference period.
    reference_period: tuple[date, date] | None = None
    #: Start of the drift episode (the first window that crossed).
    since: datetime | None = None
    #: The drift family's false alarms per tool-year (None for new-category notices,
    #: which are facts outside the budget).
    alarms_per_year: float | None = None

    @property
    def episode_start(self) -> datetime:
        return self.since or self.first_seen or self.window_start

    def sentence(self) -> str:
        """The alert summary: what, how much, where, since when, compared with what."""
        who = self.tool_id + (f" {self.software_version}" if self.software_version else "")
        where = f" at {self.site}" if self.site else ""
        if self.kind == "new_category":
            seen = self.first_seen or self.detected_at
            text = (
                f"{who}: new {self.feature} {quoted(self.category or '')}{where} first seen "
                f"{seen:%Y-%m-%d %H:%M} UTC, never seen in the reference"
            )
        else:
            text = (
                f"{who}: {self.feature} {self.change}{where or ' across sites'} since "
                f"{self.episode_start:%Y-%m-%d}; {self.detector}"
            )
            if self.statistic is not None and self.threshold is not None:
                text += f" {self.statistic:.3g} vs threshold {self.threshold:.3g}"
            text += f" (n={self.n_current})"
        text += f"; reference {self._reference_text()}"
        if self.cause_hint:
            text += f"; likely cause: {self.cause_hint}"
        return text

    def _reference_text(self) -> str:
        if self.reference_period is None:
            return f"n={self.n_reference}"
        first, last = self.reference_period
        return f"{first.isoformat()}..{last.isoformat()} (n={self.n_reference})"

    def to_alert(self) -> Alert:
        """The `surveillance.alerts` event for this verdict (id is deterministic)."""
        started = "" if self.kind == "new_category" else self.episode_start.date().isoformat()
        key = "|".join(
            [
                self.tool_id,
                self.software_version or "",
                self.kind,
                self.feature,
                self.category or "",
                started,
            ]
        )
        return Alert(
            alert_id="drift-" + hashlib.sha256(key.encode()).hexdigest()[:40],
            kind=self.kind,
            severity=AlertSeverity.INFO if self.kind == "new_category" else AlertSeverity.WARNING,
            raised_at=self.detected_at,
            tool_id=self.tool_id,
            software_version=self.software_version,
            site=self.site,
            metric=f"{self.feature}:{self.detector}",
            value=self.statistic,
            n=self.n_current,
            window=self.window_start.date().isoformat(),
            since=self.episode_start,
            subgroup={"site": self.site} if self.site else None,
            summary=clip(self.sentence(), SUMMARY_LIMIT),
            details={
                "feature": self.feature,
                "detector": self.detector,
                "threshold": self.threshold,
                "family": None if self.kind == "new_category" else "drift",
                "family_false_alarms_per_year": self.alarms_per_year,
                "change": self.change,
                "magnitude": self.magnitude,
                "magnitude_unit": self.magnitude_unit,
                "reference": dict(self.reference),
                "current": dict(self.current),
                "n_reference": self.n_reference,
                "reference_period": (
                    [d.isoformat() for d in self.reference_period]
                    if self.reference_period
                    else None
                ),
                "by_site": dict(self.by_site),
                "first_seen": self.first_seen.isoformat() if self.first_seen else None,
                "cause_hint": self.cause_hint,
                "tests": [list(t) for t in self.tests],
            },
        )
