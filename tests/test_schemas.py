"""The JSON Schema files under schemas/ must equal what the contracts generate."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import jsonschema_rs
import pytest

from surveillance.contracts import TOPIC_MODELS, AIResult
from surveillance.engine.config import EngineConfig
from surveillance.engine.local import LocalPipeline
from surveillance.engine.records import Output, Record
from surveillance.schemas import schema_documents
from surveillance.simulate import simulate
from surveillance.stream import topics

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


def test_one_schema_file_per_topic_and_no_strays() -> None:
    expected = {f"{t}.schema.json" for t in TOPIC_MODELS}
    assert {p.name for p in SCHEMAS.glob("*.schema.json")} == expected


@pytest.mark.parametrize("name", sorted(schema_documents()))
def test_schema_file_matches_the_model(name: str) -> None:
    on_disk = (SCHEMAS / name).read_text()
    assert on_disk == schema_documents()[name], (
        f"schemas/{name} is out of date: run `surveillance schemas export`"
    )


def test_schema_carries_the_constraints_that_matter() -> None:
    schema = json.loads((SCHEMAS / "ai.results.schema.json").read_text())
    assert schema["properties"]["ai_result"]["maximum"] == 1.0
    assert schema["properties"]["ai_result"]["minimum"] == 0.0
    assert schema["properties"]["inference_date"]["format"] == "date-time"
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) >= {"event_id", "tool_id", "accession_number", "ai_result"}
    assert AIResult.model_json_schema()["title"] == schema["title"]


def test_every_record_the_engine_produces_is_valid_for_its_topics_schema_file() -> None:
    """What a consumer validating a topic against `schemas/` sees: three weeks of simulated
    traffic through the worker's engine, every record it produces on a topic with a schema
    checked against that file (a JSON Schema validator, not our models) and the model."""
    produced: dict[str, list[bytes]] = {}
    pipeline = LocalPipeline(EngineConfig.plain(4))
    process = pipeline.engine.process

    def keep(records: list[Record], now: datetime, mono: float) -> Output:
        out = process(records, now, mono)
        for p in out.produce:
            produced.setdefault(p.topic, []).append(p.value)
        return out

    pipeline.engine.process = keep  # type: ignore[method-assign]
    for event in simulate(days=21, seed=5)[0]:
        pipeline.feed(event)
    checked = {t: v for t, v in produced.items() if t in TOPIC_MODELS}
    # The cases and the snapshots (one record per tool-day) at least.
    assert {topics.CASES_ADJUDICATED, topics.SNAPSHOTS} <= checked.keys()
    for topic, values in checked.items():
        validator = jsonschema_rs.validator_for(
            json.loads((SCHEMAS / f"{topic}.schema.json").read_text()))
        for value in values:
            errors = [e.message for e in validator.iter_errors(json.loads(value))]
            assert errors == [], f"{topic}: {errors[:3]}"
            TOPIC_MODELS[topic].model_validate_json(value)
