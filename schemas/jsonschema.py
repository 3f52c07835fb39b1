"""Generates the JSON Schemas handed to platform teams: one per event type, the finding, the
case and the analysts' feedback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from pydantic import TypeAdapter

from schemas.case import Case, Feedback
from schemas.events import EVENT_MODELS
from schemas.finding import Finding

__all__ = ["JSON_DIR", "generate", "render", "write"]

JSON_DIR = Path(__file__).parent / "json"
_BASE_ID = "https://daylight.invalid/schemas/v1"


def generate() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema document, for every event type and the finding."""
    documents: dict[str, dict[str, Any]] = {}
    for event_type, model in sorted(EVENT_MODELS.items()):
        schema = model.model_json_schema(mode="validation")
        # Models shared by several types (login/logout...) get the `type` pinned per file.
        schema["properties"]["type"] = {"const": event_type, "title": "Type", "type": "string"}
        schema["title"] = event_type
        documents[f"{event_type}.json"] = _document(event_type, schema)
    documents["finding.json"] = _document(
        "finding", Finding.model_json_schema(mode="serialization")
    )
    documents["case.json"] = _document("case", Case.model_json_schema(mode="serialization"))
    documents["feedback.json"] = _document(
        "feedback", TypeAdapter(Feedback).json_schema(mode="validation")
    )
    return documents


def _document(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{_BASE_ID}/{name}.json",
        **schema,
    }


def render(document: dict[str, Any]) -> bytes:
    return orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def write(directory: Path = JSON_DIR) -> list[Path]:
    """Write every schema file, removing stale ones; return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    documents = generate()
    for stale in directory.glob("*.json"):
        if stale.name not in documents:
            stale.unlink()
    written = []
    for name, document in documents.items():
        path = directory / name
        path.write_bytes(render(document))
        written.append(path)
    return written
