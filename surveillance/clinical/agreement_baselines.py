"""Agreement baselines of quantification tools: what their measurements are compared with.

Quantification tools (hemorrhage volume, nodule diameter, ejection fraction) report a
number, not a call, so their baseline is an agreement with the reference measurement:
the Bland-Altman bias and standard deviation of the differences, ICC and Lin's
concordance. They live in the `quantification:` section of the baseline registry
(`baselines.yaml`, documented there); `load_agreement_baselines()` validates it and raises
`RegistryError` with one clear line when it is wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from surveillance.clinical.baselines import DEFAULT_REGISTRY, RegistryError
from surveillance.contracts import MeasurementUnit

Correlation = Annotated[float, Field(ge=-1.0, le=1.0)]
Positive = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AgreementBaseline(_Strict):
    """Cleared (or locally validated) agreement, in the measurement's unit."""

    bias: Annotated[float, Field(allow_inf_nan=False)]
    sd_differences: Positive
    icc: Correlation
    ccc: Correlation


class AgreementTolerance(_Strict):
    """`bias`: the shift of the mean difference (in the unit) the committee must hear of;
    the bias chart is tuned to it and the verdict uses it."""

    bias: Positive


class QuantificationTool(_Strict):
    tool_id: str
    display_name: str
    manufacturer: str
    product: str
    source: str
    finding_code: str
    measurement: str
    unit: MeasurementUnit
    modality: str
    body_part: str
    operating_threshold: Annotated[float, Field(ge=0.0, le=1.0)]
    agreement: AgreementBaseline
    tolerance: AgreementTolerance
    min_pairs: int = Field(ge=4)
    #: Share of the tool's yearly false-alarm budget given to its bias chart and to its
    #: weekly distribution test each (see DESIGN.md: one budget per tool-year).
    false_alarms_per_year: Positive = 0.5
    reference_days: int = Field(default=28, ge=7)

    @model_validator(mode="after")
    def _limits_make_sense(self) -> QuantificationTool:
        if self.tolerance.bias > 10 * self.agreement.sd_differences:
            raise ValueError("tolerance.bias is more than 10 SDs of the differences")
        return self


def load_agreement_baselines(path: Path | None = None) -> dict[str, QuantificationTool]:
    """Read and validate the registry's `quantification:` section; keys are tool ids.

    A registry without that section has no quantification tools (an empty mapping)."""
    path = path or DEFAULT_REGISTRY
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise RegistryError(f"cannot read baseline registry {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise RegistryError(f"baseline registry {path} is not valid YAML: {exc}") from exc
    section = raw.get("quantification") if isinstance(raw, dict) else None
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise RegistryError(f"baseline registry {path}: 'quantification:' must be a mapping")
    tools: dict[str, QuantificationTool] = {}
    for tool_id, entry in section.items():
        try:
            tools[str(tool_id)] = QuantificationTool.model_validate(
                {"tool_id": str(tool_id), **(entry or {})}
            )
        except (ValidationError, TypeError) as exc:
            raise RegistryError(
                f"baseline registry {path}: quantification tool {tool_id!r}: {_first(exc)}"
            ) from exc
    return tools


def _first(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"field {where}: {first['msg']}"
    return "entry must be a mapping of fields"
