"""Read YAML and JSON manifests defensively, the way the API server would see them.

Manifests come from Git repositories, pipes and pre-commit hooks, so anything may arrive: binary
files, alias bombs ("billion laughs"), recursive aliases, documents nested ten thousand levels
deep, duplicate keys that YAML silently collapses. Every one of these becomes a `LoadError` that
names the file, the document and the line; none becomes a traceback or an exhausted machine.

YAML is first *composed* into a node graph by libyaml (fast, no Python objects yet). The graph is
checked with an iterative walk (size with aliases expanded, depth, duplicate keys, recursion)
before anything is constructed. Timestamps are not resolved (a Kubernetes manifest's `2026-01-01`
is a string, as it is for the API server), and values that JSON cannot carry are refused.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

BINARY_SNIFF_BYTES = 8192


@dataclass(frozen=True)
class Limits:
    """Bounds on untrusted input; generous for real manifests, fatal for bombs."""

    max_file_bytes: int = 16 * 1024 * 1024
    """Larger files are refused before parsing (an etcd object is at most ~1.5 MiB)."""
    max_nodes: int = 1_000_000
    """Nodes per document after alias expansion."""
    max_depth: int = 100
    """Nesting depth of a document."""
    max_documents: int = 100_000
    """Documents per file."""


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Document:
    """One parsed document: JSON-compatible data plus a way back to source lines."""

    source: str
    index: int
    data: Any
    line: int | None
    node: yaml.Node | None = None

    def position(self, path: Sequence[str | int]) -> tuple[int | None, int | None]:
        """Line and column (1-based) of the deepest node on `path` that exists in the source."""
        node = self.node
        if node is None:
            return self.line, None
        for step in path:
            child = _child(node, step)
            if child is None:
                break
            node = child
        return node.start_mark.line + 1, node.start_mark.column + 1


@dataclass(frozen=True)
class LoadError:
    """A file or document that could not be read; `index` is None when the file itself failed."""

    source: str
    index: int | None
    message: str
    line: int | None = None
    column: int | None = None


def _child(node: yaml.Node, step: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode) and isinstance(step, str):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == step:
                found: yaml.Node = value
                return found
    if (
        isinstance(node, yaml.SequenceNode)
        and isinstance(step, int)
        and 0 <= step < len(node.value)
    ):
        child: yaml.Node = node.value[step]
        return child
    return None


class _Loader(yaml.CSafeLoader):
    """libyaml-backed safe loader that leaves timestamps as strings, as Kubernetes does.

    Scalar mapping keys become strings as they are written (`1:` is "1", `true:` is "true"), as
    the API server's YAML-to-JSON conversion does; Python would otherwise merge the keys 1 and
    true into one dict entry and silently lose a value.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:str":
                key: Any = _scalar_key(self.construct_object(key_node, deep=deep))
            else:
                key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str):
                raise yaml.constructor.ConstructorError(
                    None, None, "mapping keys must be strings or scalars", key_node.start_mark
                )
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.CSafeLoader.yaml_implicit_resolvers.items()
}


class _GraphError(Exception):
    def __init__(self, message: str, node: yaml.Node) -> None:
        super().__init__(message)
        self.node = node


def _check_graph(root: yaml.Node, limits: Limits) -> None:
    """Refuse bombs, recursion, excessive depth and duplicate keys before construction.

    Post-order walk with memoised subtree sizes: an alias costs its full expanded size (so a
    billion-laughs document is measured, not expanded) while each node is visited once.
    """
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            total = 1 + sum(sizes[id(child)] for child in _children(node))
            if total > limits.max_nodes:
                raise _GraphError(
                    f"document expands to more than {limits.max_nodes:,} nodes "
                    "(an alias bomb?); refusing to load it",
                    node,
                )
            sizes[key] = total
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise _GraphError("recursive alias: a node contains itself", node)
        if depth > limits.max_depth:
            raise _GraphError(f"document is nested deeper than {limits.max_depth} levels", node)
        if isinstance(node, yaml.MappingNode):
            _check_duplicate_keys(node)
        on_path.add(key)
        stack.append((node, depth, True))
        stack.extend(
            (child, depth + 1, False) for child in _children(node) if id(child) not in sizes
        )


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_duplicate_keys(node: yaml.MappingNode) -> None:
    seen: set[str] = set()
    for key, _ in node.value:
        if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
            if key.value in seen:
                raise _GraphError(f"duplicate key {key.value!r} in a mapping", key)
            seen.add(key.value)


