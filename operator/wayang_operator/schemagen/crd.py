"""CustomResourceDefinitions from the API models.

A CRD schema must be *structural* (every node typed, no `$ref`, no `if/then`, no
`additionalProperties: false` beside `properties`, no `uniqueItems`), so the JSON Schema of a model
is rewritten here into the Kubernetes dialect, keeping every constraint the API server can check:

- `$ref` is inlined; `const` becomes a one-value `enum`;
- `uniqueItems` becomes `x-kubernetes-list-type: set`;
- "any JSON value" and free-form objects become `x-kubernetes-preserve-unknown-fields`;
- "X or null" becomes X (the API server prunes a null it is not told to keep);
- cross-field rules that JSON Schema writes as `if/then` exist as CEL rules on the same model
  (`x-kubernetes-validations`), so the `if/then` form is dropped;
- a `pattern` that also has a CEL twin (see `api.base.PatternType.cel`) is dropped so `kubectl`
  shows one readable message instead of a regex.

Anything else that cannot be expressed raises, so a new model construct cannot silently weaken
the CRD.
"""

from __future__ import annotations

from typing import Any

from ..api.meta import GROUP, VERSION
from ..api.resources import CATEGORY, ResourceInfo
from .jsonschema import model_schema

_DROPPED = frozenset({"$schema", "$id", "title", "examples", "if", "then", "else"})


class UnsupportedSchemaError(ValueError):
    """A model uses a JSON Schema construct that has no structural CRD equivalent."""


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" not in node:
        return node
    name = node["$ref"].removeprefix("#/$defs/")
    siblings = {key: value for key, value in node.items() if key != "$ref"}
    return {**_resolve(defs[name], defs), **siblings}


def _cel_regexes(node: dict[str, Any]) -> set[str]:
    regexes = set()
    for rule in node.get("x-kubernetes-validations", []):
        expression = rule["rule"]
        if expression.startswith("self.matches(r'") and expression.endswith("')"):
            regexes.add(expression[len("self.matches(r'") : -2])
    return regexes


def _combinator(
    key: str, value: list[Any], node: dict[str, Any], defs: dict[str, Any], path: str
) -> dict[str, Any]:
    if key == "allOf":
        if any("if" not in part for part in value):
            raise UnsupportedSchemaError(f"{path}: allOf is only supported for if/then rules")
        return {}
    options = [option for option in value if option != {"type": "null"}]
    if len(options) == 1 and len(options) < len(value):
        # "X or null": the API server prunes nulls of non-nullable fields, so this is X
        return structural(options[0], defs, path)
    if not node.get("x-kubernetes-preserve-unknown-fields"):
        raise UnsupportedSchemaError(f"{path}: {key} needs x-kubernetes-preserve-unknown-fields")
    return {}


def _keyword(
    key: str, value: Any, node: dict[str, Any], defs: dict[str, Any], path: str
) -> dict[str, Any]:
    """The structural form of one keyword of `node` (possibly nothing, possibly several keys)."""
    if key in _DROPPED or key in ("$defs", "format"):
        # Every formatted string also has a pattern. The API server's format checkers differ in
        # detail from JSON Schema's, so CRDs rely on the pattern to refuse the same documents.
        return {}
    if key in ("allOf", "anyOf", "oneOf"):
        return _combinator(key, value, node, defs, path)
    if key == "const":
        return {"enum": [value]}
    if key == "uniqueItems":
        return {"x-kubernetes-list-type": "set"} if value else {}
    if key == "pattern":
        return {} if value in _cel_regexes(node) else {"pattern": value}
    if key == "properties":
        children = {
            name: structural(child, defs, f"{path}.{name}") for name, child in value.items()
        }
        return {"properties": children}
    if key == "items":
        return {"items": structural(value, defs, f"{path}[]")}
    if key == "additionalProperties":
        if isinstance(value, dict) and value:
            return {"additionalProperties": structural(value, defs, f"{path}{{}}")}
        # true/{} keeps unknown keys; false is what pruning of unknown fields already does
        return {"x-kubernetes-preserve-unknown-fields": True} if value in (True, {}) else {}
    return {key: value}


def structural(node: dict[str, Any], defs: dict[str, Any], path: str = "") -> dict[str, Any]:
    """Rewrite one JSON Schema node (of a pydantic model) as a structural CRD schema node."""
    node = _resolve(node, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        out.update(_keyword(key, value, node, defs, path))
    if "const" in node and "type" not in out:
        out["type"] = "string"
    if not out.get("type") and not out.get("x-kubernetes-preserve-unknown-fields"):
        if "enum" in out or "properties" in out or "items" in out:
            raise UnsupportedSchemaError(f"{path}: schema node has no type")
        out["x-kubernetes-preserve-unknown-fields"] = True
    if (
        out.get("type") == "object"
        and "properties" not in out
        and "additionalProperties" not in out
    ):
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def crd(info: ResourceInfo) -> dict[str, Any]:
    """The CustomResourceDefinition manifest for one resource."""
    schema = model_schema(info.model)
    defs = schema.get("$defs", {})
    properties = schema["properties"]
    open_api: dict[str, Any] = {
        "type": "object",
        "description": schema.get("description", ""),
        "properties": {
            "apiVersion": {"type": "string", "description": "wayang.io/v1alpha1"},
            "kind": {"type": "string", "description": info.kind},
            "metadata": {"type": "object"},
            "spec": structural(properties["spec"], defs, "spec"),
        },
        "required": ["spec"],
    }
    if "status" in properties:
        open_api["properties"]["status"] = structural(properties["status"], defs, "status")
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": info.crd_name},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": info.plural,
                "singular": info.singular,
                "shortNames": list(info.short_names),
                "categories": [CATEGORY],
            },
            "scope": "Namespaced" if info.namespaced else "Cluster",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [column.to_crd() for column in info.columns],
                    "schema": {"openAPIV3Schema": open_api},
                }
            ],
        },
    }
