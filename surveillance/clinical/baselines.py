"""Clearance-baseline registry: what each tool's local performance is compared with.

The registry is a YAML file (see `baselines.yaml` beside this module for the documented
format and one example per simulated tool). `load_registry()` validates it and raises
`RegistryError` with one clear line when it is wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from surveillance.clinical.dicom_mapping import DicomMapping
from surveillance.errors import SurveillanceError

DEFAULT_REGISTRY = Path(__file__).with_name("baselines.yaml")

Proportion = Annotated[float, Field(ge=0.0, le=1.0)]


class RegistryError(SurveillanceError):
    """The baseline registry file is missing or invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Clearance(_Strict):
    submission: str
    primary: bool
    source: str


class Figure(_Strict):
    value: Proportion
    ci95: tuple[Proportion, Proportion] | None = None

    @model_validator(mode="after")
    def _ci_contains_value(self) -> Figure:
        if self.ci95 is not None and not self.ci95[0] <= self.value <= self.ci95[1]:
            raise ValueError(f"ci95 {self.ci95} does not contain value {self.value}")
        return self


class Baseline(_Strict):
    sensitivity: Figure
    specificity: Figure


class Tolerance(_Strict):
    sensitivity: Proportion
    specificity: Proportion


class MinCounts(_Strict):
    positives: int = Field(ge=1)
    negatives: int = Field(ge=1)


class Acceptance(_Strict):
    min_positives: int = Field(ge=1)
    min_negatives: int = Field(ge=1)
    sensitivity: Proportion
    specificity: Proportion
    subgroup_floor: Proportion


class Coverage(_Strict):
    """Which ordered exams the tool must see (besides its modality), and the least share
    of them it must produce a result for. An empty list matches any value."""

    body_parts: list[str] = []
    exam_codes: list[str] = []
    floor: Proportion


class ToolBaseline(_Strict):
    tool_id: str
    display_name: str
    manufacturer: str
    product: str
    clearance: Clearance
    intended_use: str
    finding_code: str
    modality: str
    body_part: str
    operating_threshold: Proportion
    baseline: Baseline
    tolerance: Tolerance
    min_counts: MinCounts
    acceptance: Acceptance
    #: How the tool's DICOM SRs map onto AI results (`interop/dicom_sr.py`); optional.
    dicom: DicomMapping | None = None
    coverage: Coverage | None = None
    #: Licence and running cost per year (any currency, stated in `cost_currency`), for the
    #: committee's cost per study and per true-positive flag.
    annual_cost: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    cost_currency: str = "USD"


def load_registry(path: Path | None = None) -> dict[str, ToolBaseline]:
    """Read and validate a registry file; keys are tool ids."""
    path = path or DEFAULT_REGISTRY
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise RegistryError(f"cannot read baseline registry {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise RegistryError(f"baseline registry {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("tools"), dict):
        raise RegistryError(f"baseline registry {path} needs a top-level 'tools:' mapping")
    tools: dict[str, ToolBaseline] = {}
    for tool_id, entry in raw["tools"].items():
        try:
            tools[tool_id] = ToolBaseline.model_validate({"tool_id": tool_id, **(entry or {})})
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(p) for p in first["loc"])
            raise RegistryError(
                f"baseline registry {path}: tool {tool_id!r}, field {where}: {first['msg']}"
            ) from exc
    return tools
