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

import gc
import math
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, timedelta
from enum import Enum
from typing import Any

import msgspec
import numpy as np
from pydantic import BaseModel

_MS_ENCODE = msgspec.json.Encoder().encode


class StateCodecError(ValueError):
    """The state holds something the codec cannot write, or a snapshot it cannot read."""


_CLASS_ATTRIBUTES: dict[type, tuple[list[str], frozenset[str]]] = {}


def _class_attributes(kind: type) -> tuple[list[str], frozenset[str]]:
    """A class's slot names (in `__mro__` order, the skipped ones left out) and the names
    to skip: the same for each of its objects, so found once per class."""
    found = _CLASS_ATTRIBUTES.get(kind)
    if found is None:
        names: list[str] = []
        for klass in kind.__mro__:
            slots = klass.__dict__.get("__slots__", ())
            names += [slots] if isinstance(slots, str) else list(slots)
        # A class's `__derived__` attributes are made again from the rest when read
        # (`__restore_derived__`): bound methods and other caches of its own state.
        skip = frozenset({"__dict__", "__weakref__", *getattr(kind, "__derived__", ())})
        found = _CLASS_ATTRIBUTES[kind] = ([n for n in names if n not in skip], skip)
    return found


def _ordered(items: set[Any] | frozenset[Any]) -> list[Any]:
    """A set's items sorted when they can be: a set of strings iterates in an order that
    differs between processes (hash randomization), and the same state should give the
    same snapshot."""
    try:
        return sorted(items)
    except TypeError:
        return list(items)


#: What `getattr` gives for a slot that is not set (no value of the state is this).
_UNSET = object()

#: Values written as themselves (`bool` has two objects, `None` one: their type says so).
_PLAIN = frozenset({type(None), bool, int, str})


