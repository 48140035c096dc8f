"""How one tool's DICOM Structured Reports (TID 1500) map onto its `AIResult`s.

Vendors code the same thing differently: one writes its finding as SNOMED CT, another as
RadLex or a private scheme; the score is a numeric measurement under the vendor's own code
name, in UCUM `1` or `%`. The per-tool `dicom:` block of the baseline registry says, for
each tool, which algorithm names (TID 4019) identify it, which coded findings mean its
`finding_code`, which measurement holds the score and which qualitative evaluation holds
the tool's own call. See `baselines.yaml` for the documented format and an example per
simulated tool.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Coded values that mean "the tool calls the finding" / "does not" when the mapping does
#: not list its own: SNOMED CT Present / Absent (CID 240) and Yes / No (CID 230).
DEFAULT_POSITIVE = (("SCT", "52101004"), ("SCT", "373066001"))
DEFAULT_NEGATIVE = (("SCT", "2667000"), ("SCT", "373067005"))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Code(_Strict):
    """A coded concept: coding scheme designator (SCT, RADLEX, DCM, 99VENDOR...) and value."""

    scheme: Annotated[str, Field(min_length=1, max_length=16)]
    value: Annotated[str, Field(min_length=1, max_length=64)]
    meaning: str | None = Field(default=None, description="for readers; never matched")

    @property
    def key(self) -> tuple[str, str]:
        return (self.scheme, self.value)


class ScoreLocation(_Strict):
    """The numeric measurement (TID 300) holding the score, and how to read it as [0, 1].

    `ai_result = value / full_scale`; a value outside [0, full_scale] makes the result
    unusable (never clipped). A probability in UCUM `1` has full scale 1, in `%` 100; a
    quantification tool states the quantity's full scale in its unit.
    """

    concept: Code
    unit: Annotated[str, Field(min_length=1, max_length=32)] = Field(
        description="UCUM code the measurement must carry"
    )
    full_scale: Annotated[float, Field(gt=0)] = 1.0


class CallLocation(_Strict):
    """The qualitative evaluation holding the tool's own positive/negative call."""

    concept: Code
    positive: tuple[Code, ...] = tuple(Code(scheme=s, value=v) for s, v in DEFAULT_POSITIVE)
    negative: tuple[Code, ...] = tuple(Code(scheme=s, value=v) for s, v in DEFAULT_NEGATIVE)


class DicomMapping(_Strict):
    """One tool's mapping. A measurement group belongs to the tool when its algorithm
    name (TID 4019) is one of `algorithm_names`; its finding must be one of `findings`.
    At least one of `score` and `call` must be given."""

    algorithm_names: tuple[Annotated[str, Field(min_length=1, max_length=64)], ...] = Field(
        min_length=1
    )
    findings: tuple[Code, ...] = Field(min_length=1)
    score: ScoreLocation | None = None
    call: CallLocation | None = None

    @model_validator(mode="after")
    def _score_or_call(self) -> DicomMapping:
        if self.score is None and self.call is None:
            raise ValueError("a dicom mapping needs a score, a call, or both")
        return self
