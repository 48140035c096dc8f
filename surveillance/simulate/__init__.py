"""Realistic synthetic streams of AI results and reports, with injected drift and faults.

`simulate()` returns the events in arrival order and, per tool, the ground truth a correct
pipeline must count; `run_simulate()` writes a named scenario to a JSON-lines file.
"""

from surveillance.simulate.events import OUTCOME_KEYS, SimEvent, ToolTruth
from surveillance.simulate.faults import INVALID_KINDS, Faults
from surveillance.simulate.generator import past_start, simulate, stream_start
from surveillance.simulate.output import run_simulate, write_jsonl
from surveillance.simulate.scenario import (
    NAMED_SCENARIOS,
    Scenario,
    ScenarioError,
    scenario_by_name,
)

__all__ = [
    "INVALID_KINDS",
    "NAMED_SCENARIOS",
    "OUTCOME_KEYS",
    "Faults",
    "Scenario",
    "ScenarioError",
    "SimEvent",
    "ToolTruth",
    "past_start",
    "run_simulate",
    "scenario_by_name",
    "simulate",
    "stream_start",
    "write_jsonl",
]
