"""The published JSON Schemas and the pydantic models accept exactly the same documents.

Documents are generated from each schema in `schemas/` (hypothesis-jsonschema); the model must
accept them, and its serialisation must still satisfy the schema. Then single mutations (a field
removed, replaced by a value of another type or shape, an unknown field added) must get the same
verdict from both. Patterns are evaluated with ECMA-262 semantics as JSON Schema specifies (`$`
means end of input, which Python's `re` bends to "before a final newline").
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from pydantic import BaseModel, ValidationError

from wayang_operator.api.audit import PluginAuditEvent
from wayang_operator.api.descriptor import PluginDescriptor
from wayang_operator.api.errors import ErrorPayload
from wayang_operator.api.resources import Plugin, PluginApproval, PluginPolicy, ScanReport
from wayang_operator.api.scan import ScanReport as ScanReportData

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"

MODELS: dict[str, type[BaseModel]] = {
    "PluginDescriptor.schema.json": PluginDescriptor,
    "ErrorPayload.schema.json": ErrorPayload,
    "PluginAuditEvent.schema.json": PluginAuditEvent,
    "ScanReport.schema.json": ScanReportData,
    "wayang.io/plugin_v1alpha1.json": Plugin,
    "wayang.io/pluginapproval_v1alpha1.json": PluginApproval,
    "wayang.io/pluginpolicy_v1alpha1.json": PluginPolicy,
    "wayang.io/scanreport_v1alpha1.json": ScanReport,
}


def _ecma_pattern(
    validator: Any, pattern: str, instance: Any, schema: dict[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    if isinstance(instance, str) and not re.search(pattern.replace("$", r"\Z"), instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


EcmaValidator: Any = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
    jsonschema.Draft202012Validator, {"pattern": _ecma_pattern}
)


def _load(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMAS / name).read_text())
    return schema


def _without_formats(node: Any) -> Any:
    """Formats are annotations here (patterns carry the constraint); the generator need not try."""
    if isinstance(node, dict):
        return {key: _without_formats(value) for key, value in node.items() if key != "format"}
    if isinstance(node, list):
        return [_without_formats(item) for item in node]
    return node


def model_accepts(model: type[BaseModel], document: Any) -> bool:
    try:
        model.model_validate(document, by_alias=True, by_name=False)
    except ValidationError:
        return False
    return True


def schema_accepts(validator: Any, document: Any) -> bool:
    return bool(validator.is_valid(document))


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


ODD_VALUES = st.sampled_from(
    [
        None,
        True,
        False,
        0,
        -1,
        7,
        2.0,
        2.5,
        "",
        "x",
        "1.0",
        "NONE",
        "sha256:",
        [],
        {},
        ["x"],
        {"a": 1},
    ]
)


@st.composite
def mutation(draw: st.DrawFn, document: Any) -> Any:
    mutated = copy.deepcopy(document)
    paths = list(_paths(mutated))
    path = draw(st.sampled_from(paths))
    parent: Any = mutated
    for step in path[:-1]:
        parent = parent[step]
    action = draw(st.sampled_from(["replace", "delete", "add"]))
    if not path:
        return draw(ODD_VALUES) if action == "replace" else mutated
    last = path[-1]
    if action == "delete" and isinstance(parent, dict):
        del parent[last]
    elif action == "add" and isinstance(parent[last], dict):
        parent[last][draw(st.sampled_from(["unknownField", "status", "Name", "x-extra"]))] = "v"
    else:
        parent[last] = draw(ODD_VALUES)
    return mutated


SLOW = settings(
    max_examples=40,
    deadline=None,
    # Shrinking through hypothesis-jsonschema takes many minutes; a failure prints the whole
    # (unshrunk) document, which is enough to see the disagreement.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_documents_generated_from_the_schema_are_accepted_by_the_model(name: str) -> None:
    schema = _load(name)
    validator = EcmaValidator(schema)
    model = MODELS[name]

    @SLOW
    @given(from_schema(_without_formats(schema)))
    def check(document: Any) -> None:
        if not schema_accepts(validator, document):
            return  # generated under Python's `$`; the ECMA reading refuses it, as would the model
        assert model_accepts(model, document), document
        dumped = model.model_validate(document, by_alias=True).model_dump(
            mode="json", exclude_none=True
        )
        assert schema_accepts(validator, dumped), dumped

    check()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_mutated_documents_get_the_same_verdict(name: str) -> None:
    schema = _load(name)
    validator = EcmaValidator(schema)
    model = MODELS[name]

    @SLOW
    @given(from_schema(_without_formats(schema)).flatmap(mutation))
    def check(document: Any) -> None:
        assert schema_accepts(validator, document) == model_accepts(model, document), document

    check()