def _scalar_key(key: Any) -> Any:
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    if isinstance(key, int | float):
        return str(key)
    return key


def _to_json(value: Any, path: str = "") -> Any:
    """Check that constructed data is JSON (what the API server stores) and normalise keys."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{path or 'document'}: {value} is not a JSON number")
        return value
    if isinstance(value, list):
        return [_to_json(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        return {
            key: _to_json(item, f"{path}.{key}" if path else key) for key, item in value.items()
        }
    kind = type(value).__name__
    raise ValueError(f"{path or 'document'}: a {kind} value (from a YAML tag) is not valid JSON")


def _decode(raw: bytes, source: str) -> str | LoadError:
    if b"\x00" in raw[:BINARY_SNIFF_BYTES]:
        return LoadError(source, None, "binary content (NUL bytes): not a YAML or JSON manifest")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        return LoadError(source, None, f"not UTF-8 text (invalid byte at offset {error.start})")


def load_bytes(
    raw: bytes, source: str, *, json_only: bool = False, limits: Limits = DEFAULT_LIMITS
) -> Iterator[Document | LoadError]:
    """Parse every document in `raw`; yields results lazily so huge streams stay cheap."""
    if len(raw) > limits.max_file_bytes:
        yield LoadError(source, None, f"file is larger than {limits.max_file_bytes:,} bytes")
        return
    decoded = _decode(raw, source)
    if isinstance(decoded, LoadError):
        yield decoded
        return
    if json_only:
        yield _load_json(decoded, source, limits)
        return
    yield from _load_yaml(decoded, source, limits)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r} in an object")
        out[key] = value
    return out


def _depth_exceeds(data: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(value, dict):
            stack.extend((child, depth + 1) for child in value.values())
        elif isinstance(value, list):
            stack.extend((child, depth + 1) for child in value)
    return False


def _load_json(text: str, source: str, limits: Limits) -> Document | LoadError:
    too_deep = LoadError(source, 0, f"document is nested deeper than {limits.max_depth} levels")
    try:
        data = json.loads(text, object_pairs_hook=_unique_pairs, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        return LoadError(source, 0, f"invalid JSON: {error.msg}", error.lineno, error.colno)
    except ValueError as error:
        return LoadError(source, 0, f"invalid JSON: {error}")
    except RecursionError:
        return too_deep
    if _depth_exceeds(data, limits.max_depth):
        return too_deep
    return Document(source, 0, data, 1)


def _load_yaml(text: str, source: str, limits: Limits) -> Iterator[Document | LoadError]:
    loader = _Loader(text)
    index = 0
    try:
        while True:
            try:
                if not loader.check_node():
                    return
                node = loader.get_node()
            except yaml.YAMLError as error:
                mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
                problem = getattr(error, "problem", None) or str(error).splitlines()[0]
                yield LoadError(
                    source,
                    index,
                    f"invalid YAML: {problem}",
                    mark.line + 1 if mark else None,
                    mark.column + 1 if mark else None,
                )
                return
            if index >= limits.max_documents:
                yield LoadError(source, index, f"more than {limits.max_documents:,} documents")
                return
            yield _construct(loader, node, source, index, limits)
            index += 1
    finally:
        loader.dispose()


def _construct(
    loader: _Loader, node: yaml.Node | None, source: str, index: int, limits: Limits
) -> Document | LoadError:
    if node is None:
        return Document(source, index, None, None)
    line = node.start_mark.line + 1
    try:
        _check_graph(node, limits)
    except _GraphError as error:
        return LoadError(
            source,
            index,
            str(error),
            error.node.start_mark.line + 1,
            error.node.start_mark.column + 1,
        )
    try:
        data = _to_json(loader.construct_document(node))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        return LoadError(
            source, index, f"invalid YAML: {problem}", mark.line + 1 if mark else line, None
        )
    except ValueError as error:
        return LoadError(source, index, str(error), line)
    return Document(source, index, data, line, node)
