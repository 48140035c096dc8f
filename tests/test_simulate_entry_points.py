"""Every command that simulates a stream for the service ends it before today.

`surveillance simulate`, `surveillance demo` and `surveillance dicom simulate` simulated
from the fixed 2026-07-01: with `--days` past today (about 150 on 2026-12-01) the worker
dead-lettered the latest events as "in the future" (rightly), and the demo showed them
as lost. Each now starts at `simulate.stream_start` (`past_start` without `--start`).
"Today" is injected (`utc_today`) so that one simulated day is enough: on 2026-07-01
the old start put the whole stream after the service's clock.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from surveillance.cli import app
from surveillance.clinical.baselines import load_registry
from surveillance.demo import demo_stream
from surveillance.engine.config import EngineConfig
from surveillance.interop.dicom_files import read_dicom_files
from surveillance.simulate import ScenarioError, SimEvent, stream_start
from surveillance.simulate.output import read_jsonl
from surveillance.stream.ingest import Rejected
from surveillance.stream.topics import AI_RESULTS

#: The injected wall clock: midnight, the earliest moment of the day (the strictest).
TODAY = date(2026, 7, 1)
NOW = datetime.combine(TODAY, time.min, tzinfo=UTC)


@pytest.fixture(autouse=True)
def today(monkeypatch: pytest.MonkeyPatch) -> date:
    monkeypatch.setattr("surveillance.simulate.generator.utc_today", lambda: TODAY)
    return TODAY


def refused(topics_values: list[tuple[str, bytes]]) -> list[Rejected]:
    """What the worker's ingest refuses of these inputs on the injected clock."""
    ingest = EngineConfig.plain(4, snapshots=False).ingest
    out = []
    for topic, value in topics_values:
        taken = ingest.accept(topic, value, NOW, 4)
        if isinstance(taken, Rejected):
            out.append(taken)
    return out


def valid(events: list[SimEvent]) -> list[tuple[str, bytes]]:
    return [(e.topic, e.value) for e in events if e.valid]


def test_simulate_writes_a_stream_the_service_takes_whole(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    result = CliRunner().invoke(app, ["simulate", "--out", str(out), "--days", "1"])
    assert result.exit_code == 0, result.output
    events = read_jsonl(out)
    assert len(valid(events)) > 100
    assert refused(valid(events)) == []
    assert max(e.arrival for e in events) < NOW


def test_simulate_keeps_an_explicit_start(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    result = CliRunner().invoke(
        app, ["simulate", "--out", str(out), "--days", "2", "--start", "2026-03-05"])
    assert result.exit_code == 0, result.output
    days = {e.arrival.date() for e in read_jsonl(out)}
    assert min(days) == date(2026, 3, 5) and max(days) == date(2026, 3, 6)


def test_the_demo_stream_is_taken_whole() -> None:
    events, truth = demo_stream(1, 7, "all", None)
    assert refused(valid(events)) == []
    assert sum(t.cases for t in truth.values()) > 0


def test_dicom_simulate_writes_studies_the_service_takes(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["dicom", "simulate", "--out", str(tmp_path), "--days", "1", "--studies", "20"])
    assert result.exit_code == 0, result.output
    read = read_dicom_files(sorted(tmp_path.glob("*.dcm")), load_registry(), "site-a",
                            ZoneInfo("UTC"))
    assert read.problems == [] and len(read.results) >= 20
    values = [(AI_RESULTS, r.model_dump_json().encode()) for _, r in read.results]
    assert refused(values) == []


def test_a_start_whose_stream_reaches_past_today_is_refused() -> None:
    with pytest.raises(ScenarioError, match=r"runs to 2026-07-02, past today \(2026-07-01"):
        stream_start(2, date(2026, 7, 1))
    assert stream_start(2, date(2026, 6, 29)) == date(2026, 6, 29)  # ends yesterday
    assert stream_start(2, None) == date(2026, 6, 29)


def test_the_demo_refuses_a_future_start_in_one_line_before_starting_anything() -> None:
    # A real `surveillance demo` (its own clock): a stream in 2099 is always in the future.
    done = subprocess.run(
        [sys.executable, "-m", "surveillance.cli", "demo", "--days", "3",
         "--start", "2099-01-01"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith(
        "error: --start 2099-01-01 with --days 3 runs to 2099-01-03, past today"), lines
    assert "simulated" not in done.stdout
