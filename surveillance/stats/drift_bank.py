"""A tool's whole bank of drift detectors over its configured features.

Features (`DEFAULT_FEATURES`, read from each `AIResult`):
- input, numeric: kvp, slice_thickness, pixel_spacing, age
- input, categorical: scanner_manufacturer, scanner_model, scanner_software_version,
  protocol_name, site, contrast, sex
- output (kept per AI software version), numeric: score; categorical: positive_call

Per numeric feature: a per-event river detector (Page-Hinkley by default, or ADWIN) on
values standardised by the reference mean and SD, and PSI on bins cut at the reference
quantiles (plus a missing-value bin) per window. Per categorical feature: PSI,
Jensen-Shannon and chi-square per window (`categorical_drift`), and a one-time notice
the first time a category absent from the reference appears. Thresholds come from
`drift_calibration` with the tool's false-alarm budget split over all its features.

Reference period. `DriftBank.for_tool(tool_id, config)` collects the first
`config.reference_days` days of the tool's events (the local-validation period), then
calibrates and starts monitoring. Output features are kept per software version, and
each version's reference is its own first `reference_days` days: a new version's scores
are not judged against the previous version's (version changes are alerted elsewhere).
`DriftBank.from_reference(tool_id, reference_results, config)` takes an explicit
reference instead. A feature with fewer than `min_reference_events` non-missing values
in its reference (kVp on fundus photographs) is not monitored: see `disabled_features`.

Windows are event-time days (UTC) or Monday-based weeks. The first event at or after the
end of the current window closes it (`advance(now)` does the same from a timer). A late
event, older than the current window, is counted in the current window: closed windows
are never reopened. Within a window an event id is counted once (redelivery).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from surveillance.contracts import AIResult, Alert, AlertSeverity
from surveillance.stats.categorical_drift import (
    MISSING,
    CategoricalDriftDetector,
    NewCategory,
    WindowedDistributionTest,
    WindowResult,
    WindowTestName,
)
from surveillance.stats.drift_calibration import (
    DAYS_PER_QUARTER,
    WINDOW_DAYS,
    FalseAlarmBudget,
    calibrate_page_hinkley,
    calibrate_stream_detector,
    calibrate_window_thresholds,
)
from surveillance.stats.numeric_drift import (
    AdwinDetector,
    DriftParameterError,
    NumericDriftDetector,
    PageHinkleyDetector,
)
from surveillance.stats.psi import FloatArray, bin_counts, quantile_edges

FeatureValue = float | str | None
Role = Literal["input", "output"]
VerdictKind = Literal["input_drift", "output_drift", "new_category"]


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    kind: Literal["numeric", "categorical"]
    role: Role
    extract: Callable[[AIResult], FeatureValue]


def _flag(value: bool | None) -> str | None:
    return None if value is None else str(value).lower()


DEFAULT_FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec("kvp", "numeric", "input", lambda r: r.acquisition.kvp),
    FeatureSpec("slice_thickness", "numeric", "input", lambda r: r.acquisition.slice_thickness),
    FeatureSpec("pixel_spacing", "numeric", "input", lambda r: r.acquisition.pixel_spacing),
    FeatureSpec("age", "numeric", "input", lambda r: None if r.age is None else float(r.age)),
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


class DriftBankConfig(BaseModel):
    """Drift settings of one tool (validated; a bad value raises pydantic's error)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    features: tuple[str, ...] = tuple(spec.name for spec in DEFAULT_FEATURES)
    reference_days: int = Field(default=30, ge=1, le=365)
    window: Literal["daily", "weekly"] = "daily"
    alarms_per_quarter: float = Field(default=1.0, gt=0, le=100)
    numeric_detector: Literal["page_hinkley", "adwin"] = "page_hinkley"
    #: Page-Hinkley's tolerated drift per event, in reference SDs: shifts well below
    #: 2 * delta are ignored, which keeps the threshold (and detection delay) small.
    page_hinkley_delta: float = Field(default=0.1, ge=0)
    page_hinkley_min_instances: int = Field(default=30, ge=1)
    adwin_deltas: tuple[float, ...] = (0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 1e-3, 1e-4, 1e-5)
    n_bins: int = Field(default=10, ge=2, le=100)
    min_window_events: int = Field(default=20, ge=1)
    #: A feature in drift is cleared after this many days of tested windows crossing no
    #: threshold (at least one window); until then a lasting shift is not re-raised.
    clear_after_days: int = Field(default=7, ge=1)
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


Summary = tuple[tuple[str, float], ...]


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

    def to_alert(self) -> Alert:
        """The `surveillance.alerts` event for this verdict (id is deterministic)."""
        key = "|".join(
            [
                self.tool_id,
                self.software_version or "",
                self.feature,
                self.detector,
                self.category or "",
                self.detected_at.isoformat(),
            ]
        )
        what = f"new {self.feature} {self.category!r}" if self.category else self.feature
        summary = f"{self.tool_id}: {what} ({self.detector})"
        if self.statistic is not None and self.threshold is not None:
            summary += f" {self.statistic:.4g} vs threshold {self.threshold:.4g}"
        if self.cause_hint:
            summary += f"; likely cause: {self.cause_hint}"
        return Alert(
            alert_id="drift-" + hashlib.sha256(key.encode()).hexdigest()[:40],
            kind=self.kind,
            severity=AlertSeverity.INFO if self.kind == "new_category" else AlertSeverity.WARNING,
            raised_at=self.detected_at,
            tool_id=self.tool_id,
            software_version=self.software_version,
            metric=f"{self.feature}:{self.detector}",
            value=self.statistic,
            n=self.n_current,
            since=self.first_seen or self.window_start,
            summary=summary[:1000],
            details={
                "threshold": self.threshold,
                "magnitude": self.magnitude,
                "magnitude_unit": self.magnitude_unit,
                "reference": dict(self.reference),
                "current": dict(self.current),
                "n_reference": self.n_reference,
                "first_seen": self.first_seen.isoformat() if self.first_seen else None,
                "cause_hint": self.cause_hint,
                "tests": [list(t) for t in self.tests],
            },
        )


def _numeric_summary(values: Sequence[float] | FloatArray) -> Summary:
    arr = np.asarray(values, dtype=np.float64)
    present = arr[~np.isnan(arr)]
    missing = ("missing", float(np.isnan(arr).mean()) if arr.size else 0.0)
    if present.size == 0:
        return (missing,)
    qs = np.quantile(present, QUANTILES)
    return (
        *((f"p{round(q * 100):02d}", float(v)) for q, v in zip(QUANTILES, qs, strict=True)),
        missing,
    )


def _category_summary(labels: Sequence[str], counts: Sequence[float]) -> Summary:
    total = float(sum(counts))
    ranked = sorted(zip(labels, counts, strict=True), key=lambda kv: -kv[1])
    return tuple((k, v / total) for k, v in ranked[:TOP_CATEGORIES] if total > 0)


@dataclass
class _Context:
    """Who and when, shared by every verdict of one feature bank."""

    tool_id: str
    software_version: str | None
    role: Role

    @property
    def kind(self) -> VerdictKind:
        return "input_drift" if self.role == "input" else "output_drift"


class _NumericFeature:
    def __init__(
        self,
        spec: FeatureSpec,
        values: FloatArray,
        ctx: _Context,
        config: DriftBankConfig,
        budget: FalseAlarmBudget,
        events_per_day: float,
    ) -> None:
        self.spec = spec
        self.ctx = ctx
        present = values[~np.isnan(values)]
        self.mean = float(present.mean())
        sd = float(present.std(ddof=1))
        # A constant reference: any change is drift; measure it in the feature's units.
        self.scale = sd if sd > 0 else 1.0
        self.n_reference = int(values.size)
        self.reference_summary = _numeric_summary(values)
        self.edges = quantile_edges(present, config.n_bins)
        ref_bins = bin_counts(values, self.edges)
        share = budget.per_feature / 2
        window_events = events_per_day * WINDOW_DAYS[config.window]
        thresholds = calibrate_window_thresholds(
            ref_bins,
            window_events,
            budget.per_window_rate(share),
            seed=config.seed,
            tests=("psi",),
            min_window_events=config.min_window_events,
        )
        labels = [f"bin{i}" for i in range(ref_bins.size)]
        self.window_test = WindowedDistributionTest(
            labels,
            ref_bins,
            thresholds,
            ("psi",),
            config.min_window_events,
            config.clear_after_windows,
        )
        standardised = (present - self.mean) / self.scale
        per_quarter = max(2, round(events_per_day * DAYS_PER_QUARTER * present.size / values.size))
        self.detector_name = config.numeric_detector
        self.detector_threshold, self._make = self._calibrate_detector(
            standardised, per_quarter, share, config
        )
        self.detector: NumericDriftDetector = self._make()
        self.window: list[float] = []
        self.previous: list[float] = []

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

    def update(
        self, value: FeatureValue, at: datetime, window_start: datetime
    ) -> DriftVerdict | None:
        if value is None:
            self.window.append(math.nan)
            return None
        x = float(value)
        self.window.append(x)
        if not self.detector.update((x - self.mean) / self.scale).drift_detected:
            return None
        recent = (self.previous + self.window)[-500:]
        return self._verdict(
            self.detector_name, None, self.detector_threshold, recent, window_start, at
        )

    def _verdict(
        self,
        detector: str,
        statistic: float | None,
        threshold: float,
        current: Sequence[float],
        window_start: datetime,
        at: datetime,
    ) -> DriftVerdict:
        arr = np.asarray(current, dtype=np.float64)
        present = arr[~np.isnan(arr)]
        shift = float((present.mean() - self.mean) / self.scale) if present.size else None
        return DriftVerdict(
            tool_id=self.ctx.tool_id,
            software_version=self.ctx.software_version,
            kind=self.ctx.kind,
            feature=self.spec.name,
            detector=detector,
            statistic=statistic,
            threshold=threshold,
            magnitude=shift,
            magnitude_unit="reference_sd",
            window_start=window_start,
            detected_at=at,
            n_reference=self.n_reference,
            n_current=int(arr.size),
            reference=self.reference_summary,
            current=_numeric_summary(arr),
        )

    def close_window(self, window_start: datetime, at: datetime) -> list[DriftVerdict]:
        result = self.window_test.close(bin_counts(self.window, self.edges).tolist())
        verdicts = []
        if result is not None and result.raised:
            threshold = self.window_test.thresholds.psi
            verdicts.append(
                self._verdict("psi", result.psi, threshold, self.window, window_start, at)
            )
        self.previous, self.window = self.window, []
        return verdicts


class _CategoricalFeature:
    def __init__(
        self,
        spec: FeatureSpec,
        values: Sequence[str],
        ctx: _Context,
        config: DriftBankConfig,
        budget: FalseAlarmBudget,
        events_per_day: float,
    ) -> None:
        self.spec = spec
        self.ctx = ctx
        counts: dict[str, int] = {}
        for v in values:
            counts[v] = counts.get(v, 0) + 1
        self.n_reference = len(values)
        self.reference_summary = _category_summary(list(counts), list(counts.values()))
        thresholds = calibrate_window_thresholds(
            list(counts.values()),
            events_per_day * WINDOW_DAYS[config.window],
            budget.per_window_rate(budget.per_feature),
            seed=config.seed,
            min_window_events=config.min_window_events,
        )
        self.detector = CategoricalDriftDetector(
            spec.name,
            counts,
            thresholds,
            min_window_events=config.min_window_events,
            clear_after=config.clear_after_windows,
        )

    def update(
        self, value: FeatureValue, at: datetime, window_start: datetime
    ) -> DriftVerdict | None:
        category = MISSING if value is None else str(value)
        new = self.detector.update(category, at).new_category
        if new is None:
            return None
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
            window_start=window_start,
            detected_at=at,
            n_reference=self.n_reference,
            n_current=self.detector.window_size,
            reference=self.reference_summary,
            current=(),
            first_seen=new.first_seen,
            category=new.category,
        )

    def close_window(self, window_start: datetime, at: datetime) -> list[DriftVerdict]:
        result = self.detector.close_window()
        if result is None or not result.raised:
            return []
        # One verdict per feature and window: the tests share one false-alarm budget.
        return [self._verdict(result, result.raised[0], window_start, at)]

    def _verdict(
        self, result: WindowResult, test: WindowTestName, window_start: datetime, at: datetime
    ) -> DriftVerdict:
        thresholds = self.detector.reference.thresholds
        statistic = result.statistic(test)
        threshold = thresholds.value(test)
        return DriftVerdict(
            tool_id=self.ctx.tool_id,
            software_version=self.ctx.software_version,
            kind=self.ctx.kind,
            feature=self.spec.name,
            detector=test,
            statistic=statistic,
            threshold=threshold,
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
        )


