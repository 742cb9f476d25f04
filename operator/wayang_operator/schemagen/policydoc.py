"""The field tables of docs/policy.md, generated from the PluginPolicy JSON Schema.

The schema (`schemas/wayang.io/pluginpolicy_v1alpha1.json`) is itself generated from the
pydantic models (`make manifests`), with each field's docstring as its description; so the
reference page says what the code does and cannot drift from it: a unit test regenerates the
tables and fails when the committed page differs.

    python -m wayang_operator.schemagen.policydoc docs/policy.md           # rewrite the tables
    python -m wayang_operator.schemagen.policydoc --check docs/policy.md   # exit 1 if stale

Only the text between the markers BEGIN and END is replaced; the examples around it are
written by hand.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
SCHEMA = ROOT / "schemas" / "wayang.io" / "pluginpolicy_v1alpha1.json"
BEGIN = "<!-- BEGIN GENERATED: python -m wayang_operator.schemagen.policydoc docs/policy.md -->"
END = "<!-- END GENERATED -->"

Schema = Mapping[str, Any]


@dataclass(frozen=True)
class Row:
    name: str
    type: str
    default: str
    description: str


@dataclass(frozen=True)
class Table:
    path: str
    """Where the object sits, e.g. `spec.scan`."""
    description: str
    rows: tuple[Row, ...]


def _definition(root: Schema, node: Schema) -> tuple[str | None, Schema]:
    """Follow a `$ref` into `$defs`: (definition name, definition), or (None, node)."""
    reference = node.get("$ref")
    if isinstance(reference, str) and reference.startswith("#/$defs/"):
        name = reference.removeprefix("#/$defs/")
        return name, root["$defs"][name]
    return None, node


def _without_null(node: Schema) -> Schema:
    """`anyOf: [X, {type: null}]` (an optional field) is X, with the outer keys kept."""
    options = node.get("anyOf")
    if isinstance(options, list):
        kept = [option for option in options if option.get("type") != "null"]
        if len(kept) == 1:
            merged = {k: v for k, v in node.items() if k != "anyOf"}
            return {**kept[0], **merged}
    return node


def _bounds(node: Schema) -> str:
    parts = []
    if "minimum" in node and "maximum" in node:
        parts.append(f"{node['minimum']} to {node['maximum']}")
    elif "minimum" in node:
        parts.append(f"≥ {node['minimum']}")
    elif "maximum" in node:
        parts.append(f"≤ {node['maximum']}")
    if "maxLength" in node:
        parts.append(f"up to {node['maxLength']} characters")
    if "maxItems" in node:
        parts.append(f"up to {node['maxItems']} items")
    if "pattern" in node:
        parts.append(f"pattern `{node['pattern']}`")
    return f" ({', '.join(parts)})" if parts else ""


def describe_type(root: Schema, node: Schema) -> tuple[str, str | None]:
    """A field's type in words, and the definition to expand in a table of its own (if any)."""
    node = _without_null(node)
    name, target = _definition(root, node)
    if "enum" in target:
        values = " | ".join(f"`{value}`" for value in target["enum"])
        return f"one of {values}", None
    if name is not None and target.get("type") == "object":
        return f"object ({name})", name
    kind = target.get("type")
    if kind == "array":
        items = target.get("items", {})
        item_name, _ = _definition(root, items)
        item_type, expand = describe_type(root, items)
        listed = item_name if item_name and expand else item_type
        unique = ", unique" if target.get("uniqueItems") else ""
        limit = f" (up to {target['maxItems']} items)" if "maxItems" in target else ""
        return f"list of {listed}{unique}{limit}", expand
    if kind == "object" and "additionalProperties" in target and not target.get("properties"):
        values = target["additionalProperties"]
        value_type = values.get("type", "any") if isinstance(values, dict) else "any"
        return f"map of string to {value_type}", None
    if isinstance(kind, str):
        bounds = {k: v for k, v in target.items() if k != "maxItems"}
        return f"{kind}{_bounds(bounds)}", None
    return "any", None


def _default(node: Schema) -> str:
    if "default" not in node:
        return "—"
    value = node["default"]
    return f"`{json.dumps(value)}`"


def _escape(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def tables(root: Schema) -> list[Table]:
    """One table per object, depth first from `spec`, each object once."""
    found: list[Table] = []
    seen: set[str] = set()

    def visit(path: str, definition: str) -> None:
        if definition in seen:
            return
        seen.add(definition)
        node = root["$defs"][definition]
        required = set(node.get("required", []))
        rows = []
        nested: list[tuple[str, str]] = []
        for field, schema in node.get("properties", {}).items():
            field_type, expand = describe_type(root, schema)
            description = schema.get("description") or ""
            if not description and expand:
                description = root["$defs"][expand].get("description", "")
            plain = _without_null(schema)
            if not description:
                _, target = _definition(root, plain)
                description = target.get("description", "")
            shown_type = field_type + (", required" if field in required else "")
            rows.append(
                Row(f"`{field}`", _escape(shown_type), _default(plain), _escape(description))
            )
            if expand:
                array = plain.get("type") == "array"
                nested.append((f"{path}.{field}{'[]' if array else ''}", expand))
        found.append(Table(path, _escape(node.get("description", "")), tuple(rows)))
        for child_path, child in nested:
            visit(child_path, child)

    visit("spec", "PluginPolicySpec")
    return found


def render(root: Schema) -> str:
    lines: list[str] = [BEGIN, ""]
    for table in tables(root):
        lines.append(f"### `{table.path}`")
        lines.append("")
        if table.description:
            lines += [table.description, ""]
        lines.append("| field | type | default | meaning |")
        lines.append("|---|---|---|---|")
        lines += [f"| {r.name} | {r.type} | {r.default} | {r.description} |" for r in table.rows]
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def _spans(text: str) -> Iterator[int]:
    for marker in (BEGIN, END):
        position = text.find(marker)
        if position < 0:
            raise ValueError(f"the page has no marker {marker!r}")
        yield position


def regenerate(page: str, root: Schema) -> str:
    """The page with its generated part replaced by fresh output."""
    begin, end = _spans(page)
    return page[:begin] + render(root) + page[end + len(END) :]


def load_schema(path: Path = SCHEMA) -> Schema:
    loaded: Schema = json.loads(path.read_text())
    return loaded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("--check", action="store_true", help="exit 1 when the page is stale")
    args = parser.parse_args(argv)
    text = args.page.read_text()
    fresh = regenerate(text, load_schema())
    if args.check:
        if fresh != text:
            sys.stderr.write(f"{args.page}: the generated tables are stale; regenerate them\n")
            return 1
        return 0
    if fresh != text:
        args.page.write_text(fresh)
        sys.stderr.write(f"wrote {args.page}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
