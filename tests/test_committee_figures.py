"""`surveillance committee`: the committee's figures from a stream file, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from surveillance.simulate import Scenario, simulate, write_jsonl
from surveillance.simulate.quantification import BiasDrift, simulate_quantification


def test_committee_figures_from_a_stream_with_an_outage_and_a_quantification_tool(
    tmp_path: Path,
) -> None:
    events, _ = simulate(days=26, scenario=Scenario(outage_day=12, outage_site="site-b"),
                         tools=["ich-triage", "ptx-triage"])
    volume = simulate_quantification(days=26, drift=BiasDrift(10, 4.0))
    path = tmp_path / "events.jsonl"
    write_jsonl(sorted(events + volume, key=lambda e: e.arrival), path)
    result = subprocess.run([sys.executable, "-m", "surveillance.cli", "committee", "--events",
                             str(path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)["tools"]
    below = {(c["site"], c["week_start"]) for c in figures["ich-triage"]["coverage"]
             if c["below_floor"]}
    assert below == {("site-b", "2026-07-13")}
    assert not any(c["below_floor"] for c in figures["ptx-triage"]["coverage"])
    value = figures["ich-triage"]["value"]
    assert value["cost_per_study"] > 0 and value["cost_per_true_positive"] > value[
        "cost_per_study"]
    burden = {b["site"]: b for b in figures["ptx-triage"]["alert_burden"]}
    assert set(burden) == {"site-a", "site-b", "site-c"}
    assert all(b["prevalence"] is not None and 0 < b["ppv"] < 1 for b in burden.values())
    quant = figures["ich-volume"]["quantification"]
    assert quant["bias_signals"] and quant["bias_signals"][0]["direction"] == "up"
    assert quant["overall"]["bland_altman"]["n"] > 200


def test_a_bad_events_file_is_one_clear_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("not json\n")
    result = subprocess.run([sys.executable, "-m", "surveillance.cli", "committee", "--events",
                             str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "is not a simulated event line" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


@pytest.mark.integration
def test_store_option_upserts_the_figures_once(tmp_path: Path, fresh_database: str) -> None:
    from surveillance.store.migrate import migrate

    migrate(fresh_database)
    events, _ = simulate(days=15, tools=["ptx-triage"])
    path = tmp_path / "events.jsonl"
    write_jsonl(events, path)
    env = {**os.environ, "SURVEILLANCE_DATABASE__URL": fresh_database}
    command = [sys.executable, "-m", "surveillance.cli", "committee", "--events", str(path),
               "--store"]
    for _ in range(2):
        result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
        assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)["tools"]["ptx-triage"]
    written = int(result.stderr.split("stored ")[1].split()[0])
    with psycopg.connect(fresh_database) as conn:
        rows = conn.execute("SELECT figure, site, series, value FROM committee_series "
                            "WHERE tool_id = 'ptx-triage'").fetchall()
    assert len(rows) == written > 20
    per_day = {site: value for figure, site, _, value in rows if figure == "flags_per_day"}
    assert per_day == {b["site"]: b["flags_per_day"] for b in figures["alert_burden"]}


@pytest.mark.integration
def test_store_option_on_an_unmigrated_store_is_one_clear_line(
    tmp_path: Path, fresh_database: str
) -> None:
    events, _ = simulate(days=3, tools=["ptx-triage"])
    path = tmp_path / "events.jsonl"
    write_jsonl(events, path)
    env = {**os.environ, "SURVEILLANCE_DATABASE__URL": fresh_database}
    result = subprocess.run([sys.executable, "-m", "surveillance.cli", "committee", "--events",
                             str(path), "--store"], capture_output=True, text=True, timeout=300,
                            env=env)
    assert result.returncode == 2
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "surveillance db migrate" in error[0], result.stderr
    assert "Traceback" not in result.stderr