_Feature = _NumericFeature | _CategoricalFeature


class _FeatureBank:
    """Calibrated detectors for one role (inputs, or one version's outputs)."""

    def __init__(
        self,
        specs: Sequence[FeatureSpec],
        rows: Sequence[Sequence[FeatureValue]],
        reference_days: float,
        ctx: _Context,
        config: DriftBankConfig,
    ) -> None:
        budget = FalseAlarmBudget(len(config.features), config.alarms_per_quarter, config.window)
        events_per_day = config.events_per_day or len(rows) / reference_days
        self.features: list[_Feature | None] = []
        self.disabled: list[str] = []
        columns = list(zip(*rows, strict=True)) if rows else [() for _ in specs]
        for spec, column in zip(specs, columns, strict=True):
            feature = self._build(spec, column, ctx, config, budget, events_per_day)
            self.features.append(feature)
            if feature is None:
                self.disabled.append(spec.name)

    @staticmethod
    def _build(
        spec: FeatureSpec,
        column: Sequence[FeatureValue],
        ctx: _Context,
        config: DriftBankConfig,
        budget: FalseAlarmBudget,
        events_per_day: float,
    ) -> _Feature | None:
        if spec.kind == "numeric":
            values = np.array([math.nan if v is None else float(v) for v in column])
            if int((~np.isnan(values)).sum()) < config.min_reference_events:
                return None
            return _NumericFeature(spec, values, ctx, config, budget, events_per_day)
        present = [MISSING if v is None else str(v) for v in column]
        if sum(1 for v in column if v is not None) < config.min_reference_events:
            return None
        return _CategoricalFeature(spec, present, ctx, config, budget, events_per_day)

    def update(
        self, values: Sequence[FeatureValue], at: datetime, window_start: datetime
    ) -> list[DriftVerdict]:
        verdicts = []
        for feature, value in zip(self.features, values, strict=True):
            if feature is not None:
                verdict = feature.update(value, at, window_start)
                if verdict is not None:
                    verdicts.append(verdict)
        return verdicts

    def close_window(self, window_start: datetime, at: datetime) -> list[DriftVerdict]:
        verdicts: list[DriftVerdict] = []
        for feature in self.features:
            if feature is not None:
                verdicts.extend(feature.close_window(window_start, at))
        return verdicts


