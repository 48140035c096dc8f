"""One numeric feature of a drift bank: PSI per window, and a per-event detector.

PSI per window on the bins of `drift_binning` (plus a missing-value bin), and, for
continuous features only, a per-event river detector (Page-Hinkley by default, or ADWIN)
on values standardised by the reference mean and SD. A feature with at most `n_bins`
distinct reference values (kVp and slice thickness on CT, fixed by the protocol) gets
one bin per value and an empty bin on each side, so the windowed test sees every
change, upward or downward; a per-event detector there would standardise by an SD of
about 0 and turn any change into an alarm on every event. A continuous feature's common
value (a near-constant feature) gets a bin of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import cast

import numpy as np

from surveillance.stats.categorical_drift import WindowedDistributionTest
from surveillance.stats.drift_binning import drift_edges, is_discrete
from surveillance.stats.drift_calibration import (
    DAYS_PER_QUARTER,
    WINDOW_DAYS,
    FalseAlarmBudget,
    calibration_seed,
)
from surveillance.stats.drift_calibration_cache import Calibrations
from surveillance.stats.drift_episode import Episode, VerdictContext
from surveillance.stats.drift_features import DriftBankConfig, FeatureSpec, FeatureValue
from surveillance.stats.drift_verdict import DriftVerdict
from surveillance.stats.drift_wording import (
    MIN_SITE_EVENTS,
    concentrated,
    numeric_change,
    numeric_summary,
    total_variation,
)
from surveillance.stats.numeric_drift import AdwinDetector, PageHinkleyDetector
from surveillance.stats.page_hinkley_run import DetectorRun, PageHinkleyRun, StreamRun
from surveillance.stats.psi import FloatArray, bin_counts
from surveillance.stats.stream_calibration import CONFIDENCE, quarters_for_rate


class NumericFeature:
    def __init__(
        self,
        spec: FeatureSpec,
        values: FloatArray,
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
        present = values[~np.isnan(values)]
        self.mean = float(present.mean())
        sd = float(present.std(ddof=1))
        # A constant reference: any change is drift; measure it in the feature's units.
        self.scale = sd if sd > 0 else 1.0
        self.magnitude_unit = "reference_sd" if sd > 0 else (spec.unit.strip() or "units")
        self.n_reference = int(values.size)
        self.reference_summary = numeric_summary(values)
        self.edges = drift_edges(present, config.n_bins)
        ref_bins = bin_counts(values, self.edges)
        site_arr = np.asarray(sites)
        self.site_reference = {
            str(s): values[site_arr == s] for s in np.unique(site_arr) if s != ""
        }
        continuous = not is_discrete(present, config.n_bins)
        # The per-event detector and the windowed test split the share; a discrete
        # feature has no per-event detector and gives the windowed test the whole share.
        share = budget.per_feature / 2 if continuous else budget.per_feature
        thresholds = calibrations.window_thresholds(
            ref_bins,
            events_per_day * WINDOW_DAYS[config.window],
            budget.per_window_rate(share),
            seed=self._seed(config, "window"),
            tests=("psi",),
            min_window_events=config.min_window_events,
            window_sizes=window_sizes,
        )
        labels = [f"bin{i}" for i in range(ref_bins.size)]
        self.window_test = WindowedDistributionTest(
            labels,
            ref_bins,
            thresholds,
            ("psi",),
            config.min_window_events,
            config.clear_after_windows,
            config.min_total_variation,
        )
        self.min_total_variation = config.min_total_variation
        self.episode = Episode(config.clear_after_windows)
        #: The last tested window's (detector, statistic), for the Prometheus gauges.
        self.last_statistic: tuple[str, float] | None = None
        self.detector_name = config.numeric_detector
        self.detector: StreamRun | None = None
        self.detector_threshold: float | None = None
        #: Events a per-event detector runs before it restarts: its calibrated horizon.
        self.horizon = 0
        if continuous:
            standardised = (present - self.mean) / self.scale
            self.horizon = max(
                2, round(events_per_day * DAYS_PER_QUARTER * present.size / values.size)
            )
            self.detector = self._calibrate_detector(standardised, share, config, calibrations)
        self.window_values: list[float | None] = []
        self.window_sites: list[str] = []
        self._fired = False

    def _seed(self, config: DriftBankConfig, detector: str) -> int:
        """This calibration's own seed (`drift_calibration.calibration_seed`)."""
        ctx = self.ctx
        return calibration_seed(config.seed, ctx.tool_id, ctx.role, ctx.software_version,
                                self.spec.name, detector)

    def _calibrate_detector(
        self,
        standardised: FloatArray,
        share: float,
        config: DriftBankConfig,
        calibrations: Calibrations,
    ) -> StreamRun:
        if config.numeric_detector == "page_hinkley":
            threshold = calibrations.page_hinkley(
                standardised,
                self.horizon,
                share,
                seed=self._seed(config, "page_hinkley"),
                n_quarters=max(config.calibration_quarters, quarters_for_rate(share, CONFIDENCE)),
                min_instances=config.page_hinkley_min_instances,
                delta=config.page_hinkley_delta,
            )
            # The river wrapper checks the parameters the fast run takes on trust.
            PageHinkleyDetector(config.page_hinkley_min_instances, config.page_hinkley_delta,
                                threshold)
            self.detector_threshold = threshold
            return PageHinkleyRun(threshold, config.page_hinkley_delta,
                                  config.page_hinkley_min_instances, self.horizon)
        delta = calibrations.adwin_delta(
            config.adwin_deltas, standardised, self.horizon, share,
            seed=self._seed(config, "adwin"),
        )
        return DetectorRun(lambda: AdwinDetector(delta=delta), self.horizon)

    def add(self, values: Sequence[FeatureValue], sites: Sequence[str]) -> None:
        """One batch of events, in event-time order (numbers, or None when missing)."""
        # Numeric features read a float or None (`drift_features`).
        numbers = cast(Sequence[float | None], values)
        self.window_values += numbers
        self.window_sites += sites
        if self.detector is not None:
            mean, scale = self.mean, self.scale
            standardised = [(v - mean) / scale for v in numbers if v is not None]
            if self.detector.feed(standardised):
                self._fired = True

    def close_window(self, window_start: datetime, at: datetime) -> DriftVerdict | None:
        """A verdict when the window opens an episode, else None."""
        values = np.array(self.window_values, dtype=np.float64)  # None -> nan
        sites = self.window_sites
        self.window_values, self.window_sites = [], []
        result = self.window_test.close(bin_counts(values, self.edges).tolist())
        if result is not None:
            self.last_statistic = ("psi", float(result.psi))
        fired, self._fired = self._fired, False
        crossed = fired or (result is not None and bool(result.crossed))
        tested = fired or result is not None
        if not self.episode.observe(crossed, tested, window_start):
            return None
        if result is not None and result.crossed:
            detector, statistic = "psi", result.psi
            threshold: float | None = self.window_test.thresholds.psi
        else:
            detector, statistic, threshold = self.detector_name, None, self.detector_threshold
        # The sites as an array only for a verdict (converting every window's costs more
        # than the window's test).
        return self._verdict(detector, statistic, threshold, values, np.asarray(sites),
                             window_start, at)

    def _by_site(self, values: FloatArray, sites: FloatArray) -> list[tuple[str, float]]:
        out = []
        for site, ref in self.site_reference.items():
            cur = values[sites == site]
            if cur.size >= MIN_SITE_EVENTS and ref.size >= MIN_SITE_EVENTS:
                out.append(
                    (site, total_variation(bin_counts(ref, self.edges),
                                           bin_counts(cur, self.edges)))
                )
        return out

    def _verdict(
        self,
        detector: str,
        statistic: float | None,
        threshold: float | None,
        values: FloatArray,
        sites: FloatArray,
        window_start: datetime,
        at: datetime,
    ) -> DriftVerdict:
        present = values[~np.isnan(values)]
        shift = float((present.mean() - self.mean) / self.scale) if present.size else None
        by_site = self._by_site(values, sites) if self.ctx.role == "input" else []
        site = concentrated(by_site, self.min_total_variation)
        if site is not None:
            change = numeric_change(self.site_reference[site], values[sites == site],
                                    self.spec.unit)
        else:
            all_ref = np.concatenate(list(self.site_reference.values()))
            change = numeric_change(all_ref, values, self.spec.unit)
        return DriftVerdict(
            tool_id=self.ctx.tool_id,
            software_version=self.ctx.software_version,
            kind=self.ctx.kind,
            feature=self.spec.name,
            detector=detector,
            statistic=statistic,
            threshold=threshold,
            magnitude=shift,
            magnitude_unit=self.magnitude_unit,
            window_start=window_start,
            detected_at=at,
            n_reference=self.n_reference,
            n_current=int(values.size),
            reference=self.reference_summary,
            current=numeric_summary(values),
            change=change,
            site=site,
            by_site=tuple(sorted(by_site)),
            reference_period=self.ctx.reference_period,
            since=self.episode.since,
            alarms_per_year=self.ctx.alarms_per_year,
        )
