"""One stored AI result per event id: replays are absorbed, conflicts are dead-lettered.

A TimescaleDB hypertable cannot hold a unique key without its time column, so
`ai_results` alone would store an event id twice if it came back with an inference date
one second off. The `ai_event_ids` table holds each id once with the inference date and a
digest of the AI-result row first stored for it. A later message with the same id is
- a replay when its inference date and digest match (rows stored before digests existed
  have none; their inference date decides): it changes nothing;
- a conflict otherwise: the message is dead-lettered (`store_rejects`, reason naming the
  field, never the values) and none of its rows is written.

Pure: `digest` and `split_conflicts` do no I/O; store/batch.py reads the stored keys.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from surveillance.store.rows import Reject, Row


@dataclass(frozen=True)
class AiKey:
    """Where an AI-result row came from, and what identifies its content."""

    topic: str
    partition: int
    offset: int
    ai_event_id: str
    inference_date: datetime
    digest: str


@dataclass(frozen=True)
class StoredKey:
    inference_date: datetime
    digest: str | None


def _plain(value: Any) -> Any:
    # The same instant written with another UTC offset is the same content.
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def digest(row: Row) -> str:
    """sha256 of an AI-result row (store/rows.AI_RESULT_COLUMNS order)."""
    text = json.dumps([_plain(v) for v in row], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _conflict_reason(key: AiKey, kept: StoredKey) -> str | None:
    if kept.inference_date != key.inference_date:
        return "ai_event_id already stored with another inference_date: conflict, not stored"
    if kept.digest is not None and kept.digest != key.digest:
        return "ai_event_id already stored with other AI-result content: conflict, not stored"
    return None


def split_conflicts(
    keys: Iterable[AiKey], stored: Mapping[str, StoredKey]
) -> tuple[set[int], list[Reject]]:
    """Indexes of `keys` that conflict with a stored id or an earlier key, and their rejects.

    The first occurrence of an id (stored, else the earliest in `keys`) is the one kept.
    """
    kept = dict(stored)
    dropped: set[int] = set()
    rejects: list[Reject] = []
    for i, key in enumerate(keys):
        first = kept.setdefault(key.ai_event_id, StoredKey(key.inference_date, key.digest))
        reason = _conflict_reason(key, first)
        if reason is not None:
            dropped.add(i)
            rejects.append(Reject(key.topic, key.partition, key.offset, reason))
    return dropped, rejects
