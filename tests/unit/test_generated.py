"""The committed crds/ and schemas/ are exactly what the models generate, and are well formed.

Structural rules checked here are the ones the API server enforces when a CRD is created (the
e2e tier also installs the CRDs into a real kube-apiserver); checking them here catches a model
change that would produce an invalid CRD before anyone runs a cluster.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from wayang_operator.api.resources import RESOURCES
from wayang_operator.schemagen.render import render_all

ROOT = Path(__file__).resolve().parents[2]
GENERATED = render_all()


def test_committed_files_match_fresh_output() -> None:
    stale = [
        path
        for path, text in GENERATED.items()
        if not (ROOT / path).exists() or (ROOT / path).read_text() != text
    ]
    assert not stale, f"run `make manifests` and commit: {stale}"


def test_no_stray_files_in_generated_folders() -> None:
    on_disk = {
        str(path.relative_to(ROOT))
        for folder in ("crds", "schemas")
        for path in (ROOT / folder).rglob("*")
        if path.is_file()
    }
    assert on_disk == set(GENERATED), "crds/ and schemas/ hold only generated files"


def crds() -> dict[str, dict[str, Any]]:
    return {
        path: yaml.safe_load(text) for path, text in GENERATED.items() if path.startswith("crds/")
    }


# Keywords a CRD's structural schema may use (apiextensions.k8s.io/v1 JSONSchemaProps).
CRD_KEYWORDS = {
    "type", "description", "properties", "items", "required", "enum", "default", "pattern",
    "minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems", "format",
    "additionalProperties", "nullable", "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-validations", "x-kubernetes-list-type", "x-kubernetes-list-map-keys",
    "x-kubernetes-int-or-string", "x-kubernetes-map-type", "x-kubernetes-embedded-resource",
}  # fmt: skip


def schema_nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from schema_nodes(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from schema_nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from schema_nodes(node["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("path", sorted(crds()))
def test_crd_schema_is_structural(path: str) -> None:
    crd = crds()[path]
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for where, node in schema_nodes(schema):
        assert set(node) <= CRD_KEYWORDS, f"{where}: {set(node) - CRD_KEYWORDS}"
        typed = "type" in node or node.get("x-kubernetes-preserve-unknown-fields")
        assert typed, f"{where}: every node needs a type"
        assert not ("properties" in node and "additionalProperties" in node), where
        for rule in node.get("x-kubernetes-validations", []):
            assert set(rule) <= {"rule", "message", "fieldPath", "reason", "messageExpression"}
        if node.get("type") == "string" and node.get("x-kubernetes-validations"):
            assert "maxLength" in node, f"{where}: CEL over an unbounded string is too costly"
        if node.get("type") == "array":
            assert "maxItems" in node, f"{where}: lists are bounded"


def rules(crd: dict[str, Any]) -> dict[str, list[str]]:
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return {
        where: [rule["rule"] for rule in node["x-kubernetes-validations"]]
        for where, node in schema_nodes(schema)
        if "x-kubernetes-validations" in node
    }


def test_crds_carry_the_required_cel_rules() -> None:
    plugin = rules(crds()["crds/wayang.io_plugins.yaml"])
    approval = rules(crds()["crds/wayang.io_pluginapprovals.yaml"])
    assert "self == oldSelf" in approval[".spec"]
    assert any("sha256:" in rule and "container" in rule for rule in plugin[".spec.implementation"])
    assert any("'@'" in rule for rule in plugin[".spec.implementation"])
    assert plugin[".spec.outputs"] == ["has(self.success) && has(self.error)"]
    assert any(rule.startswith("self.matches(r'^(0|[1-9]") for rule in plugin[".spec.version"])
    assert any(rule.startswith("self.matches(r'^(0|[1-9]") for rule in approval[".spec.version"])


def test_crds_present_well_in_kubectl() -> None:
    by_kind = {crd["spec"]["names"]["kind"]: crd for crd in crds().values()}
    assert set(by_kind) == {info.kind for info in RESOURCES}
    for crd in by_kind.values():
        names = crd["spec"]["names"]
        assert names["categories"] == ["wayang"]
        assert names["shortNames"]
        version = crd["spec"]["versions"][0]
        assert version["subresources"] == {"status": {}}
    columns = [
        c["name"] for c in by_kind["Plugin"]["spec"]["versions"][0]["additionalPrinterColumns"]
    ]
    for wanted in ("Version", "Sandbox", "Phase", "Approved", "Ready", "Age"):
        assert wanted in columns
    assert by_kind["PluginPolicy"]["spec"]["scope"] == "Cluster"
    assert by_kind["Plugin"]["spec"]["scope"] == "Namespaced"


def test_crd_defaults_match_the_seed() -> None:
    schema = crds()["crds/wayang.io_plugins.yaml"]["spec"]["versions"][0]["schema"][
        "openAPIV3Schema"
    ]
    spec = schema["properties"]["spec"]["properties"]
    assert spec["sandboxLevel"]["default"] == "semi-trusted"
    assert spec["resourceProfile"]["properties"]["timeout"]["default"] == 30000
    assert "digest" in spec["implementation"]["required"]


JSON_SCHEMA_KEYWORDS = {
    "$schema", "$id", "$defs", "$ref", "title", "description", "type", "properties", "items",
    "required", "enum", "const", "default", "pattern", "minimum", "maximum", "minLength",
    "maxLength", "minItems", "maxItems", "uniqueItems", "format", "additionalProperties",
    "anyOf", "allOf", "if", "then",
}  # fmt: skip


def json_nodes(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for key, value in node.items():
            if key in ("properties", "$defs"):
                for child in value.values():
                    yield from json_nodes(child)
            elif key not in ("default", "const", "enum"):
                yield from json_nodes(value)
    elif isinstance(node, list):
        for item in node:
            yield from json_nodes(item)


@pytest.mark.parametrize("path", sorted(p for p in GENERATED if p.startswith("schemas/")))
def test_json_schemas_are_valid_draft_2020_12(path: str) -> None:
    schema = json.loads(GENERATED[path])
    jsonschema.Draft202012Validator.check_schema(schema)
    for node in json_nodes(schema):
        assert set(node) <= JSON_SCHEMA_KEYWORDS, set(node) - JSON_SCHEMA_KEYWORDS
    assert schema["$id"].endswith(path.removeprefix("schemas/"))
