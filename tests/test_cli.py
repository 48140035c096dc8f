"""The command line as an operator meets it: one clear line on errors, exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "surveillance.cli", *args],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, **(env or {})},
    )


def error_lines(stderr: str) -> list[str]:
    """The suite runs with the demo pseudonym key, which adds one "warning:" line."""
    return [x for x in stderr.strip().splitlines() if not x.startswith("warning:")]


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (("worker",), {"SURVEILLANCE_KAFKA__BOOTSTRAP": "127.0.0.1:9"},
         "no Kafka broker answers at 127.0.0.1:9"),
        (("topics", "create"), {"SURVEILLANCE_KAFKA__PARTITIONS": "many"},
         "bad setting SURVEILLANCE_KAFKA__PARTITIONS"),
        (("validate", "--tool", "ich-triage", "--version", "1"), {"SURVEILLANCE_DATABASE__URL": ""},
         "no database configured"),
        (("simulate", "--out", "/tmp/x.jsonl", "--scenario", "nonsense"), None, "nonsense"),
    ],
)
def test_user_errors_are_one_line_without_traceback(
    args: tuple[str, ...], env: dict[str, str] | None, message: str
) -> None:
    result = run(*args, env=env)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(error_lines(result.stderr)) == 1, result.stderr


def test_schemas_export_writes_one_file_per_topic(tmp_path: Path) -> None:
    result = run("schemas", "export", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    files = sorted(p.name for p in tmp_path.iterdir())
    assert "ai.results.schema.json" in files and len(files) == 8
    schema = json.loads((tmp_path / "reports.final.schema.json").read_text())
    assert schema["title"] == "ReportFinal"


def test_simulate_writes_a_reproducible_stream(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for out in (a, b):
        assert run("simulate", "--out", str(out), "--days", "3", "--seed", "5").returncode == 0
    assert a.read_bytes() == b.read_bytes() and a.stat().st_size > 0


@pytest.mark.integration
def test_worker_refuses_topics_whose_partition_counts_break_the_join(tmp_path: Path) -> None:
    """The join is co-partitioned (input topics, cases.join, tables): a topic with another
    partition count is one clear line at start-up, not a crash loop at the first event."""
    from surveillance.embedded import EmbeddedBroker
    from surveillance.stream.topics import TopicSpec, all_topics, create_topics

    with EmbeddedBroker(log_dir=tmp_path) as broker:
        specs = [
            TopicSpec(s.name, 2) if s.name == "ai.results" else s
            for s in all_topics("surveillance", 4)
        ]
        create_topics(broker.bootstrap, specs)
        result = run("worker", env={
            "SURVEILLANCE_KAFKA__BOOTSTRAP": broker.bootstrap,
            "SURVEILLANCE_KAFKA__PARTITIONS": "4",
            "SURVEILLANCE_STATE_DIR": str(tmp_path / "state"),
        })
    assert result.returncode == 2, result.stderr
    assert "ai.results has 2" in result.stderr
    assert "SURVEILLANCE_KAFKA__PARTITIONS=4" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(error_lines(result.stderr)) == 1, result.stderr
