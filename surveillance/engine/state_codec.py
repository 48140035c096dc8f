"""Object graphs of derived state to JSON-ready values and back, exactly.

The case stage's per-tool state (monitor windows, charts, verdicts, episodes; drift
banks) is dozens of small classes that two other concerns keep changing (how updates are
computed, when evaluation happens). Export methods written field by field would have to
follow every such change, and a missed field would restore a subtly different monitor.
This codec instead walks the objects' own attributes (`__dict__` and `__slots__`), so
whatever the classes hold is what a snapshot holds:

- only the classes named in `classes` are built on decode (no import by name, no
  callables): anything else met on encode raises `StateCodecError`, and the caller
  falls back to rebuilding that state by replay;
- shared references stay shared (an agreement-window entry is one list shared by the
  8 keys its case counts under; placements point at their version's record): every
  mutable object is written once and referred to by number afterwards;
- `externals` are objects the live process already holds and a snapshot must not copy
  (settings, the clearance baselines, the drift configuration with its feature
  extractors, the calibration cache): written as their name, resolved to the live
  object on decode;
- floats round-trip exactly (shortest repr), non-finite ones are tagged; datetimes keep
  microseconds and UTC; numpy arrays keep their dtype and shape; pydantic models go
  through their own JSON.

A value is a JSON scalar (None, bool, int, str, finite float) or a list whose first
item is a tag.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from enum import Enum
from typing import Any

import msgspec
import numpy as np
from pydantic import BaseModel

_MS_ENCODE = msgspec.json.Encoder().encode


class StateCodecError(ValueError):
    """The state holds something the codec cannot write, or a snapshot it cannot read."""


def _attributes(obj: object) -> Iterable[str]:
    names: list[str] = []
    for klass in type(obj).__mro__:
        slots = klass.__dict__.get("__slots__", ())
        names += [slots] if isinstance(slots, str) else list(slots)
    # A class's `__derived__` attributes are made again from the rest when read
    # (`__restore_derived__`): bound methods and other caches of its own state.
    skip = {"__dict__", "__weakref__", *getattr(type(obj), "__derived__", ())}
    names = [n for n in names if n not in skip and hasattr(obj, n)]
    return [*names, *(n for n in getattr(obj, "__dict__", {}) if n not in skip)]


def _ordered(items: set[Any] | frozenset[Any]) -> list[Any]:
    """A set's items sorted when they can be: a set of strings iterates in an order that
    differs between processes (hash randomization), and the same state should give the
    same snapshot."""
    try:
        return sorted(items)
    except TypeError:
        return list(items)


class _Encoder:
    def __init__(self, classes: Mapping[str, type], externals: Mapping[int, str]) -> None:
        self.names = {klass: name for name, klass in classes.items()}
        self.externals = externals
        self.memo: dict[int, int] = {}
        #: Keeps every memoized object alive while encoding, so no id is reused.
        self.kept: list[object] = []

    def __call__(self, value: Any) -> Any:
        if value is None or value is True or value is False or type(value) in (int, str):
            return value
        kind = type(value)
        if kind is float:
            return value if math.isfinite(value) else ["f", repr(value)]
        external = self.externals.get(id(value))
        if external is not None:
            return ["x", external]
        if kind is tuple:
            return ["t", [self(v) for v in value]]
        if kind is datetime:
            if value.tzinfo is not None and value.utcoffset() != timedelta(0):
                raise StateCodecError(f"a datetime not in UTC: {value!r}")
            return ["dt", value.isoformat()]
        if kind is date:
            return ["da", value.toordinal()]
        if kind is timedelta:
            return ["td", value.days, value.seconds, value.microseconds]
        if kind is frozenset:
            return ["fs", [self(v) for v in _ordered(value)]]
        if isinstance(value, Enum):
            return ["e", self._name(kind), value.value]
        if isinstance(value, np.generic):
            return ["ns", value.dtype.str, self(value.item())]
        if isinstance(value, tuple):  # a NamedTuple
            return ["nt", self._name(kind), [self(v) for v in value]]
        ref = self.memo.get(id(value))
        if ref is not None:
            return ["r", ref]
        ref = self.memo[id(value)] = len(self.memo)
        self.kept.append(value)
        if kind is list:
            return ["l", ref, [self(v) for v in value]]
        if kind is dict:
            return ["d", ref, [[self(k), self(v)] for k, v in value.items()]]
        if kind is Counter:
            return ["C", ref, [[self(k), self(v)] for k, v in value.items()]]
        if kind is set:
            return ["s", ref, [self(v) for v in _ordered(value)]]
        if kind is deque:
            return ["q", ref, value.maxlen, [self(v) for v in value]]
        if kind is np.ndarray:
            return ["np", ref, value.dtype.str, list(value.shape),
                    [self(v) for v in value.ravel().tolist()]]
        if isinstance(value, BaseModel):
            return ["pm", ref, self._name(kind), value.model_dump_json()]
        if isinstance(value, msgspec.Struct):
            return ["ms", ref, self._name(kind), _MS_ENCODE(value).decode()]
        name = self._name(kind)
        return ["o", ref, name, [[a, self(getattr(value, a))] for a in _attributes(value)]]

    def _name(self, kind: type) -> str:
        name = self.names.get(kind)
        if name is None:
            raise StateCodecError(
                f"{kind.__module__}.{kind.__qualname__} is not a class the state codec may "
                "write (add it to the snapshot's classes, or keep it out of the state)")
        return name


class _Decoder:
    def __init__(self, classes: Mapping[str, type], externals: Mapping[str, object]) -> None:
        self.classes = classes
        self.externals = externals
        self.memo: dict[int, Any] = {}
        #: The objects built from attributes, for their `__restore_derived__` at the end.
        self.derived: list[Any] = []

    def __call__(self, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        tag = value[0]
        if tag == "f":
            return float(value[1])
        if tag == "x":
            if value[1] not in self.externals:
                raise StateCodecError(f"the snapshot names an unknown live object {value[1]!r}")
            return self.externals[value[1]]
        if tag == "t":
            return tuple(self(v) for v in value[1])
        if tag == "dt":
            return datetime.fromisoformat(value[1])  # "+00:00" gives back `UTC` itself
        if tag == "da":
            return date.fromordinal(value[1])
        if tag == "td":
            return timedelta(days=value[1], seconds=value[2], microseconds=value[3])
        if tag == "fs":
            return frozenset(self(v) for v in value[1])
        if tag == "e":
            return self._class(value[1])(value[2])
        if tag == "ns":
            return np.dtype(value[1]).type(self(value[2]))
        if tag == "nt":
            return self._class(value[1])(*(self(v) for v in value[2]))
        if tag == "r":
            return self.memo[value[1]]
        ref = value[1]
        out: Any
        if tag == "l":
            out = self.memo[ref] = []
            out.extend(self(v) for v in value[2])
        elif tag in ("d", "C"):
            out = self.memo[ref] = {} if tag == "d" else Counter()
            for k, v in value[2]:
                out[self(k)] = self(v)
        elif tag == "s":
            out = self.memo[ref] = set()
            out.update(self(v) for v in value[2])
        elif tag == "q":
            out = self.memo[ref] = deque(maxlen=value[2])
            out.extend(self(v) for v in value[3])
        elif tag == "np":
            out = self.memo[ref] = np.array([self(v) for v in value[4]],
                                            dtype=np.dtype(value[2])).reshape(value[3])
        elif tag == "pm":
            out = self.memo[ref] = self._class(value[2]).model_validate_json(value[3])
        elif tag == "ms":
            try:
                out = self.memo[ref] = msgspec.json.decode(value[3], type=self._class(value[2]))
            except msgspec.MsgspecError as e:  # e.g. a NaN, which JSON writes as null
                raise StateCodecError(f"a {value[2]} in the snapshot does not read back: {e}"
                                      ) from e
        elif tag == "o":
            klass = self._class(value[2])
            out = self.memo[ref] = object.__new__(klass)
            for attribute, raw in value[3]:
                object.__setattr__(out, attribute, self(raw))
            self.derived.append(out)
        else:
            raise StateCodecError(f"unknown tag {tag!r} in a snapshot")
        return out

    def _class(self, name: str) -> Any:
        klass = self.classes.get(name)
        if klass is None:
            raise StateCodecError(f"the snapshot names a class this code does not know: {name}")
        return klass


def encode(root: Any, classes: Mapping[str, type], externals: Mapping[int, str]) -> Any:
    """`root` as a JSON-ready value. `classes` maps a stable name to each class that may
    appear; `externals` maps `id(obj)` to the name of each live object not to copy."""
    return _Encoder(classes, externals)(root)


def decode(value: Any, classes: Mapping[str, type], externals: Mapping[str, object]) -> Any:
    """The object graph `encode` wrote, with `externals` (by name) put back."""
    try:
        decoder = _Decoder(classes, externals)
        root = decoder(value)
        for obj in decoder.derived:  # once every object they may read is complete
            restore = getattr(obj, "__restore_derived__", None)
            if restore is not None:
                restore()
        return root
    except (KeyError, IndexError, TypeError, AttributeError) as e:
        raise StateCodecError(f"a malformed snapshot: {e!r}") from e
