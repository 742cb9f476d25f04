"""Validate wayang.io documents against the API models and explain every problem by field.

A GitOps repository holds many kinds of objects; documents of other API groups are skipped (they
are the API server's business), `kind: List` is opened, and each wayang.io document is checked
by its pydantic model, the same model the CRDs are generated from. Messages name the field path
in the document (`spec.implementation.digest`), say what was expected in words rather than a
regex, and suggest the intended name for misspelt fields.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import cache
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from ..api.base import human_pattern
from ..api.meta import API_VERSION, GROUP
from ..api.resources import RESOURCES_BY_KIND, Plugin
from ..core import contract
from ..core.contract import admission_problems
from ..schemagen.jsonschema import model_schema
from .loader import Document, LoadError

Path = tuple[str | int, ...]


class Outcome(StrEnum):
    VALID = "valid"
    INVALID = "invalid"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Problem:
    path: str
    message: str
    line: int | None = None
    column: int | None = None


@dataclass(frozen=True)
class Result:
    """The verdict on one document (or one item of a `kind: List`)."""

    source: str
    document: int | None
    """1-based document number in the file; None when the file itself could not be read."""
    outcome: Outcome
    line: int | None = None
    item: int | None = None
    api_version: str | None = None
    kind: str | None = None
    namespace: str | None = None
    name: str | None = None
    problems: tuple[Problem, ...] = field(default_factory=tuple)
    reason: str | None = None


def format_path(path: Sequence[str | int]) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else step)
    return out


def results_for(loaded: Document | LoadError) -> Iterator[Result]:
    """Validate one loaded document (expanding `kind: List`) or report why it failed to load."""
    if isinstance(loaded, LoadError):
        document = None if loaded.index is None else loaded.index + 1
        problem = Problem("", loaded.message, loaded.line, loaded.column)
        yield Result(loaded.source, document, Outcome.INVALID, loaded.line, problems=(problem,))
        return
    if loaded.data is None:
        return
    data = loaded.data
    items = data.get("items") if isinstance(data, dict) else None
    if (
        isinstance(data, dict)
        and str(data.get("kind", "")).endswith("List")
        and isinstance(items, list)
    ):
        for position, item in enumerate(items):
            yield _result(loaded, item, ("items", position), position)
        return
    yield _result(loaded, data, (), None)


def _result(document: Document, data: Any, prefix: Path, item: int | None) -> Result:
    line, _ = document.position(prefix)
    result = Result(document.source, document.index + 1, Outcome.VALID, line=line, item=item)
    if not isinstance(data, dict):
        found = "a list" if isinstance(data, list) else f"a {type(data).__name__} value"
        problem = Problem("", f"a Kubernetes object must be a mapping, found {found}", line)
        return replace(result, outcome=Outcome.INVALID, problems=(problem,))
    api_version, kind = data.get("apiVersion"), data.get("kind")
    metadata = data.get("metadata")
    if not isinstance(metadata, dict):
        metadata = {}
    result = replace(
        result,
        api_version=_str_or_none(api_version),
        kind=_str_or_none(kind),
        namespace=_str_or_none(metadata.get("namespace")),
        name=_str_or_none(metadata.get("name")),
    )
    skip = _skip_reason(api_version, kind)
    if skip:
        return replace(result, outcome=Outcome.SKIPPED, reason=skip)
    problems = sorted(
        (
            _locate(document, prefix, problem)
            for problem in _document_problems(api_version, kind, data)
        ),
        key=lambda problem: (problem.line or 0, problem.column or 0),
    )
    if problems:
        return replace(result, outcome=Outcome.INVALID, problems=tuple(problems))
    return result


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _locate(document: Document, prefix: Path, problem: tuple[Path, str]) -> Problem:
    path, message = problem
    line, column = document.position(prefix + path)
    return Problem(format_path(path), message, line, column)


def _skip_reason(api_version: Any, kind: Any) -> str | None:
    """Why a document is none of our business, or None when it claims to be a wayang.io object."""
    ours = isinstance(api_version, str) and api_version.split("/")[0] == GROUP
    if ours or (isinstance(kind, str) and kind in RESOURCES_BY_KIND):
        return None
    if api_version is None and kind is None:
        return "not a Kubernetes object (no apiVersion or kind)"
    return f"{kind or 'object'} of {api_version or 'no apiVersion'} is not a {GROUP} resource"


def _document_problems(api_version: Any, kind: Any, data: dict[str, Any]) -> list[tuple[Path, str]]:
    """Problems of a document that claims to be a wayang.io object, as (path, message)."""
    if api_version is None:
        return [(("apiVersion",), f"required field is missing; expected {API_VERSION!r}")]
    if api_version != API_VERSION:
        return [
            (
                ("apiVersion",),
                f"unknown apiVersion {api_version!r}; this release serves {API_VERSION!r}",
            )
        ]
    info = RESOURCES_BY_KIND.get(kind) if isinstance(kind, str) else None
    if info is None:
        known = ", ".join(sorted(RESOURCES_BY_KIND))
        return [(("kind",), f"unknown kind {kind!r} in {API_VERSION}; expected one of {known}")]
    parsed, problems = parse_model(info.model, data)
    spec = data.get("spec")
    if info.model is Plugin and isinstance(spec, dict):
        # the plugin's contract, as the Validated gate checks it (core/contract.py); of a spec
        # the schema refuses, what the admission webhook refuses beyond it
        found = (
            [(c.path, c.message) for c in contract.check(parsed.spec)]
            if isinstance(parsed, Plugin)
            else admission_problems(spec)
        )
        problems += [(_split(path), message) for path, message in found]
    return problems


def _split(path: str) -> Path:
    """`spec.properties[0].default` → ("spec", "properties", 0, "default")."""
    steps: list[str | int] = []
    for part in path.split("."):
        name, _, rest = part.partition("[")
        steps.append(name)
        if rest:
            steps.append(int(rest.rstrip("]")))
    return tuple(steps)


M = TypeVar("M", bound=BaseModel)


def parse_model(model: type[M], data: Any) -> tuple[M | None, list[tuple[Path, str]]]:
    """Validate `data` (wire names only) once: the model, or None and the problems by field."""
    try:
        return model.model_validate(data, by_alias=True, by_name=False), []
    except ValidationError as error:
        return None, _explain(error.errors(include_url=False), model)


def check_model(model: type[BaseModel], data: Any) -> list[tuple[Path, str]]:
    """Validate `data` (wire names only) against `model`; problems as (field path, message)."""
    return parse_model(model, data)[1]


_BUILTIN_TAGS = frozenset({"str", "int", "float", "bool", "dict", "list", "none", "tagged-union"})


def _is_union_tag(step: str) -> bool:
    return (
        step in _BUILTIN_TAGS
        or "[" in step
        or "(" in step
        or step.startswith(("function-", "constrained-"))
    )


def _field_path(loc: tuple[str | int, ...]) -> Path:
    """Drop pydantic's union branch tags (`str`, `dict[str,any]`) from an error location."""
    return tuple(step for step in loc if isinstance(step, int) or not _is_union_tag(step))


