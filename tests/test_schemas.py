"""The JSON Schema files under schemas/ must equal what the contracts generate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from surveillance.contracts import TOPIC_MODELS, AIResult
from surveillance.schemas import schema_documents

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
