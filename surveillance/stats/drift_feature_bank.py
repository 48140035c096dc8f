"""The calibrated detectors of one role (a tool's inputs, or one version's outputs).

Events come in as columns (`Columns`: one list per feature, with each event's time and
site), a day at a time: each feature counts its column with one pass of C-level
counting, and its per-event detector runs over the column in one loop, instead of a
method call per event per feature. Thresholds come from `drift_calibration` (windows)
and `stream_calibration` (per-event detectors) through a `Calibrations` cache, with the
drift family's share of the tool's false-alarm budget (`stats.alarm_budget`) split over
all its features, per tool on its own reference (categorical features with one
pseudo-category the reference never saw, so that rare unseen categories are part of the
null), on simulated windows whose sizes are resampled from the reference's own days,
and never below what one event can move. A feature with fewer than
`min_reference_events` non-missing values in its reference (kVp on fundus photographs)
is not monitored (`disabled`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from surveillance.stats.categorical_drift import MISSING
from surveillance.stats.drift_calibration import FalseAlarmBudget
from surveillance.stats.drift_calibration_cache import Calibrations, Entries, Uncached
from surveillance.stats.drift_categorical_feature import CategoricalFeature
from surveillance.stats.drift_episode import VerdictContext
from surveillance.stats.drift_features import (
    FEATURES_BY_NAME,
    DriftBankConfig,
    FeatureSpec,
    FeatureValue,
)
from surveillance.stats.drift_numeric_feature import NumericFeature
from surveillance.stats.drift_verdict import DriftVerdict

Feature = NumericFeature | CategoricalFeature


@dataclass
class Columns:
    """Events of one role in event-time order: times, sites, one list per feature."""

    ats: list[datetime] = field(default_factory=list)
    sites: list[str] = field(default_factory=list)
    values: list[list[FeatureValue]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ats)

    def extend(self, other: Columns) -> None:
        if not self.values:
            self.values = [[] for _ in other.values]
        self.ats += other.ats
        self.sites += other.sites
        for mine, theirs in zip(self.values, other.values, strict=True):
            mine += theirs


@dataclass
class Reference:
    """What a `FeatureBank` is built and calibrated on, by value (its features by name):
    a caller can have the thresholds computed elsewhere (another process) and then build
    the bank from the cache."""

    features: tuple[str, ...]
    rows: Columns
    days: int
    ctx: VerdictContext
    config: DriftBankConfig

    def build(self, calibrations: Calibrations) -> FeatureBank:
        specs = tuple(FEATURES_BY_NAME[name] for name in self.features)
        # A copy: the bank sets the context's reference period, which is the caller's.
        return FeatureBank(specs, self.rows, self.days, copy.copy(self.ctx), self.config,
                           calibrations)


def thresholds_of(references: Sequence[Reference]) -> Entries:
    """The thresholds the banks built on `references` need (the Monte Carlo runs here)."""
    calibrations = Calibrations()
    for reference in references:
        reference.build(calibrations)
    return calibrations.entries()


def all_cached(references: Sequence[Reference], calibrations: Calibrations) -> bool:
    """Whether building on `references` needs no simulation (every threshold cached)."""
    view = calibrations.cached_only()
    try:
        for reference in references:
            reference.build(view)
    except Uncached:
        return False
    return True


class FeatureBank:
    def __init__(
        self,
        specs: Sequence[FeatureSpec],
        reference: Columns,
        reference_days: int,
        ctx: VerdictContext,
        config: DriftBankConfig,
        calibrations: Calibrations,
    ) -> None:
        budget = FalseAlarmBudget(len(config.features), config.alarms_per_quarter, config.window)
        events_per_day = config.events_per_day or len(reference) / reference_days
        days = [at.astimezone(UTC).date() for at in reference.ats]
        first, last = min(days), max(days)
        ctx.reference_period = (first, last)
        window_sizes = None
        if config.window == "daily" and config.events_per_day is None:
            per_day = {d: 0 for d in (first + timedelta(i) for i in range(reference_days))}
            for d in days:
                per_day[d] = per_day.get(d, 0) + 1
            window_sizes = list(per_day.values())
        self.features: list[Feature | None] = []
        self.disabled: list[str] = []
        for spec, column in zip(specs, reference.values, strict=True):
            feature = _build(spec, column, reference.sites, ctx, config, budget, events_per_day,
                             window_sizes, calibrations)
            self.features.append(feature)
            if feature is None:
                self.disabled.append(spec.name)

    def add(self, batch: Columns) -> list[DriftVerdict]:
        """Count a batch; the new-category notices in event order (then feature order)."""
        found: list[tuple[int, int, DriftVerdict]] = []
        for f, (feature, column) in enumerate(zip(self.features, batch.values, strict=True)):
            if isinstance(feature, NumericFeature):
                feature.add(column, batch.sites)
            elif feature is not None:
                found += [(i, f, v) for i, v in feature.add(column, batch.sites, batch.ats)]
        return [v for _, _, v in sorted(found, key=lambda item: item[:2])]

    def close_window(self, window_start: datetime, at: datetime) -> list[DriftVerdict]:
        """Verdicts of the episodes this window opens."""
        verdicts: list[DriftVerdict] = []
        for feature in self.features:
            if feature is not None:
                verdict = feature.close_window(window_start, at)
                if verdict is not None:
                    verdicts.append(verdict)
        return verdicts


def _build(
    spec: FeatureSpec,
    column: Sequence[FeatureValue],
    sites: Sequence[str],
    ctx: VerdictContext,
    config: DriftBankConfig,
    budget: FalseAlarmBudget,
    events_per_day: float,
    window_sizes: Sequence[int] | None,
    calibrations: Calibrations,
) -> Feature | None:
    args = (ctx, config, budget, events_per_day, window_sizes, calibrations)
    if spec.kind == "numeric":
        values = np.array([math.nan if v is None else float(v) for v in column])
        if int((~np.isnan(values)).sum()) < config.min_reference_events:
            return None
        return NumericFeature(spec, values, sites, *args)
    present = [MISSING if v is None else str(v) for v in column]
    if sum(1 for v in column if v is not None) < config.min_reference_events:
        return None
    return CategoricalFeature(spec, present, sites, *args)
