"""Simulated streams on disk: one JSON object per line, replayable byte for byte.

Each line: ``{"topic", "key", "value_b64", "arrival", "valid", "event_id"}``. The value is
base64 because invalid events are not always valid UTF-8 or JSON.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path

from surveillance.simulate.events import SimEvent, ToolTruth
from surveillance.simulate.generator import simulate, stream_start
from surveillance.simulate.scenario import ScenarioError, scenario_by_name


def write_jsonl(events: Iterable[SimEvent], path: Path) -> int:
    """Write `events` to `path` (replacing it); returns the number written."""
    count = 0
    try:
        with path.open("w", encoding="utf-8") as fh:
            for event in events:
                fh.write(json.dumps({
                    "topic": event.topic,
                    "key": base64.b64encode(event.key).decode(),
                    "value_b64": base64.b64encode(event.value).decode(),
                    "arrival": event.arrival.isoformat(),
                    "valid": event.valid,
                    "event_id": event.event_id,
                }, separators=(",", ":")) + "\n")
                count += 1
    except OSError as exc:
        raise ScenarioError(f"cannot write simulated events to {path}: {exc.strerror}") from exc
    return count


def read_jsonl(path: Path) -> list[SimEvent]:
    """The events `write_jsonl` wrote, in the same order."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ScenarioError(f"cannot read simulated events from {path}: {exc.strerror}") from exc
    events = []
    for number, line in enumerate(lines, start=1):
        try:
            row = json.loads(line)
            events.append(SimEvent(
                topic=row["topic"],
                key=base64.b64decode(row["key"]),
                value=base64.b64decode(row["value_b64"]),
                arrival=datetime.fromisoformat(row["arrival"]),
                valid=bool(row["valid"]),
                event_id=row["event_id"],
            ))
        except (ValueError, KeyError, TypeError) as exc:
            raise ScenarioError(
                f"{path}:{number} is not a simulated event line ({exc}); regenerate the file"
            ) from exc
    return events


def run_simulate(out: Path, days: int, seed: int, scenario_name: str,
                 start: date | None = None) -> dict[str, ToolTruth]:
    """Simulate the named scenario from `start` (`stream_start`: by default one that ends
    before today) and write its events to `out`; returns the ground truth."""
    events, truth = simulate(days=days, seed=seed, scenario=scenario_by_name(scenario_name),
                             start=stream_start(days, start))
    write_jsonl(events, out)
    return truth
