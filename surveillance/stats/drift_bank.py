"""A tool's whole bank of drift detectors over its configured features.

Features (`DEFAULT_FEATURES`, read from each `AIResult`):
- input, numeric: kvp, slice_thickness, pixel_spacing, age
- input, categorical: scanner_manufacturer, scanner_model, scanner_software_version,
  protocol_name, site, contrast, sex
- output (kept per AI software version), numeric: score; categorical: positive_call

Per numeric feature: PSI per window on the bins of `drift_binning` (plus a
missing-value bin), and, for continuous features only, a per-event river detector
(Page-Hinkley by default, or ADWIN) on values standardised by the reference mean and SD.
A feature with at most `n_bins` distinct reference values (kVp and slice thickness on
CT, fixed by the protocol) gets one bin per value and an empty bin on each side, so the
windowed test sees every change, upward or downward; a per-event detector there would
standardise by an SD of about 0 and turn any change into an alarm on every event. A
continuous feature's common value (a near-constant feature) gets a bin of its own.
Per categorical feature: PSI, Jensen-Shannon and chi-square per window
(`categorical_drift`), and a one-time notice the first time a category absent from the
reference appears. Thresholds come from
`drift_calibration` with the drift family's share of the tool's false-alarm budget
(`stats.alarm_budget`) split over all its features, per tool on its own reference
(categorical features with one pseudo-category the reference never saw, so that rare
unseen categories are part of the null), on simulated windows whose sizes are resampled
from the reference's own days, and never below what one event can move.

Episodes. A feature enters drift on the first window where any of its detectors crosses
(and the window's moved mass is at least `min_total_variation`); that window gives ONE
verdict. Later crossings of the same feature, by any detector, extend the episode
without a new verdict; the episode ends after `clear_after_days` of tested windows with
no crossing. A lasting shift (a new protocol) is one alert, not one per day or event.

Event time. Events arrive out of event-time order (report-first cases, several join
partitions). The bank buffers each event-time day and evaluates it, in event-time
order, once its clock (the latest event time seen, or `advance(now)`) is
`lateness_days` past the day's end. An event for a day already evaluated is counted in
the earliest open day: evaluated days are never reopened. Within the buffer an event id
is counted once (redelivery).

Reference period. `DriftBank.for_tool(tool_id, config)` takes the first
`config.reference_days` evaluated days of the tool's events as the reference (the
local-validation period), then calibrates and starts monitoring. Output features are
kept per software version, and each version's reference is its own first
`reference_days` days: a new version's scores are not judged against the previous
version's (version changes are alerted elsewhere).
`DriftBank.from_reference(tool_id, reference_results, config)` takes an explicit
reference instead. A feature with fewer than `min_reference_events` non-missing values
in its reference (kVp on fundus photographs) is not monitored: see `disabled_features`.

Context. Each verdict says what moved in the feature's units, and the site where the
shift concentrates when one does (a site whose window differs from its own reference by
at least three times the total variation distance of any other site).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from surveillance.contracts import AIResult
from surveillance.stats.alarm_budget import DAYS_PER_YEAR, DEFAULT_BUDGET
from surveillance.stats.categorical_drift import (
    MISSING,
    CategoricalDriftDetector,
    NewCategory,
    WindowedDistributionTest,
    WindowResult,
    WindowTestName,
)
from surveillance.stats.drift_binning import drift_edges, is_discrete
from surveillance.stats.drift_calibration import (
    DAYS_PER_QUARTER,
    WINDOW_DAYS,
    FalseAlarmBudget,
    calibrate_window_thresholds,
)
from surveillance.stats.drift_verdict import DriftVerdict, Summary, VerdictKind
from surveillance.stats.numeric_drift import (
    AdwinDetector,
    DriftParameterError,
    NumericDriftDetector,
    PageHinkleyDetector,
)
from surveillance.stats.psi import FloatArray, bin_counts
from surveillance.stats.stream_calibration import calibrate_page_hinkley, calibrate_stream_detector

__all__ = [
    "CAUSE_FEATURES",
    "DEFAULT_FEATURES",
    "FEATURES_BY_NAME",
    "DriftBank",
    "DriftBankConfig",
    "DriftVerdict",
    "FeatureSpec",
    "feature_row",
]

FeatureValue = float | str | None
Role = Literal["input", "output"]


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    kind: Literal["numeric", "categorical"]
    role: Role
    extract: Callable[[AIResult], FeatureValue]
    #: Unit appended to numeric values in alert text (with its leading space).
    unit: str = ""


def _flag(value: bool | None) -> str | None:
    return None if value is None else str(value).lower()


DEFAULT_FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec("kvp", "numeric", "input", lambda r: r.acquisition.kvp, " kV"),
    FeatureSpec(
        "slice_thickness", "numeric", "input", lambda r: r.acquisition.slice_thickness, " mm"
    ),
    FeatureSpec("pixel_spacing", "numeric", "input", lambda r: r.acquisition.pixel_spacing, " mm"),
    FeatureSpec(
        "age", "numeric", "input", lambda r: None if r.age is None else float(r.age), " years"
    ),
    FeatureSpec("scanner_manufacturer", "categorical", "input", lambda r: r.scanner.manufacturer),
    FeatureSpec("scanner_model", "categorical", "input", lambda r: r.scanner.model),
    FeatureSpec(
        "scanner_software_version",
        "categorical",
        "input",
        lambda r: r.scanner.software_version,
    ),
    FeatureSpec("protocol_name", "categorical", "input", lambda r: r.acquisition.protocol_name),
    FeatureSpec("site", "categorical", "input", lambda r: r.site),
    FeatureSpec("contrast", "categorical", "input", lambda r: _flag(r.contrast_indication)),
    FeatureSpec("sex", "categorical", "input", lambda r: r.sex.value),
    FeatureSpec("score", "numeric", "output", lambda r: r.ai_result),
    FeatureSpec("positive_call", "categorical", "output", lambda r: _flag(r.result_indicator)),
)
FEATURES_BY_NAME = {spec.name: spec for spec in DEFAULT_FEATURES}
#: Features whose change is a plausible cause of a shift elsewhere (named in hints).
CAUSE_FEATURES = frozenset(
    {"scanner_manufacturer", "scanner_model", "scanner_software_version", "protocol_name", "site"}
)
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
TOP_CATEGORIES = 5
#: A site's window is compared with the site's own reference only from this many events.
MIN_SITE_EVENTS = 10


class DriftBankConfig(BaseModel):
    """Drift settings of one tool (validated; a bad value raises pydantic's error)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    features: tuple[str, ...] = tuple(spec.name for spec in DEFAULT_FEATURES)
    reference_days: int = Field(default=30, ge=1, le=365)
    window: Literal["daily", "weekly"] = "daily"
    #: The drift family's share of the tool's false alarms, per quarter (`alarm_budget`).
    alarms_per_quarter: float = Field(default=DEFAULT_BUDGET.per_quarter("drift"), gt=0, le=100)
    numeric_detector: Literal["page_hinkley", "adwin"] = "page_hinkley"
    #: Page-Hinkley's tolerated drift per event, in reference SDs: shifts well below
    #: 2 * delta are ignored, which keeps the threshold (and detection delay) small.
    page_hinkley_delta: float = Field(default=0.1, ge=0)
    page_hinkley_min_instances: int = Field(default=30, ge=1)
    adwin_deltas: tuple[float, ...] = (0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 1e-3, 1e-4, 1e-5)
    n_bins: int = Field(default=10, ge=2, le=100)
    min_window_events: int = Field(default=20, ge=1)
    #: Smallest share of a window's events that must have moved (total variation
    #: distance from the reference) for a windowed test to count as crossing.
    min_total_variation: float = Field(default=0.05, ge=0, lt=1)
    #: A feature in drift is cleared after this many days of tested windows crossing no
    #: threshold (at least one window); until then a lasting shift is not re-raised.
    clear_after_days: int = Field(default=7, ge=1)
    #: An event-time day is evaluated once the bank's clock is this many days past its
    #: end; later events for it are counted in the earliest open day.
    lateness_days: int = Field(default=1, ge=0, le=30)
    #: True: the latest event time seen moves the clock too. False: only `advance(now)`
    #: does, for a caller that passes a low watermark (the slowest input partition).
    event_clock: bool = True
    min_reference_events: int = Field(default=200, ge=2)
    calibration_quarters: int = Field(default=400, ge=10)
    events_per_day: float | None = Field(default=None, gt=0)
    seed: int = 0

    @model_validator(mode="after")
    def _known_features(self) -> DriftBankConfig:
        unknown = [f for f in self.features if f not in FEATURES_BY_NAME]
        if unknown or not self.features:
            raise ValueError(
                f"unknown or no drift features {unknown}; choose from {sorted(FEATURES_BY_NAME)}"
            )
        return self

    @property
    def clear_after_windows(self) -> int:
        return max(1, self.clear_after_days // WINDOW_DAYS[self.window])

    @property
    def specs(self) -> tuple[FeatureSpec, ...]:
        return tuple(FEATURES_BY_NAME[name] for name in self.features)


def _numeric_summary(values: Sequence[float] | FloatArray) -> Summary:
    arr = np.asarray(values, dtype=np.float64)
    present = arr[~np.isnan(arr)]
    missing = ("missing", float(np.isnan(arr).mean()) if arr.size else 0.0)
    if present.size == 0:
        return (missing,)
    qs = np.quantile(present, QUANTILES)
    return (
        ("mean", float(present.mean())),
        *((f"p{round(q * 100):02d}", float(v)) for q, v in zip(QUANTILES, qs, strict=True)),
        missing,
    )


def _category_summary(labels: Sequence[str], counts: Sequence[float]) -> Summary:
    total = float(sum(counts))
    ranked = sorted(zip(labels, counts, strict=True), key=lambda kv: -kv[1])
    return tuple((k, v / total) for k, v in ranked[:TOP_CATEGORIES] if total > 0)


def _tv(reference: FloatArray, current: FloatArray) -> float:
    """Total variation distance of two count vectors on the same axis."""
    return float(0.5 * np.abs(reference / reference.sum() - current / current.sum()).sum())


def _concentrated(by_site: Sequence[tuple[str, float]], floor: float) -> str | None:
    """The site whose shift is at least `floor` and 3 times any other site's, else None.

    Three times, not twice: with a shift spread evenly over two sites, sampling noise
    alone makes one site's daily distance twice the other's now and then."""
    ranked = sorted(by_site, key=lambda kv: -kv[1])
    if not ranked or ranked[0][1] < max(floor, 1e-12):
        return None
    if len(ranked) > 1 and ranked[0][1] < 3 * ranked[1][1]:
        return None
    return ranked[0][0]


def _g(x: float) -> str:
    return f"{x:.4g}"


@dataclass
class _Context:
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


class _Episode:
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


class _Window:
    """One window's values of one feature, with the site of each."""

    def __init__(self) -> None:
        self.values: list[FeatureValue] = []
        self.sites: list[str] = []

    def add(self, value: FeatureValue, site: str) -> None:
        self.values.append(value)
        self.sites.append(site)


class _NumericFeature:
    def __init__(
        self,
        spec: FeatureSpec,
        values: FloatArray,
        sites: Sequence[str],
        ctx: _Context,
        config: DriftBankConfig,
        budget: FalseAlarmBudget,
        events_per_day: float,
        window_sizes: Sequence[int] | None,
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
        self.reference_summary = _numeric_summary(values)
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
        window_events = events_per_day * WINDOW_DAYS[config.window]
        thresholds = calibrate_window_thresholds(
            ref_bins,
            window_events,
            budget.per_window_rate(share),
            seed=config.seed,
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
        self.episode = _Episode(config.clear_after_windows)
        #: The last tested window's (detector, statistic), for the Prometheus gauges.
        self.last_statistic: tuple[str, float] | None = None
        self.detector_name = config.numeric_detector
        self.detector: NumericDriftDetector | None = None
        self.detector_threshold: float | None = None
        #: Events a per-event detector runs before it restarts: its calibrated horizon.
        self.horizon = 0
        self._run = 0
        if continuous:
            standardised = (present - self.mean) / self.scale
            per_quarter = max(
                2, round(events_per_day * DAYS_PER_QUARTER * present.size / values.size)
            )
            self.detector_threshold, self._make = self._calibrate_detector(
                standardised, per_quarter, share, config
            )
            self.detector = self._make()
            self.horizon = per_quarter
        self.window = _Window()
        self._fired_at: datetime | None = None

    def _calibrate_detector(
        self, standardised: FloatArray, per_quarter: int, share: float, config: DriftBankConfig
    ) -> tuple[float, Callable[[], NumericDriftDetector]]:
        quarters = max(config.calibration_quarters, math.ceil(10 / share))
        if config.numeric_detector == "page_hinkley":
            threshold = calibrate_page_hinkley(
                standardised,
                per_quarter,
                share,
                seed=config.seed,
                n_quarters=quarters,
                min_instances=config.page_hinkley_min_instances,
                delta=config.page_hinkley_delta,
            )
            return threshold, lambda: PageHinkleyDetector(
                min_instances=config.page_hinkley_min_instances,
                delta=config.page_hinkley_delta,
                threshold=threshold,
            )
        chosen = calibrate_stream_detector(
            lambda d: AdwinDetector(delta=d),
            config.adwin_deltas,
            standardised,
            per_quarter,
            share,
            seed=config.seed,
            n_quarters=math.ceil(10 / share),
        )
        return chosen.parameter, lambda: AdwinDetector(delta=chosen.parameter)

    def add(self, value: FeatureValue, site: str, at: datetime) -> DriftVerdict | None:
        self.window.add(None if value is None else float(value), site)
        if value is None or self.detector is None:
            return None
        # The detector is calibrated on fresh runs of a quarter's events; Page-Hinkley's
        # statistic (a sum minus its running minimum) only grows with the run, so a
        # detector left running for a year alarmed far beyond its share. It restarts
        # at the end of each calibrated horizon instead.
        self._run += 1
        if self._run > self.horizon:
            self.detector, self._run = self._make(), 1
        if self.detector.update((float(value) - self.mean) / self.scale).drift_detected:
            self._fired_at = self._fired_at or at
        return None

    def close_window(self, window_start: datetime, at: datetime) -> DriftVerdict | None:
        """A verdict when the window opens an episode, else None."""
        values = np.array([math.nan if v is None else v for v in self.window.values])
        sites = np.asarray(self.window.sites)
        self.window = _Window()
        result = self.window_test.close(bin_counts(values, self.edges).tolist())
        if result is not None:
            self.last_statistic = ("psi", float(result.psi))
        fired, self._fired_at = self._fired_at, None
        crossed = fired is not None or (result is not None and bool(result.crossed))
        tested = fired is not None or result is not None
        if not self.episode.observe(crossed, tested, window_start):
            return None
        if result is not None and result.crossed:
            detector, statistic = "psi", result.psi
            threshold: float | None = self.window_test.thresholds.psi
        else:
            detector, statistic, threshold = self.detector_name, None, self.detector_threshold
        return self._verdict(detector, statistic, threshold, values, sites, window_start, at)

    def _by_site(self, values: FloatArray, sites: FloatArray) -> list[tuple[str, float]]:
        out = []
        for site, ref in self.site_reference.items():
            cur = values[sites == site]
            if cur.size >= MIN_SITE_EVENTS and ref.size >= MIN_SITE_EVENTS:
                out.append((site, _tv(bin_counts(ref, self.edges), bin_counts(cur, self.edges))))
        return out

    def _change(self, reference: FloatArray, current: FloatArray) -> str:
        ref = reference[~np.isnan(reference)]
        cur = current[~np.isnan(current)]
        if cur.size == 0 or ref.size == 0:
            return f"missing {np.isnan(reference).mean():.0%} -> {np.isnan(current).mean():.0%}"
        unit = self.spec.unit
        return (
            f"mean {_g(ref.mean())} -> {_g(cur.mean())}{unit} "
            f"(median {_g(float(np.median(ref)))} -> {_g(float(np.median(cur)))}{unit})"
        )

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
        site = _concentrated(by_site, self.min_total_variation)
        if site is not None:
            change = self._change(self.site_reference[site], values[sites == site])
        else:
            all_ref = np.concatenate(list(self.site_reference.values()))
            change = self._change(all_ref, values)
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
            current=_numeric_summary(values),
            change=change,
            site=site,
            by_site=tuple(sorted(by_site)),
            reference_period=self.ctx.reference_period,
            since=self.episode.since,
            alarms_per_year=self.ctx.alarms_per_year,
        )


class _CategoricalFeature:
    def __init__(
        self,
        spec: FeatureSpec,
        values: Sequence[str],
        sites: Sequence[str],
        ctx: _Context,
        config: DriftBankConfig,
        budget: FalseAlarmBudget,
        events_per_day: float,
        window_sizes: Sequence[int] | None,
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
        self.reference_summary = _category_summary(list(counts), list(counts.values()))
        thresholds = calibrate_window_thresholds(
            [*counts.values(), 0],
            events_per_day * WINDOW_DAYS[config.window],
            budget.per_window_rate(budget.per_feature),
            seed=config.seed,
            min_window_events=config.min_window_events,
            window_sizes=window_sizes,
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
        self.episode = _Episode(config.clear_after_windows)
        #: The last tested window's (detector, statistic), for the Prometheus gauges.
        self.last_statistic: tuple[str, float] | None = None
        self.window = _Window()

    def add(self, value: FeatureValue, site: str, at: datetime) -> DriftVerdict | None:
        category = MISSING if value is None else str(value)
        self.window.add(category, site)
        new = self.detector.update(category, at).new_category
        if new is None:
            return None
        by_site = [site] if self.ctx.role == "input" and self.spec.name != "site" else []
        return DriftVerdict(
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
            n_current=self.detector.window_size,
            reference=self.reference_summary,
            current=(),
            first_seen=new.first_seen,
            category=new.category,
            site=by_site[0] if by_site else None,
            reference_period=self.ctx.reference_period,
        )

    def close_window(self, window_start: datetime, at: datetime) -> DriftVerdict | None:
        """A verdict when the window opens an episode, else None."""
        window, self.window = self.window, _Window()
        result = self.detector.close_window()
        if result is not None:
            self.last_statistic = ("psi", float(result.statistic("psi")))
        crossed = result is not None and bool(result.crossed)
        if not self.episode.observe(crossed, result is not None, window_start):
            return None
        assert result is not None
        return self._verdict(result, result.crossed[0], window, window_start, at)

    def _by_site(self, window: _Window) -> list[tuple[str, float]]:
        if self.ctx.role != "input" or self.spec.name == "site":
            return []
        out = []
        for site, ref_counts in self.site_reference.items():
            cur = [c for c, s in zip(window.values, window.sites, strict=True) if s == site]
            if len(cur) >= MIN_SITE_EVENTS and sum(ref_counts.values()) >= MIN_SITE_EVENTS:
                ref, now = self._aligned(ref_counts, cur)
                out.append((site, _tv(ref, now)))
        return out

    @staticmethod
    def _aligned(ref_counts: dict[str, int], current: Sequence[FeatureValue]) -> tuple[
        FloatArray, FloatArray
    ]:
        cur_counts: dict[str, int] = {}
        for c in current:
            cur_counts[str(c)] = cur_counts.get(str(c), 0) + 1
        keys = sorted(set(ref_counts) | set(cur_counts))
        ref = np.array([ref_counts.get(k, 0) for k in keys], dtype=np.float64)
        now = np.array([cur_counts.get(k, 0) for k in keys], dtype=np.float64)
        return ref, now

    @staticmethod
    def _change(ref_counts: dict[str, int], current: Sequence[FeatureValue]) -> str:
        """The two categories whose share moved most, as 'X' a% -> b% of studies."""
        cur_counts: dict[str, int] = {}
        for c in current:
            cur_counts[str(c)] = cur_counts.get(str(c), 0) + 1
        n_ref, n_cur = sum(ref_counts.values()), max(len(current), 1)
        keys = set(ref_counts) | set(cur_counts)
        moves = sorted(
            ((ref_counts.get(k, 0) / n_ref, cur_counts.get(k, 0) / n_cur, k) for k in keys),
            key=lambda m: (-abs(m[1] - m[0]), m[2]),
        )
        parts = [f"{k!r} {a:.0%} -> {b:.0%}" for a, b, k in moves[:2]]
        return "share " + ", ".join(parts) + " of studies"

    def _verdict(
        self,
        result: WindowResult,
        test: WindowTestName,
        window: _Window,
        window_start: datetime,
        at: datetime,
    ) -> DriftVerdict:
        thresholds = self.detector.reference.thresholds
        by_site = self._by_site(window)
        site = _concentrated(by_site, self.min_total_variation)
        if site is not None:
            values = [c for c, s in zip(window.values, window.sites, strict=True) if s == site]
            change = self._change(self.site_reference[site], values)
        else:
            change = self._change(self.reference_counts, window.values)
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
            current=_category_summary(result.labels, result.current_counts),
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


_Feature = _NumericFeature | _CategoricalFeature


class _Row(NamedTuple):
    """One event's feature values for one role, with its time and site."""

    at: datetime
    site: str
    values: tuple[FeatureValue, ...]


class _FeatureBank:
    """Calibrated detectors for one role (inputs, or one version's outputs)."""

    def __init__(
        self,
        specs: Sequence[FeatureSpec],
        rows: Sequence[_Row],
        reference_days: int,
        ctx: _Context,
        config: DriftBankConfig,
    ) -> None:
        budget = FalseAlarmBudget(len(config.features), config.alarms_per_quarter, config.window)
        events_per_day = config.events_per_day or len(rows) / reference_days
        days = [r.at.astimezone(UTC).date() for r in rows]
        first, last = min(days), max(days)
        ctx.reference_period = (first, last)
        window_sizes = None
        if config.window == "daily" and config.events_per_day is None:
            per_day = {d: 0 for d in (first + timedelta(i) for i in range(reference_days))}
            for d in days:
                per_day[d] = per_day.get(d, 0) + 1
            window_sizes = list(per_day.values())
        self.features: list[_Feature | None] = []
        self.disabled: list[str] = []
        sites = [r.site for r in rows]
        columns = list(zip(*(r.values for r in rows), strict=True))
        for spec, column in zip(specs, columns, strict=True):
            feature = self._build(
                spec, column, sites, ctx, config, budget, events_per_day, window_sizes
            )
            self.features.append(feature)
            if feature is None:
                self.disabled.append(spec.name)

    @staticmethod
    def _build(
        spec: FeatureSpec,
        column: Sequence[FeatureValue],
        sites: Sequence[str],
        ctx: _Context,
        config: DriftBankConfig,
        budget: FalseAlarmBudget,
        events_per_day: float,
        window_sizes: Sequence[int] | None,
    ) -> _Feature | None:
        args = (ctx, config, budget, events_per_day, window_sizes)
        if spec.kind == "numeric":
            values = np.array([math.nan if v is None else float(v) for v in column])
            if int((~np.isnan(values)).sum()) < config.min_reference_events:
                return None
            return _NumericFeature(spec, values, sites, *args)
        present = [MISSING if v is None else str(v) for v in column]
        if sum(1 for v in column if v is not None) < config.min_reference_events:
            return None
        return _CategoricalFeature(spec, present, sites, *args)

    def add(self, row: _Row) -> list[DriftVerdict]:
        verdicts = []
        for feature, value in zip(self.features, row.values, strict=True):
            if feature is not None:
                verdict = feature.add(value, row.site, row.at)
                if verdict is not None:
                    verdicts.append(verdict)
        return verdicts

    def close_window(self, window_start: datetime, at: datetime) -> list[DriftVerdict]:
        """Verdicts of the episodes this window opens."""
        verdicts: list[DriftVerdict] = []
        for feature in self.features:
            if feature is not None:
                verdict = feature.close_window(window_start, at)
                if verdict is not None:
                    verdicts.append(verdict)
        return verdicts


@dataclass
class _Phase:
    """Collecting a reference, then monitoring with the bank built from it."""

    specs: tuple[FeatureSpec, ...]
    ctx: _Context
    rows: list[_Row] = field(default_factory=list)
    first_day: date | None = None
    bank: _FeatureBank | None = None


class _Event(NamedTuple):
    at: datetime
    event_id: str
    version: str
    inputs: _Row
    outputs: _Row


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


class DriftBank:
    """Input and output drift of one tool; feed it every `AIResult` of the tool."""

    def __init__(self, tool_id: str, config: DriftBankConfig | None = None) -> None:
        self.tool_id = tool_id
        self.config = config or DriftBankConfig()
        specs = self.config.specs
        self._input_specs = tuple(s for s in specs if s.role == "input")
        self._output_specs = tuple(s for s in specs if s.role == "output")
        self._alarms_per_year = self.config.alarms_per_quarter * DAYS_PER_YEAR / DAYS_PER_QUARTER
        self._inputs = _Phase(
            self._input_specs, _Context(tool_id, None, "input", None, self._alarms_per_year)
        )
        self._outputs: dict[str, _Phase] = {}
        self._open: dict[date, list[_Event]] = {}
        self._seen: set[str] = set()
        self._clock: datetime | None = None
        #: First day not yet evaluated (None before the first evaluation).
        self._next_day: date | None = None
        self._window_start: datetime | None = None
        self._recent_new: list[tuple[int, NewCategory]] = []
        self._window_index = 0

    @classmethod
    def for_tool(cls, tool_id: str, config: DriftBankConfig | None = None) -> DriftBank:
        """A bank that takes its first `reference_days` days of events as the reference."""
        return cls(tool_id, config)

    @classmethod
    def from_reference(
        cls,
        tool_id: str,
        reference: Iterable[AIResult],
        config: DriftBankConfig | None = None,
    ) -> DriftBank:
        """A bank calibrated now on an explicit reference (e.g. the local validation)."""
        bank = cls(tool_id, config)
        results = [r for r in reference if r.tool_id == tool_id]
        if not results:
            raise DriftParameterError(f"the reference has no results of tool {tool_id!r}")
        days = [r.inference_date.astimezone(UTC).date() for r in results]
        span = (max(days) - min(days)).days + 1
        bank._build(bank._inputs, [bank._event(r).inputs for r in results], span)
        by_version: dict[str, list[AIResult]] = {}
        for r in results:
            by_version.setdefault(r.software_version, []).append(r)
        for version, rows in by_version.items():
            phase = bank._output_phase(version)
            bank._build(phase, [bank._event(r).outputs for r in rows], span)
        return bank

    @property
    def monitoring(self) -> bool:
        """True once the input reference is established and the detectors calibrated."""
        return self._inputs.bank is not None

    @property
    def disabled_features(self) -> list[str]:
        """Input features the reference could not support (too few non-missing values)."""
        return list(self._inputs.bank.disabled) if self._inputs.bank else []

    @property
    def reference_period(self) -> tuple[date, date] | None:
        """First and last day of the input reference, once established."""
        return self._inputs.ctx.reference_period

    def versions_monitored(self) -> list[str]:
        return [v for v, phase in self._outputs.items() if phase.bank is not None]

    def statistics(self) -> list[tuple[str, str, float, bool]]:
        """(feature, detector, last window's statistic, in a drift episode) per feature."""
        phases = [self._inputs, *self._outputs.values()]
        out = []
        for phase in phases:
            if phase.bank is None:
                continue
            for feature in phase.bank.features:
                if feature is not None and feature.last_statistic is not None:
                    detector, value = feature.last_statistic
                    out.append((feature.spec.name, detector, value,
                                feature.episode.since is not None))
        return out

    def update(self, result: AIResult) -> list[DriftVerdict]:
        """Count one AI result; return the verdicts of the days it lets close."""
        at = result.inference_date.astimezone(UTC)
        if result.event_id not in self._seen:
            self._seen.add(result.event_id)
            day = at.date()
            if self._next_day is not None and day < self._next_day:
                day = self._next_day  # late: evaluated days are never reopened
            self._open.setdefault(day, []).append(self._event(result))
        return self._tick(at) if self.config.event_clock else []

    def advance(self, now: datetime) -> list[DriftVerdict]:
        """Move the clock to `now` (call from a timer); evaluate the days it closes."""
        return self._tick(now)

    def _event(self, result: AIResult) -> _Event:
        at = result.inference_date.astimezone(UTC)
        return _Event(
            at,
            result.event_id,
            result.software_version,
            _Row(at, result.site, tuple(s.extract(result) for s in self._input_specs)),
            _Row(at, result.site, tuple(s.extract(result) for s in self._output_specs)),
        )

    def _tick(self, now: datetime) -> list[DriftVerdict]:
        if self._clock is None or now > self._clock:
            self._clock = now
        if self._next_day is None:
            if not self._open:
                return []
            self._next_day = min(self._open)
        verdicts: list[DriftVerdict] = []
        lateness = timedelta(days=1 + self.config.lateness_days)
        # Every day in turn, empty ones too: weekly windows close on Sundays.
        while _midnight(self._next_day) + lateness <= self._clock:
            day = self._next_day
            verdicts += self._evaluate_day(day, self._open.pop(day, []))
            self._next_day = day + timedelta(days=1)
        return verdicts

    def _output_phase(self, version: str) -> _Phase:
        context = _Context(self.tool_id, version, "output", None, self._alarms_per_year)
        phase = _Phase(self._output_specs, context)
        self._outputs[version] = phase
        return phase

    def _build(self, phase: _Phase, rows: list[_Row], days: int) -> None:
        if len(rows) < self.config.min_reference_events:
            return
        phase.bank = _FeatureBank(phase.specs, rows, days, phase.ctx, self.config)
        phase.rows = []

    def _evaluate_day(self, day: date, events: list[_Event]) -> list[DriftVerdict]:
        events.sort(key=lambda e: e.at)
        self._seen.difference_update(e.event_id for e in events)
        if self._window_start is None:
            self._window_start = _midnight(day)
        verdicts = self._feed(self._inputs, day, [e.inputs for e in events])
        by_version: dict[str, list[_Row]] = {}
        for e in events:
            by_version.setdefault(e.version, []).append(e.outputs)
        if self._output_specs:
            for version, rows in by_version.items():
                phase = self._outputs.get(version) or self._output_phase(version)
                verdicts += self._feed(phase, day, rows)
        if self.config.window == "daily" or day.weekday() == 6:
            verdicts += self._close(self._window_start)
            self._window_start = _midnight(day) + timedelta(days=1)
        return verdicts

    def _feed(self, phase: _Phase, day: date, rows: list[_Row]) -> list[DriftVerdict]:
        collected = phase.first_day is not None and (
            (day - phase.first_day).days >= self.config.reference_days
        )
        if phase.bank is None and collected:
            self._build(phase, phase.rows, self.config.reference_days)
            if phase.bank is None:
                # Too few events for a reference: start collecting again from today.
                phase.first_day, phase.rows = None, []
        if phase.bank is None:
            if rows and phase.first_day is None:
                phase.first_day = day
            phase.rows.extend(rows)
            return []
        verdicts: list[DriftVerdict] = []
        for row in rows:
            verdicts += phase.bank.add(row)
        return [self._with_hint(v, set()) for v in self._note_new(verdicts)]

    def _note_new(self, verdicts: list[DriftVerdict]) -> list[DriftVerdict]:
        for v in verdicts:
            if v.kind == "new_category" and v.category is not None and v.first_seen:
                self._recent_new.append(
                    (self._window_index, NewCategory(v.feature, v.category, v.first_seen))
                )
        return verdicts

    def _close(self, start: datetime) -> list[DriftVerdict]:
        assert self._clock is not None
        verdicts: list[DriftVerdict] = []
        for phase in (self._inputs, *self._outputs.values()):
            if phase.bank is not None:
                verdicts += phase.bank.close_window(start, self._clock)
        # Hints name features whose episode opened in this window: one in a long-running
        # episode (a protocol change weeks ago) is no news about today's shift.
        opened = {v.feature for v in verdicts}
        verdicts = [self._with_hint(v, opened) for v in verdicts]
        self._window_index += 1
        self._recent_new = [(i, n) for i, n in self._recent_new if i >= self._window_index - 1]
        return verdicts

    def _with_hint(self, verdict: DriftVerdict, opened: set[str]) -> DriftVerdict:
        if verdict.kind == "new_category":
            return verdict
        news = [
            n
            for _, n in self._recent_new
            if n.feature in CAUSE_FEATURES and n.feature != verdict.feature
        ]
        parts = [
            f"new {n.feature} {n.category!r} first seen {n.first_seen:%Y-%m-%d %H:%M} UTC"
            for n in news
        ]
        parts += [
            f"{name} shifted in the same window"
            for name in sorted(opened & CAUSE_FEATURES - {verdict.feature})
        ]
        if not parts:
            return verdict
        first = min((n.first_seen for n in news), default=None)
        return replace(verdict, cause_hint="; ".join(parts[:3]), first_seen=first)


def feature_row(
    result: AIResult, specs: Sequence[FeatureSpec] = DEFAULT_FEATURES
) -> dict[str, FeatureValue]:
    """One AI result as a flat feature row (for `report.drift_report`)."""
    return {spec.name: spec.extract(result) for spec in specs}
