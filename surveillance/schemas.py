"""JSON Schema files of the topics, generated from the contracts (`surveillance schemas export`)."""

from __future__ import annotations

import json
from pathlib import Path

from surveillance.contracts import TOPIC_MODELS


def schema_documents() -> dict[str, str]:
    """File name -> canonical JSON text, one per topic."""
    docs = {}
    for topic, model in TOPIC_MODELS.items():
        schema = model.model_json_schema()
        schema["$id"] = f"urn:imaging-ai-surveillance:topic:{topic}"
        schema["description"] = (schema.get("description") or "").strip()
        docs[f"{topic}.schema.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return docs


def write_schemas(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in schema_documents().items():
        path = out / name
        path.write_text(text)
        written.append(path)
    return written