def _explain(errors: list[ErrorDetails], model: type[BaseModel]) -> list[tuple[Path, str]]:
    by_path: dict[Path, list[str]] = {}
    for error in errors:
        path = _field_path(error["loc"])
        message = _message(error, path, model)
        messages = by_path.setdefault(path, [])
        if message not in messages:
            messages.append(message)
    return [(path, " or ".join(messages)) for path, messages in by_path.items()]


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _message(error: ErrorDetails, path: Path, model: type[BaseModel]) -> str:
    kind_of_error = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if kind_of_error == "missing":
        return "required field is missing"
    if kind_of_error == "extra_forbidden":
        return _unknown_field(path, model)
    if kind_of_error == "string_pattern_mismatch":
        human = human_pattern(str(ctx.get("pattern", "")))
        expected = human or f"match the pattern {ctx.get('pattern')}"
        return f"must be {expected}; got {_shown(value)}"
    if kind_of_error in ("value_error", "assertion_error"):
        return str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind_of_error in ("enum", "literal_error"):
        return f"must be one of {ctx.get('expected')}; got {_shown(value)}"
    message = str(error["msg"])
    if kind_of_error.endswith("_type") or kind_of_error.startswith(
        ("string_too", "too_", "greater", "less")
    ):
        return f"{message[0].lower()}{message[1:]}; got {_shown(value)}"
    return message


def _unknown_field(path: Path, model: type[BaseModel]) -> str:
    name = path[-1] if path else ""
    allowed = _allowed_fields(model, path[:-1])
    if path == ("spec", "status") and model is Plugin:
        return (
            "unknown field: review state (pending, approved, ...) is reported by the operator in "
            "the resource's status; remove spec.status"
        )
    hint = ""
    if isinstance(name, str) and allowed:
        close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else f"; allowed here: {', '.join(allowed)}"
    return f"unknown field {name!r}{hint}"


_schema = cache(model_schema)


def _allowed_fields(model: type[BaseModel], path: Path) -> list[str]:
    """Field names the schema allows at `path` (for "did you mean" hints)."""
    schema = _schema(model)
    defs = schema.get("$defs", {})
    node: Any = schema
    for step in path:
        node = _deref(node, defs)
        if isinstance(step, int):
            node = node.get("items", {})
        else:
            node = node.get("properties", {}).get(step, {})
    node = _deref(node, defs)
    return list(node.get("properties", {}))


def _deref(node: Any, defs: dict[str, Any]) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        node = defs[node["$ref"].removeprefix("#/$defs/")]
    if isinstance(node, dict) and "anyOf" in node:
        for option in node["anyOf"]:
            resolved = _deref(option, defs)
            if "properties" in resolved or "items" in resolved:
                return resolved
    return node
