"""What every contract shares: the base model, bounded identifier and text types, and the
two enums (sex, the radiologist's label) that several topics carry."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Id = Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True)]
ShortText = Annotated[str, StringConstraints(max_length=256)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]

#: Largest serialized event we accept on an input topic; bigger ones go to the DLQ.
MAX_EVENT_BYTES = 64 * 1024


class Contract(BaseModel):
    """Base of every event: unknown fields are an error, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


M = TypeVar("M", bound=BaseModel)
_set = object.__setattr__


def trusted(model: type[M], values: dict[str, Any], fields_set: set[str]) -> M:
    """A model of values our own code has already made valid, without pydantic's
    validation (what `model_construct` does, which in pydantic 2 is Python and costs more
    than validating): every field in `values`, each of the type validation would give
    (the caller's tests compare it with the validated model). For the per-case hot path
    only; `fields_set` is what validation would record as set."""
    obj = object.__new__(model)
    _set(obj, "__dict__", values)
    _set(obj, "__pydantic_fields_set__", fields_set)
    _set(obj, "__pydantic_extra__", None)
    _set(obj, "__pydantic_private__", None)
    return obj


class Sex(StrEnum):
    FEMALE = "F"
    MALE = "M"
    OTHER = "O"
    UNKNOWN = "U"


class Label(StrEnum):
    """The radiologist's read of one finding, as taken from the final report."""

    PRESENT = "present"
    ABSENT = "absent"
    INDETERMINATE = "indeterminate"
