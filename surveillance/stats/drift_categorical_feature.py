"""One categorical feature of a drift bank: PSI, Jensen-Shannon and chi-square per window
(`categorical_drift`), and a one-time notice the first time a category absent from the
reference appears."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, time
from typing import cast

import numpy as np

from surveillance.stats.categorical_drift import (
    MISSING,
    CategoricalDriftDetector,
    WindowResult,
    WindowTestName,
)
from surveillance.stats.drift_calibration import WINDOW_DAYS, FalseAlarmBudget, calibration_seed
from surveillance.stats.drift_calibration_cache import Calibrations
from surveillance.stats.drift_episode import Episode, VerdictContext
from surveillance.stats.drift_features import DriftBankConfig, FeatureSpec, FeatureValue
from surveillance.stats.drift_verdict import DriftVerdict
from surveillance.stats.drift_wording import (
    MIN_SITE_EVENTS,
    category_change,
    category_summary,
    concentrated,
    total_variation,
)
from surveillance.stats.psi import FloatArray


class CategoricalFeature:
    def __init__(
        self,
        spec: FeatureSpec,
        values: Sequence[str],
        sites: Sequence[str],
        ctx: VerdictContext,
        config: DriftBankConfig,
        budget: FalseAlarmBudget,
        events_per_day: float,
        window_sizes: Sequence[int] | None,
        calibrations: Calibrations,
    ) -> None:
        self.spec = spec
        self.ctx = ctx
        counts: dict[str, int] = {}
        self.site_reference: dict[str, dict[str, int]] = {}
        for v, s in zip(values, sites, strict=True):
            counts[v] = counts.get(v, 0) + 1
            per_site = self.site_reference.setdefault(s, {})
            per_site[v] = per_site.get(v, 0) + 1
        self.reference_counts = counts
        self.n_reference = len(values)
        self.reference_summary = category_summary(list(counts), list(counts.values()))
        # One pseudo-category the reference never saw: rare unseen categories are part of
        # the null.
        thresholds = calibrations.window_thresholds(
            np.array([*counts.values(), 0], dtype=np.float64),
            events_per_day * WINDOW_DAYS[config.window],
            budget.per_window_rate(budget.per_feature),
            # Its own seed (`drift_calibration.calibration_seed`).
            seed=calibration_seed(config.seed, ctx.tool_id, ctx.role, ctx.software_version,
                                  spec.name, "window"),
            tests=("psi", "jensen_shannon", "chi_square"),
            min_window_events=config.min_window_events,
            window_sizes=window_sizes,
            # Calibrated with the detector's own gate, so the rate is the detector's.
            min_total_variation=config.min_total_variation,
        )
        self.detector = CategoricalDriftDetector(
            spec.name,
            counts,
            thresholds,
            min_window_events=config.min_window_events,
            clear_after=config.clear_after_windows,
            min_total_variation=config.min_total_variation,
        )
        self.min_total_variation = config.min_total_variation
        self.episode = Episode(config.clear_after_windows)
        #: The last tested window's (detector, statistic), for the Prometheus gauges.
        self.last_statistic: tuple[str, float] | None = None
        self.window_values: list[str] = []
        self.window_sites: list[str] = []

    def add(
        self, values: Sequence[FeatureValue], sites: Sequence[str], ats: Sequence[datetime]
    ) -> list[tuple[int, DriftVerdict]]:
        """One batch of events in event-time order; the notices of categories first seen,
        each with its event's index in the batch."""
        # Categorical features read a str or None (`drift_features`): only a missing
        # value needs replacing, and a scan for one is C code.
        categories = cast(
            list[str], [MISSING if v is None else v for v in values] if None in values
            else list(values)
        )
        before = len(self.window_values)
        self.window_values += categories
        self.window_sites += sites
        out = []
        for i, new in self.detector.update_many(categories, ats):
            site = sites[i] if self.ctx.role == "input" and self.spec.name != "site" else None
            at = ats[i]
            out.append((i, DriftVerdict(
                tool_id=self.ctx.tool_id,
                software_version=self.ctx.software_version,
                kind="new_category",
                feature=self.spec.name,
                detector="new_category",
                statistic=None,
                threshold=None,
                magnitude=None,
                magnitude_unit="none",
                window_start=datetime.combine(at.astimezone(UTC).date(), time(), UTC),
                detected_at=at,
                n_reference=self.n_reference,
                n_current=before + i + 1,
                reference=self.reference_summary,
                current=(),
                first_seen=new.first_seen,
                category=new.category,
                site=site,
                reference_period=self.ctx.reference_period,
            )))
        return out

    def close_window(self, window_start: datetime, at: datetime) -> DriftVerdict | None:
        """A verdict when the window opens an episode, else None."""
        values, sites = self.window_values, self.window_sites
        self.window_values, self.window_sites = [], []
        result = self.detector.close_window()
        if result is not None:
            self.last_statistic = ("psi", float(result.statistic("psi")))
        crossed = result is not None and bool(result.crossed)
        if not self.episode.observe(crossed, result is not None, window_start):
            return None
        assert result is not None
        return self._verdict(result, result.crossed[0], values, sites, window_start, at)

    def _by_site(self, values: list[str], sites: list[str]) -> list[tuple[str, float]]:
        if self.ctx.role != "input" or self.spec.name == "site":
            return []
        out = []
        for site, ref_counts in self.site_reference.items():
            cur = [c for c, s in zip(values, sites, strict=True) if s == site]
            if len(cur) >= MIN_SITE_EVENTS and sum(ref_counts.values()) >= MIN_SITE_EVENTS:
                ref, now = _aligned(ref_counts, cur)
                out.append((site, total_variation(ref, now)))
        return out

    def _verdict(
        self,
        result: WindowResult,
        test: WindowTestName,
        values: list[str],
        sites: list[str],
        window_start: datetime,
        at: datetime,
    ) -> DriftVerdict:
        thresholds = self.detector.reference.thresholds
        by_site = self._by_site(values, sites)
        site = concentrated(by_site, self.min_total_variation)
        if site is not None:
            at_site = [c for c, s in zip(values, sites, strict=True) if s == site]
            change = category_change(self.site_reference[site], at_site)
        else:
            change = category_change(self.reference_counts, values)
        return DriftVerdict(
            tool_id=self.ctx.tool_id,
            software_version=self.ctx.software_version,
            kind=self.ctx.kind,
            feature=self.spec.name,
            detector=test,
            statistic=result.statistic(test),
            threshold=thresholds.value(test),
            magnitude=result.total_variation,
            magnitude_unit="total_variation",
            window_start=window_start,
            detected_at=at,
            n_reference=self.n_reference,
            n_current=result.n,
            reference=self.reference_summary,
            current=category_summary(list(result.labels), list(result.current_counts)),
            tests=tuple(
                (t, result.statistic(t), thresholds.value(t)) for t in self.detector.reference.tests
            ),
            change=change,
            site=site,
            by_site=tuple(sorted(by_site)),
            reference_period=self.ctx.reference_period,
            since=self.episode.since,
            alarms_per_year=self.ctx.alarms_per_year,
        )


def _aligned(ref_counts: dict[str, int], current: Sequence[str]) -> tuple[FloatArray, FloatArray]:
    cur_counts: dict[str, int] = {}
    for c in current:
        cur_counts[c] = cur_counts.get(c, 0) + 1
    keys = sorted(set(ref_counts) | set(cur_counts))
    ref = np.array([ref_counts.get(k, 0) for k in keys], dtype=np.float64)
    now = np.array([cur_counts.get(k, 0) for k in keys], dtype=np.float64)
    return ref, now
