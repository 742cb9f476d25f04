"""Contract checks beyond the schema, each naming the field at fault."""

from __future__ import annotations

from typing import Any

import pytest
from tests import documents as d
from tests.documents import mutated

from wayang_operator.api.descriptor import PluginDescriptor
from wayang_operator.core.contract import check


def problems(**changes: Any) -> dict[str, str]:
    document = d.descriptor()
    for path, value in changes.items():
        document = mutated(document, path.replace("__", "."), value)
    return {p.path: p.message for p in check(PluginDescriptor.model_validate(document))}


def test_a_valid_descriptor_has_no_problems() -> None:
    assert problems() == {}


def test_port_names_are_unique_across_inputs_and_outputs() -> None:
    found = problems(inputs=[{"name": "error", "schema": {}}])
    assert "port name 'error' is used twice" in found["spec.inputs/outputs"]


def test_port_schemas_must_be_json_schemas() -> None:
    found = problems(inputs=[{"name": "x", "schema": {"type": "nonsense"}}])
    assert "not a valid JSON Schema" in found["spec.inputs[0].schema"]


@pytest.mark.parametrize(
    ("prop", "message"),
    [
        ({"name": "n", "type": "integer", "default": "5"}, "not of type integer"),
        ({"name": "n", "type": "integer", "default": True}, "not of type integer"),
        (
            {"name": "n", "type": "integer", "default": 0, "validation": {"min": 1}},
            "below the minimum 1",
        ),
        (
            {"name": "n", "type": "number", "default": 11.5, "validation": {"max": 10}},
            "above the maximum 10",
        ),
        (
            {
                "name": "s",
                "type": "string",
                "default": "ftp://x",
                "validation": {"pattern": "^https://"},
            },
            "does not match",
        ),
        (
            {"name": "s", "type": "string", "default": "x", "validation": {"pattern": "("}},
            "not a regular expression",
        ),
        (
            {"name": "s", "type": "string", "default": "c", "validation": {"enum": ["a", "b"]}},
            "not one of",
        ),
    ],
)
def test_property_defaults_satisfy_their_validation(prop: dict[str, Any], message: str) -> None:
    found = problems(properties=[prop])
    assert message in found["spec.properties[0].default"]


def test_configuration_matches_the_declared_properties() -> None:
    props = [
        {"name": "limit", "type": "integer", "validation": {"max": 10}},
        {"name": "issuer", "type": "string", "required": True},
    ]
    found = problems(properties=props, configuration={"limit": 11, "unknown": 1})
    assert "above the maximum" in found["spec.configuration.limit"]
    assert "no property of this name" in found["spec.configuration.unknown"]
    assert "required property has no value" in found["spec.configuration.issuer"]
    assert problems(properties=props, configuration={"limit": 3, "issuer": "https://a"}) == {}


def test_duplicate_properties() -> None:
    found = problems(properties=[{"name": "a", "type": "string"}, {"name": "a", "type": "integer"}])
    assert "declared twice" in found["spec.properties"]