class _Encoder:
    """One pass over an object graph. A value's type picks its writer (`_writer`, found
    once per type): a snapshot of a busy tool has ~100,000 values, most of them ints and
    strings in lists and tuples, which the comprehensions below pass through without a
    call."""

    def __init__(self, classes: Mapping[str, type], externals: Mapping[int, str]) -> None:
        self.names = {klass: name for name, klass in classes.items()}
        self.externals = externals
        self.memo: dict[int, int] = {}
        #: Keeps every memoized object alive while encoding, so no id is reused.
        self.kept: list[object] = []
        self.writers: dict[type, Callable[[Any], Any]] = {
            tuple: self._tuple, datetime: self._datetime, date: self._date,
            timedelta: self._timedelta, frozenset: self._frozenset, list: self._list,
            dict: self._dict, Counter: self._counter, set: self._set, deque: self._deque,
            np.ndarray: self._array,
        }

    def __call__(self, value: Any) -> Any:
        kind = type(value)
        if kind in _PLAIN:
            return value
        if kind is float:
            return value if math.isfinite(value) else ["f", repr(value)]
        # Only objects written by `_number` are in `memo` (no external is: it returns
        # below first), and they are kept alive, so no other object has their id.
        ref = self.memo.get(id(value))
        if ref is not None:
            return ["r", ref]
        external = self.externals.get(id(value))
        if external is not None:
            return ["x", external]
        writer = self.writers.get(kind)
        if writer is None:
            writer = self.writers[kind] = self._writer(kind)
        return writer(value)

    def _items(self, values: Iterable[Any]) -> list[Any]:
        plain = _PLAIN
        return [v if type(v) in plain else self(v) for v in values]

    def _pairs(self, items: Iterable[tuple[Any, Any]]) -> list[list[Any]]:
        plain = _PLAIN
        return [[k if type(k) in plain else self(k), v if type(v) in plain else self(v)]
                for k, v in items]

    def _number(self, value: Any) -> int:
        """A mutable object's number, its references' target (`__call__` found none)."""
        ref = self.memo[id(value)] = len(self.memo)
        self.kept.append(value)
        return ref

    def _writer(self, kind: type) -> Callable[[Any], Any]:
        """The writer of a type that is none of the builtins `writers` starts with."""
        if issubclass(kind, Enum):
            return lambda value: ["e", self._name(kind), value.value]
        if issubclass(kind, np.generic):
            return lambda value: ["ns", value.dtype.str, self(value.item())]
        if issubclass(kind, tuple):  # a NamedTuple
            return lambda value: ["nt", self._name(kind), self._items(value)]
        if issubclass(kind, BaseModel):
            return self._model
        if issubclass(kind, msgspec.Struct):
            return self._struct
        return self._object

    def _tuple(self, value: tuple[Any, ...]) -> Any:
        return ["t", self._items(value)]

    @staticmethod
    def _datetime(value: datetime) -> Any:
        if value.tzinfo is not None and value.utcoffset() != timedelta(0):
            raise StateCodecError(f"a datetime not in UTC: {value!r}")
        return ["dt", value.isoformat()]

    @staticmethod
    def _date(value: date) -> Any:
        return ["da", value.toordinal()]

    @staticmethod
    def _timedelta(value: timedelta) -> Any:
        return ["td", value.days, value.seconds, value.microseconds]

    def _frozenset(self, value: frozenset[Any]) -> Any:
        return ["fs", self._items(_ordered(value))]

    def _list(self, value: list[Any]) -> Any:
        ref = self._number(value)  # before its items: numbers go in writing order
        return ["l", ref, self._items(value)]

    def _dict(self, value: dict[Any, Any]) -> Any:
        ref = self._number(value)
        return ["d", ref, self._pairs(value.items())]

    def _counter(self, value: Counter[Any]) -> Any:
        ref = self._number(value)
        return ["C", ref, self._pairs(value.items())]

    def _set(self, value: set[Any]) -> Any:
        ref = self._number(value)
        return ["s", ref, self._items(_ordered(value))]

    def _deque(self, value: deque[Any]) -> Any:
        ref = self._number(value)
        return ["q", ref, value.maxlen, self._items(value)]

    def _array(self, value: np.ndarray[Any, Any]) -> Any:
        ref = self._number(value)
        flat = value.ravel().tolist()
        dtype = value.dtype
        # `tolist` gives Python ints and bools, and floats of up to 64 bits: those are
        # written as themselves unless a float is not finite.
        if not (dtype.kind in "biu" or (dtype.kind == "f" and dtype.itemsize <= 8
                and bool(np.isfinite(value).all()))):
            flat = [self(v) for v in flat]
        return ["np", ref, dtype.str, list(value.shape), flat]

    def _model(self, value: BaseModel) -> Any:
        ref = self._number(value)
        return ["pm", ref, self._name(type(value)), value.model_dump_json()]

    def _struct(self, value: msgspec.Struct) -> Any:
        ref = self._number(value)
        return ["ms", ref, self._name(type(value)), _MS_ENCODE(value).decode()]

    def _object(self, value: Any) -> Any:
        """Its attributes: the slots that are set (in `__mro__` order), then `__dict__`'s
        (in insertion order), each read once."""
        ref = self._number(value)
        kind = type(value)
        name = self._name(kind)
        slots, skip = _class_attributes(kind)
        plain = _PLAIN
        unset = _UNSET
        pairs = [[a, v if type(v) in plain else self(v)] for a in slots
                 if (v := getattr(value, a, unset)) is not unset]
        own = getattr(value, "__dict__", None)
        if own:
            pairs += [[a, v if type(v := getattr(value, a)) in plain else self(v)]
                      for a in own if a not in skip]
        return ["o", ref, name, pairs]

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


def encode_json(root: Any, classes: Mapping[str, type], externals: Mapping[int, str]
                ) -> bytes:
    """`encode`'s value as JSON (msgspec's), with Python's cyclic collector paused while
    it exists: it is ~100,000 new lists for a busy tool and holds no cycle, so every
    collection that ran while it was built and written would scan it for nothing (about
    40% of the time). The lists are freed by reference counting when this returns."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _MS_ENCODE(_Encoder(classes, externals)(root))
    finally:
        if enabled:
            gc.enable()


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
