"""A table as the engine sees it: the persisted state plus this batch's writes.

The backing mapping is whatever holds the state between batches (a Faust table in the
worker, a dict in tests and in the bulk runner); it holds JSON-ready dicts, the format of
the changelog topics (or, where the caller asks, the objects themselves: `encode` is then
the identity and `decode` takes either). Writes stay here, as objects, until the batch
ends: reads inside the batch see them, and each changed key is written out once
(`changes`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

from surveillance.engine.records import Change

V = TypeVar("V")
_DELETED = object()


class Table(Generic[V]):
    def __init__(
        self, name: str, backing: Mapping[str, Any],
        decode: Callable[[Any], V], encode: Callable[[V], Any],
    ) -> None:
        self.name = name
        self.backing = backing
        self._decode = decode
        self._encode = encode
        self._pending: dict[str, tuple[object, int]] = {}

    def get(self, key: str) -> V | None:
        pending = self._pending.get(key)
        if pending is not None:
            value = pending[0]
            return None if value is _DELETED else value  # type: ignore[return-value]
        stored = self.backing.get(key)
        return self._decode(stored) if stored else None

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def put(self, key: str, value: V, partition: int) -> None:
        self._pending[key] = (value, partition)

    def delete(self, key: str, partition: int) -> None:
        self._pending[key] = (_DELETED, partition)

    def stored(self, skip: Callable[[str], bool] | None = None) -> Iterable[tuple[str, V]]:
        """Every key and value, this batch's writes included (for rebuilds); but the keys
        `skip` names (records of another kind kept in the same changelog)."""
        for key, raw in list(self.backing.items()):
            if key not in self._pending and raw and not (skip is not None and skip(key)):
                yield key, self._decode(raw)
        for key, (value, _) in list(self._pending.items()):
            if value is not _DELETED and not (skip is not None and skip(key)):
                yield key, value  # type: ignore[misc]

    def changes(self) -> list[Change]:
        """This batch's writes, one per key, and forget them (they are persisted next)."""
        if not self._pending:
            return []
        out = [Change(self.name, key, None if value is _DELETED else self._encode(value),  # type: ignore[arg-type]
                      partition) for key, (value, partition) in self._pending.items()]
        self._pending.clear()
        return out
