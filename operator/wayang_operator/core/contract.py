"""The Validated gate: the plugin's contract, beyond what a schema can say.

A manifest can be schema-valid and still be a broken plugin: two ports with one name, an input
schema that is not a JSON Schema, a property default its own validation refuses, configuration for
properties that do not exist, a sensitive value written inline instead of read from a Secret.
Each problem is reported with the field path that holds it, and never with a sensitive value.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema
from celpy import Environment, celtypes
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError

from ..api.descriptor import PluginDescriptor, PortDescriptor, PropertyDescriptor, PropertyType
from ..api.errors import ERROR_PAYLOAD_SCHEMA_REF
from .artifacts import location_problem
from .configuration import secret_ref, sensitive_problems_raw
from .references import disagreement

_JSON_TYPES: dict[PropertyType, tuple[type, ...]] = {
    PropertyType.STRING: (str,),
    PropertyType.NUMBER: (int, float),
    PropertyType.INTEGER: (int,),
    PropertyType.BOOLEAN: (bool,),
    PropertyType.OBJECT: (dict,),
    PropertyType.ARRAY: (list,),
}


@dataclass(frozen=True)
class ContractProblem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def _duplicates(names: list[str]) -> list[str]:
    return sorted(name for name, count in Counter(names).items() if count > 1)


def _value_problem(prop: PropertyDescriptor, value: Any) -> str | None:
    """Why `value` does not satisfy the property's type and validation, or None. A value read
    from a Secret is checked by the runtime host, which reads it; a sensitive one is never
    quoted."""
    if secret_ref(value) is not None:
        return None
    problem = _problem(prop, value)
    if problem is not None and prop.sensitive:
        return problem.replace(repr(value), "the value (not shown: the property is sensitive)")
    return problem


def _problem(prop: PropertyDescriptor, value: Any) -> str | None:
    expected = _JSON_TYPES[prop.type]
    is_bool = isinstance(value, bool)
    if not isinstance(value, expected) or (is_bool and prop.type is not PropertyType.BOOLEAN):
        return f"{value!r} is not of type {prop.type.value}"
    rules = prop.validation
    if rules is None:
        return None
    if rules.min is not None and isinstance(value, int | float) and value < rules.min:
        return f"{value!r} is below the minimum {rules.min:g}"
    if rules.max is not None and isinstance(value, int | float) and value > rules.max:
        return f"{value!r} is above the maximum {rules.max:g}"
    if rules.pattern is not None and isinstance(value, str):
        try:
            if not re.search(rules.pattern, value):
                return f"{value!r} does not match the pattern {rules.pattern!r}"
        except re.error as error:
            return f"the property's validation pattern is not a regular expression: {error}"
    if rules.enum is not None and value not in rules.enum:
        return f"{value!r} is not one of {rules.enum!r}"
    if rules.cel_expression is not None:
        return cel_problem(rules.cel_expression, value)
    return None


def cel_problem(expression: str, value: Any) -> str | None:
    """Why `value` fails the property's `validation.celExpression` (CEL over `self`, the value,
    as in Kubernetes' own rules), or None; an expression that does not compile or evaluate to a
    boolean is a problem of the descriptor."""
    environment = Environment()
    try:
        program = environment.program(environment.compile(expression))
        result = program.evaluate({"self": json_to_cel(value)})
    except CELParseError as error:
        return f"validation.celExpression does not compile: {str(error).splitlines()[0]}"
    except (CELEvalError, TypeError, ValueError) as error:
        said = str(error.args[0] if error.args else error).split(" (in activation", 1)[0]
        return f"validation.celExpression could not be evaluated for {value!r}: {said[:300]}"
    if not isinstance(result, celtypes.BoolType | bool):
        return f"validation.celExpression {expression!r} is not a boolean for {value!r}"
    return None if bool(result) else f"{value!r} fails validation.celExpression {expression!r}"


def admission_problems(spec: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What the admission webhook and `wayang validate` refuse beyond the schema, on the spec
    as it was sent (valid or not): a sensitive value written inline, a container whose
    repository and coordinate name different places. Messages never quote a sensitive value."""
    problems = sensitive_problems_raw(dict(spec))
    disagrees = disagreement(spec.get("implementation"))
    if disagrees:
        problems.append(("spec.implementation.repository", disagrees))
    unfetchable = location_problem(spec.get("implementation"))
    if unfetchable:
        problems.append(("spec.implementation.repository", unfetchable))
    return problems


def _ports(spec: PluginDescriptor) -> list[ContractProblem]:
    problems: list[ContractProblem] = []
    ports: list[tuple[str, int | None, PortDescriptor]] = [
        ("inputs", i, port) for i, port in enumerate(spec.inputs)
    ]
    ports += [
        ("outputs.success", None, spec.outputs.success),
        ("outputs.error", None, spec.outputs.error),
    ]
    for name in _duplicates([port.name for _, _, port in ports]):
        problems.append(ContractProblem("spec.inputs/outputs", f"port name {name!r} is used twice"))
    for place, index, port in ports:
        path = f"spec.{place}" + (f"[{index}]" if index is not None else "")
        if isinstance(port.schema_, dict):
            try:
                jsonschema.validators.validator_for(port.schema_).check_schema(port.schema_)
            except jsonschema.SchemaError as error:
                problems.append(
                    ContractProblem(f"{path}.schema", f"not a valid JSON Schema: {error.message}")
                )
    if spec.outputs.error.schema_ != ERROR_PAYLOAD_SCHEMA_REF:
        problems.append(
            ContractProblem("spec.outputs.error.schema", f"must be {ERROR_PAYLOAD_SCHEMA_REF}")
        )
    return problems


def _properties(spec: PluginDescriptor) -> list[ContractProblem]:
    problems: list[ContractProblem] = []
    properties = spec.properties or []
    for name in _duplicates([prop.name for prop in properties]):
        problems.append(ContractProblem("spec.properties", f"property {name!r} is declared twice"))
    configuration = spec.configuration or {}
    for index, prop in enumerate(properties):
        if prop.sensitive and prop.default is not None:
            continue  # refused by admission_problems, without checking (and so quoting) it
        if prop.default is not None and (reason := _value_problem(prop, prop.default)):
            problems.append(ContractProblem(f"spec.properties[{index}].default", reason))
        inline_secret = prop.sensitive and secret_ref(configuration.get(prop.name)) is None
        if (
            prop.name in configuration
            and not inline_secret
            and (reason := _value_problem(prop, configuration[prop.name]))
        ):
            problems.append(ContractProblem(f"spec.configuration.{prop.name}", reason))
        if prop.required and prop.default is None and prop.name not in configuration:
            problems.append(
                ContractProblem(
                    f"spec.configuration.{prop.name}",
                    "required property has no value and no default",
                )
            )
    declared = {prop.name for prop in properties}
    for key in sorted(set(configuration) - declared):
        problems.append(
            ContractProblem(f"spec.configuration.{key}", "no property of this name is declared")
        )
    return problems


def check(spec: PluginDescriptor) -> list[ContractProblem]:
    """Every contract problem of the descriptor (empty when the contract holds)."""
    raw = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    problems = [ContractProblem(path, message) for path, message in admission_problems(raw)]
    return problems + _ports(spec) + _properties(spec)