@dataclass
class _Phase:
    """Collecting a reference, then monitoring with the bank built from it."""

    specs: tuple[FeatureSpec, ...]
    ctx: _Context
    rows: list[tuple[FeatureValue, ...]] = field(default_factory=list)
    first_day: date | None = None
    bank: _FeatureBank | None = None


def _window_start(at: datetime, window: Literal["daily", "weekly"]) -> datetime:
    day = at.astimezone(UTC).date()
    if window == "weekly":
        day -= timedelta(days=day.weekday())
    return datetime.combine(day, time(), UTC)


class DriftBank:
    """Input and output drift of one tool; feed it every `AIResult` of the tool."""

    def __init__(self, tool_id: str, config: DriftBankConfig | None = None) -> None:
        self.tool_id = tool_id
        self.config = config or DriftBankConfig()
        specs = self.config.specs
        self._input_specs = tuple(s for s in specs if s.role == "input")
        self._output_specs = tuple(s for s in specs if s.role == "output")
        self._inputs = _Phase(self._input_specs, _Context(tool_id, None, "input"))
        self._outputs: dict[str, _Phase] = {}
        self._window_start: datetime | None = None
        self._window_end: datetime | None = None
        self._seen: set[str] = set()
        self._recent_new: list[tuple[int, NewCategory]] = []
        self._last_window_verdicts: list[DriftVerdict] = []
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
        bank._build(bank._inputs, [bank._extract(r, bank._input_specs) for r in results], span)
        by_version: dict[str, list[AIResult]] = {}
        for r in results:
            by_version.setdefault(r.software_version, []).append(r)
        for version, rows in by_version.items():
            phase = bank._output_phase(version)
            bank._build(phase, [bank._extract(r, bank._output_specs) for r in rows], span)
        return bank

    @property
    def monitoring(self) -> bool:
        """True once the input reference is established and the detectors calibrated."""
        return self._inputs.bank is not None

    @property
    def disabled_features(self) -> list[str]:
        """Input features the reference could not support (too few non-missing values)."""
        return list(self._inputs.bank.disabled) if self._inputs.bank else []

    def versions_monitored(self) -> list[str]:
        return [v for v, phase in self._outputs.items() if phase.bank is not None]

    def update(self, result: AIResult) -> list[DriftVerdict]:
        """Count one AI result; return the verdicts it completes (possibly none)."""
        at = result.inference_date
        verdicts: list[DriftVerdict] = []
        if self._window_end is None or at >= self._window_end:
            verdicts = self._roll(at)
        if result.event_id in self._seen:
            return verdicts
        self._seen.add(result.event_id)
        assert self._window_start is not None
        verdicts += self._feed(self._inputs, self._extract(result, self._input_specs), at)
        if self._output_specs:
            phase = self._outputs.get(result.software_version) or self._output_phase(
                result.software_version
            )
            verdicts += self._feed(phase, self._extract(result, self._output_specs), at)
        return verdicts

    def advance(self, now: datetime) -> list[DriftVerdict]:
        """Close the current window if `now` is past its end (call from a timer)."""
        if self._window_end is not None and now >= self._window_end:
            verdicts = self._close(now)
            self._window_start = self._window_end = None
            return verdicts
        return []

    @staticmethod
    def _extract(result: AIResult, specs: Sequence[FeatureSpec]) -> tuple[FeatureValue, ...]:
        return tuple(spec.extract(result) for spec in specs)

    def _output_phase(self, version: str) -> _Phase:
        phase = _Phase(self._output_specs, _Context(self.tool_id, version, "output"))
        self._outputs[version] = phase
        return phase

    def _build(self, phase: _Phase, rows: list[tuple[FeatureValue, ...]], days: float) -> None:
        if len(rows) < self.config.min_reference_events:
            return
        phase.bank = _FeatureBank(phase.specs, rows, days, phase.ctx, self.config)
        phase.rows = []

    def _feed(
        self, phase: _Phase, values: tuple[FeatureValue, ...], at: datetime
    ) -> list[DriftVerdict]:
        assert self._window_start is not None
        if phase.bank is not None:
            verdicts = phase.bank.update(values, at, self._window_start)
            return [self._with_hint(v) for v in self._note_new(verdicts)]
        day = at.astimezone(UTC).date()
        if phase.first_day is None:
            phase.first_day = day
        if (day - phase.first_day).days < self.config.reference_days:
            phase.rows.append(values)
            return []
        self._build(phase, phase.rows, float(self.config.reference_days))
        if phase.bank is None:
            # Too few events for a reference: start collecting again from today.
            phase.first_day, phase.rows = day, [values]
            return []
        return self._feed(phase, values, at)

    def _note_new(self, verdicts: list[DriftVerdict]) -> list[DriftVerdict]:
        for v in verdicts:
            if v.kind == "new_category" and v.category is not None and v.first_seen:
                self._recent_new.append(
                    (self._window_index, NewCategory(v.feature, v.category, v.first_seen))
                )
        return verdicts

    def _roll(self, at: datetime) -> list[DriftVerdict]:
        verdicts = self._close(at) if self._window_start is not None else []
        self._window_start = _window_start(at, self.config.window)
        self._window_end = self._window_start + timedelta(days=WINDOW_DAYS[self.config.window])
        return verdicts

    def _close(self, at: datetime) -> list[DriftVerdict]:
        assert self._window_start is not None
        start = self._window_start
        verdicts: list[DriftVerdict] = []
        for phase in (self._inputs, *self._outputs.values()):
            if phase.bank is not None:
                verdicts.extend(phase.bank.close_window(start, at))
        self._last_window_verdicts = verdicts
        verdicts = [self._with_hint(v) for v in verdicts]
        self._window_index += 1
        self._seen = set()
        self._recent_new = [(i, n) for i, n in self._recent_new if i >= self._window_index - 1]
        return verdicts

    def _with_hint(self, verdict: DriftVerdict) -> DriftVerdict:
        if verdict.kind == "new_category":
            return verdict
        news = [
            n
            for _, n in self._recent_new
            if n.feature in CAUSE_FEATURES and n.feature != verdict.feature
        ]
        shifts = [
            v
            for v in self._last_window_verdicts
            if v.feature in CAUSE_FEATURES and v.feature != verdict.feature
        ]
        parts = [
            f"new {n.feature} {n.category!r} first seen {n.first_seen.isoformat()}" for n in news
        ]
        seen_features = set()
        for v in shifts:
            if v.feature not in seen_features:
                seen_features.add(v.feature)
                parts.append(f"{v.feature} distribution shifted in the same window ({v.detector})")
        if not parts:
            return verdict
        first = min((n.first_seen for n in news), default=None)
        return replace(verdict, cause_hint="; ".join(parts[:3]), first_seen=first)


def feature_row(
    result: AIResult, specs: Sequence[FeatureSpec] = DEFAULT_FEATURES
) -> dict[str, FeatureValue]:
    """One AI result as a flat feature row (for `report.drift_report`)."""
    return {spec.name: spec.extract(result) for spec in specs}
