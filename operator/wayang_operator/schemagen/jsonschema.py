"""JSON Schema (draft 2020-12) for each API model, in the exact form written to `schemas/`.

Pydantic's generator is tuned in two ways: `None` defaults are not written (omission is how a
manifest says "unset"), and auto-generated titles are dropped because they only repeat the field
name. Optional fields keep their `null` branch: the API server treats an explicit null as absent,
and so do the models.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_BASE_URI = "https://wayang.io/schemas/"


class _WayangJsonSchema(GenerateJsonSchema):
    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        if schema.get("default", ...) is None:
            return self.generate_inner(schema["schema"])
        return super().default_schema(schema)

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def _tidy(node: Any, keep_title: bool) -> Any:
    """Drop generated titles and fold docstring line breaks out of descriptions."""
    if isinstance(node, dict):
        tidy: dict[str, Any] = {}
        for key, value in node.items():
            if key == "title" and isinstance(value, str) and not keep_title:
                continue
            if key == "description" and isinstance(value, str):
                tidy[key] = " ".join(value.split())
            else:
                tidy[key] = _tidy(value, keep_title=False)
        return tidy
    if isinstance(node, list):
        return [_tidy(item, keep_title=False) for item in node]
    return node


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's validation schema with `$defs`, still carrying `x-kubernetes-*` keywords."""
    raw = model.model_json_schema(
        by_alias=True, mode="validation", schema_generator=_WayangJsonSchema
    )
    schema: dict[str, Any] = _tidy(raw, keep_title=True)
    return schema


def _without_kubernetes_keywords(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: _without_kubernetes_keywords(value)
            for key, value in node.items()
            if not key.startswith("x-kubernetes-")
        }
    if isinstance(node, list):
        return [_without_kubernetes_keywords(item) for item in node]
    return node


def published_schema(model: type[BaseModel], file_name: str) -> dict[str, Any]:
    """The standalone JSON Schema document for `schemas/<file_name>`."""
    body = _without_kubernetes_keywords(model_schema(model))
    return {"$schema": DIALECT, "$id": SCHEMA_BASE_URI + file_name, **body}
