"""Faults the source systems inject: re-sent duplicates and invalid events.

Duplicates re-send a valid event verbatim (same key, bytes and event id) seconds to hours
later, as an at-least-once producer does after a timeout. Invalid events are made from a
valid one by one of six defects, mixed evenly:

- ``bad_json``: the bytes cut in half (no event id can be read);
- ``missing_field``: a required field removed (sometimes the event id itself);
- ``wrong_type``: a field of the wrong type (score "high", findings "present", ...);
- ``oversize``: a report whose text makes the event larger than `MAX_EVENT_BYTES`
  (otherwise a valid model: only the size check rejects it);
- ``naive_timestamp``: the event time without a time zone;
- ``score_out_of_range``: an AI score outside [0, 1].

An invalid event carries a fresh event id (never one of a valid event) or none, and the
accession key of the event it was made from, so a pipeline that accepted it would corrupt
that case.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from surveillance.simulate.events import SimEvent

INVALID_KINDS = (
    "bad_json",
    "missing_field",
    "wrong_type",
    "oversize",
    "naive_timestamp",
    "score_out_of_range",
)

#: Duplicates follow their original after a lognormal delay: median 1 min, tail to hours.
_DUPLICATE_DELAY_MEDIAN_S = 60.0
_DUPLICATE_DELAY_SIGMA = 2.0
#: Invalid events are sent within an hour of the event they were made from.
_INVALID_DELAY_MAX_S = 3600.0

_REQUIRED = {
    "ai.results": ("event_id", "finding_code", "ai_result", "accession_number", "inference_date"),
    "reports.final": ("event_id", "accession_number", "finalized_at", "site"),
}
_TIME_FIELD = {"ai.results": "inference_date", "reports.final": "finalized_at"}
#: A character that takes 3 bytes in UTF-8: 30,000 of them (the contract allows 32,000
#: characters) make about 90 kB, over the 64 KiB `MAX_EVENT_BYTES`, in a valid model.
_WIDE_CHAR = "\u2014"


@dataclass(frozen=True)
class Faults:
    """Fault rates; the defaults give a clean stream (only the usual ~1% corrections)."""

    duplicate_rate: float = 0.0
    invalid_rate: float = 0.0
    correction_rate: float = 0.01
    structured_rate: float = 0.5

    def __post_init__(self) -> None:
        for name in ("duplicate_rate", "invalid_rate", "correction_rate", "structured_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"Faults.{name} must be within [0, 1], got {value}")


def new_event_id(rng: np.random.Generator) -> str:
    return str(uuid.UUID(bytes=rng.bytes(16), version=4))


def duplicates(
    rng: np.random.Generator, events: list[SimEvent], rate: float, end: datetime
) -> list[SimEvent]:
    """Verbatim re-sends of a `rate` fraction of the valid events that arrive before `end`."""
    valid = [e for e in events if e.valid]
    chosen = np.flatnonzero(rng.random(len(valid)) < rate)
    delays = rng.lognormal(np.log(_DUPLICATE_DELAY_MEDIAN_S), _DUPLICATE_DELAY_SIGMA, chosen.size)
    out: list[SimEvent] = []
    for index, delay in zip(chosen, delays, strict=True):
        original = valid[int(index)]
        arrival = original.arrival + timedelta(milliseconds=round(float(delay) * 1000))
        if arrival < end:
            out.append(
                SimEvent(original.topic, original.key, original.value, arrival, True,
                         original.event_id)
            )
    return out


def invalid_events(
    rng: np.random.Generator, events: list[SimEvent], rate: float, end: datetime
) -> list[SimEvent]:
    """About `rate` x (number of valid events) invalid events, each kind equally often."""
    valid = [e for e in events if e.valid]
    ai = [e for e in valid if e.topic == "ai.results"]
    reports = [e for e in valid if e.topic == "reports.final"]
    count = int(rng.binomial(len(valid), rate)) if valid else 0
    out: list[SimEvent] = []
    for _ in range(count):
        kind = INVALID_KINDS[int(rng.integers(len(INVALID_KINDS)))]
        pool = ai if kind == "score_out_of_range" else reports if kind == "oversize" else valid
        if not pool:
            continue
        template = pool[int(rng.integers(len(pool)))]
        delay = timedelta(milliseconds=round(float(rng.uniform(0, _INVALID_DELAY_MAX_S)) * 1000))
        arrival = min(template.arrival + delay, end - timedelta(milliseconds=1))
        value, event_id = _corrupt(rng, kind, template)
        out.append(SimEvent(template.topic, template.key, value, arrival, False, event_id))
    return out


def _corrupt(rng: np.random.Generator, kind: str, template: SimEvent) -> tuple[bytes, str | None]:
    if kind == "bad_json":
        return template.value[: len(template.value) // 2], None
    body: dict[str, Any] = json.loads(template.value)
    event_id: str | None = new_event_id(rng)
    body["event_id"] = event_id
    topic = template.topic
    if kind == "missing_field":
        required = _REQUIRED[topic]
        missing = required[int(rng.integers(len(required)))]
        del body[missing]
        if missing == "event_id":
            event_id = None
    elif kind == "wrong_type":
        if topic == "ai.results":
            body["ai_result"] = "high"
        else:
            body["findings"] = "present"
    elif kind == "oversize":
        body["report_text"] = _WIDE_CHAR * 30_000
    elif kind == "naive_timestamp":
        body[_TIME_FIELD[topic]] = body[_TIME_FIELD[topic]].replace("Z", "")[:19]
    elif kind == "score_out_of_range":
        body["ai_result"] = round(float(rng.choice([-1.0, 1.0]) * rng.uniform(1.01, 2.0)), 4)
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(), event_id
