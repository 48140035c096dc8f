"""The features a tool's drift bank reads from each `AIResult`, and its settings.

- input, numeric: kvp, slice_thickness, pixel_spacing, age
- input, categorical: scanner_manufacturer, scanner_model, scanner_software_version,
  protocol_name, site, contrast, sex
- output (kept per AI software version), numeric: score; categorical: positive_call
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from surveillance.contracts import AIResult
from surveillance.stats.alarm_budget import DEFAULT_BUDGET
from surveillance.stats.drift_calibration import WINDOW_DAYS

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


_FLAGS: dict[bool | None, str | None] = {True: "true", False: "false", None: None}


# Plain fields are read by attrgetter (C code): the bank reads every feature of every
# event, column by column (`drift_bank`).
DEFAULT_FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec("kvp", "numeric", "input", attrgetter("acquisition.kvp"), " kV"),
    FeatureSpec(
        "slice_thickness", "numeric", "input", attrgetter("acquisition.slice_thickness"), " mm"
    ),
    FeatureSpec("pixel_spacing", "numeric", "input", attrgetter("acquisition.pixel_spacing"),
                " mm"),
    FeatureSpec(
        "age", "numeric", "input", lambda r: None if r.age is None else float(r.age), " years"
    ),
    FeatureSpec("scanner_manufacturer", "categorical", "input",
                attrgetter("scanner.manufacturer")),
    FeatureSpec("scanner_model", "categorical", "input", attrgetter("scanner.model")),
    FeatureSpec(
        "scanner_software_version",
        "categorical",
        "input",
        attrgetter("scanner.software_version"),
    ),
    FeatureSpec("protocol_name", "categorical", "input",
                attrgetter("acquisition.protocol_name")),
    FeatureSpec("site", "categorical", "input", attrgetter("site")),
    FeatureSpec("contrast", "categorical", "input", lambda r: _FLAGS[r.contrast_indication]),
    # An Enum member's `_value_` is what `.value` returns, without the descriptor call.
    FeatureSpec("sex", "categorical", "input", attrgetter("sex._value_")),
    FeatureSpec("score", "numeric", "output", attrgetter("ai_result")),
    FeatureSpec("positive_call", "categorical", "output", lambda r: _FLAGS[r.result_indicator]),
)
FEATURES_BY_NAME = {spec.name: spec for spec in DEFAULT_FEATURES}
#: Features whose change is a plausible cause of a shift elsewhere (named in hints).
CAUSE_FEATURES = frozenset(
    {"scanner_manufacturer", "scanner_model", "scanner_software_version", "protocol_name", "site"}
)


def feature_row(
    result: AIResult, specs: Sequence[FeatureSpec] = DEFAULT_FEATURES
) -> dict[str, FeatureValue]:
    """One AI result as a flat feature row (for `report.drift_report`)."""
    return {spec.name: spec.extract(result) for spec in specs}


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
    #: Base seed: each calibration's seed is derived from it and the calibration's
    #: identity (`drift_calibration.calibration_seed`).
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
