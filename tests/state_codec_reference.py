"""The state codec's writing rules as plainly as they can be written: one recursive
function, every check in the order the format defines (scalars, externals, immutable
values, then mutable objects numbered in writing order). `engine.state_codec`'s encoder
dispatches on types and passes plain items through without a call (the snapshot of a
busy tool is ~100,000 values); it must write exactly what this does.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from enum import Enum
from typing import Any

import msgspec
import numpy as np
from pydantic import BaseModel

from surveillance.engine.state_codec import StateCodecError


def _ordered(items: set[Any] | frozenset[Any]) -> list[Any]:
    try:
        return sorted(items)
    except TypeError:
        return list(items)


def _attributes(obj: object) -> list[str]:
    names: list[str] = []
    for klass in type(obj).__mro__:
        slots = klass.__dict__.get("__slots__", ())
        names += [slots] if isinstance(slots, str) else list(slots)
    skip = {"__dict__", "__weakref__", *getattr(type(obj), "__derived__", ())}
    names = [n for n in names if n not in skip and hasattr(obj, n)]
    return [*names, *(n for n in getattr(obj, "__dict__", {}) if n not in skip)]


def reference_encode(root: Any, classes: Mapping[str, type], externals: Mapping[int, str]
                     ) -> Any:
    names = {klass: name for name, klass in classes.items()}
    memo: dict[int, int] = {}
    kept: list[object] = []

    def name_of(kind: type) -> str:
        if kind not in names:
            raise StateCodecError(f"{kind.__qualname__} is not a class the state codec may "
                                  "write")
        return names[kind]

    def write(value: Any) -> Any:
        if value is None or value is True or value is False or type(value) in (int, str):
            return value
        kind = type(value)
        if kind is float:
            return value if math.isfinite(value) else ["f", repr(value)]
        if id(value) in externals:
            return ["x", externals[id(value)]]
        if kind is tuple:
            return ["t", [write(v) for v in value]]
        if kind is datetime:
            if value.tzinfo is not None and value.utcoffset() != timedelta(0):
                raise StateCodecError(f"a datetime not in UTC: {value!r}")
            return ["dt", value.isoformat()]
        if kind is date:
            return ["da", value.toordinal()]
        if kind is timedelta:
            return ["td", value.days, value.seconds, value.microseconds]
        if kind is frozenset:
            return ["fs", [write(v) for v in _ordered(value)]]
        if isinstance(value, Enum):
            return ["e", name_of(kind), value.value]
        if isinstance(value, np.generic):
            return ["ns", value.dtype.str, write(value.item())]
        if isinstance(value, tuple):
            return ["nt", name_of(kind), [write(v) for v in value]]
        if id(value) in memo:
            return ["r", memo[id(value)]]
        ref = memo[id(value)] = len(memo)
        kept.append(value)
        if kind is list:
            return ["l", ref, [write(v) for v in value]]
        if kind is dict:
            return ["d", ref, [[write(k), write(v)] for k, v in value.items()]]
        if kind is Counter:
            return ["C", ref, [[write(k), write(v)] for k, v in value.items()]]
        if kind is set:
            return ["s", ref, [write(v) for v in _ordered(value)]]
        if kind is deque:
            return ["q", ref, value.maxlen, [write(v) for v in value]]
        if kind is np.ndarray:
            return ["np", ref, value.dtype.str, list(value.shape),
                    [write(v) for v in value.ravel().tolist()]]
        if isinstance(value, BaseModel):
            return ["pm", ref, name_of(kind), value.model_dump_json()]
        if isinstance(value, msgspec.Struct):
            return ["ms", ref, name_of(kind), msgspec.json.encode(value).decode()]
        return ["o", ref, name_of(kind), [[a, write(getattr(value, a))]
                                          for a in _attributes(value)]]

    return write(root)
