"""The state codec writes exactly what its plain reference (`tests/state_codec_reference`)
writes: the same value and the same JSON bytes, on generated object graphs with shared
objects, external objects, objects with slots, derived attributes and a `__dict__`,
enums, named tuples, models, structs, numpy arrays with and without non-finite floats;
and on the engine's own per-tool state (`test_engine_snapshots`). A snapshot written by
the faster encoder therefore reads back as before and has the same bytes.
"""

from __future__ import annotations

from collections import Counter, deque
from datetime import UTC, datetime, timedelta, timezone
from enum import Enum
from typing import Any, NamedTuple

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from pydantic import BaseModel

from surveillance.engine.state_codec import StateCodecError, decode, encode, encode_json
from tests.state_codec_reference import reference_encode


class Colour(Enum):
    RED = "red"
    BLUE = 2


class Pair(NamedTuple):
    left: Any
    right: Any


class Model(BaseModel):
    name: str
    score: float


class Struct(msgspec.Struct):
    n: int
    at: datetime


class Slotted:
    __slots__ = ("a", "b", "cache")
    __derived__ = ("cache",)

    def __init__(self, a: Any, b: Any | None = None) -> None:
        self.a = a
        if b is not None:  # else `b` stays unset: not written
            self.b = b
        self.cache = object()  # derived: never written (it could not be)


class WithDict(Slotted):  # slots of its base, and a __dict__ of its own
    pass


class Plain:
    def __init__(self, **attributes: Any) -> None:
        self.__dict__.update(attributes)


CLASSES: dict[str, type] = {c.__qualname__: c for c in (
    Colour, Pair, Model, Struct, Slotted, WithDict, Plain)}
LIVE = object()  # an external: written by name
EXTERNALS = {id(LIVE): "live"}

_floats = st.floats(allow_nan=True, allow_infinity=True)
_arrays = hnp.arrays(
    st.sampled_from([np.float64, np.float32, np.float16, np.int64, np.uint8,
                     np.bool_]),
    hnp.array_shapes(min_dims=1, max_dims=2, max_side=4))
_leaves = (st.none() | st.booleans() | st.integers() | st.text(max_size=4) | _floats
           | st.datetimes(timezones=st.just(UTC)) | st.datetimes() | st.dates()
           | st.timedeltas() | st.sampled_from(Colour) | st.just(LIVE)
           | st.builds(np.float64, _floats) | st.builds(np.int32, st.integers(-9, 9))
           | st.builds(Model, name=st.text(max_size=3), score=st.floats(-1, 1))
           | st.builds(Struct, n=st.integers(), at=st.datetimes(timezones=st.just(UTC))))
_keys = st.text(max_size=3) | st.integers() | st.tuples(st.text(max_size=2), st.integers())


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return (st.lists(inner, max_size=5) | st.tuples(inner, inner)
            | st.dictionaries(_keys, inner, max_size=4)
            | st.builds(Counter, st.dictionaries(_keys, st.integers(), max_size=3))
            | st.builds(deque, st.lists(inner, max_size=3), st.none() | st.integers(3, 6))
            | st.frozensets(st.integers() | st.text(max_size=2), max_size=4)
            | st.sets(st.integers(), max_size=4) | st.sets(_keys, max_size=3)
            | st.builds(Pair, inner, inner) | _arrays
            | st.builds(Slotted, inner, st.none() | inner)
            | st.builds(lambda a, b, c: _with_dict(a, b, c), inner, inner, inner)
            | st.builds(lambda a, b: Plain(first=a, second=b), inner, inner))


def _with_dict(a: Any, b: Any, c: Any) -> WithDict:
    obj = WithDict(a, b)
    obj.extra = c  # type: ignore[attr-defined]
    return obj


_values = st.recursive(_leaves, _containers, max_leaves=25)


@st.composite
def _graphs(draw: st.DrawFn) -> Any:
    """A root holding some of a pool of mutable objects several times each, also inside
    other objects: the codec must write each once and refer to it afterwards."""
    pool = draw(st.lists(st.lists(_values, max_size=3) | st.builds(Plain, x=_values)
                         | st.dictionaries(_keys, _values, max_size=3), min_size=1,
                         max_size=4))
    root: list[Any] = []
    for way in draw(st.lists(st.integers(0, 4), max_size=8)):
        shared = [pool[i] for i in draw(st.lists(st.integers(0, len(pool) - 1), min_size=2,
                                                 max_size=3))]
        root.append((draw(_values), shared[0], Plain(shared=shared[1], other=draw(_values)),
                     deque(shared), tuple(shared))[way])
    return root


def _same_writing(value: Any) -> None:
    expected = reference_encode(value, CLASSES, EXTERNALS)
    assert encode(value, CLASSES, EXTERNALS) == expected
    # The snapshot's bytes (NaN written as a tagged string, so `==` above is exact).
    assert encode_json(value, CLASSES, EXTERNALS) == msgspec.json.encode(expected)


@given(_graphs())
@settings(max_examples=200)
def test_the_encoder_writes_what_the_reference_writes(value: Any) -> None:
    _same_writing(value)


def test_what_it_refuses_the_reference_refuses_and_shared_stays_shared() -> None:
    class Unlisted:
        pass

    for bad in ([1, Unlisted()], {"at": datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=1)))},
                np.array([Unlisted()], dtype=object)):
        with pytest.raises(StateCodecError):
            encode(bad, CLASSES, EXTERNALS)
        with pytest.raises(StateCodecError):
            reference_encode(bad, CLASSES, EXTERNALS)
    entry = [1, 2.5]
    state = {"a": deque([entry, entry]), "b": Plain(e=entry), "nan": np.array([np.nan, 1.0])}
    _same_writing(state)
    back = decode(encode(state, CLASSES, EXTERNALS), CLASSES, {"live": LIVE})
    assert back["a"][0] is back["a"][1] is back["b"].e
    assert np.isnan(back["nan"][0]) and back["nan"][1] == 1.0
