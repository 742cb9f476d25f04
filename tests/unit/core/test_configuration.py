"""Sensitive values never in plain text: refused inline (with a message that does not echo them),
accepted only as Secret references, and redacted wherever a configuration is shown."""

from __future__ import annotations

from typing import Any

from tests import documents as d

from wayang_operator.api.descriptor import PluginDescriptor
from wayang_operator.core import contract
from wayang_operator.core.configuration import (
    REDACTED,
    SecretRef,
    redact,
    secret_ref,
    secret_refs,
    sensitive_problems,
    sensitive_problems_raw,
)

CANARY = "sk-canary-5c1e7d"
PROPERTIES: list[dict[str, Any]] = [
    {"name": "apiKey", "type": "string", "sensitive": True, "validation": {"pattern": "^sk-"}},
    {"name": "mode", "type": "string"},
]


def spec(configuration: dict[str, Any], **more: Any) -> PluginDescriptor:
    document = {**d.descriptor(), "properties": PROPERTIES, "configuration": configuration, **more}
    return PluginDescriptor.model_validate(document, by_alias=True, by_name=False)


def test_a_secret_reference_is_exactly_one_shape() -> None:
    ref = {"secretKeyRef": {"name": "llm", "key": "api-key"}}
    assert secret_ref(ref) == SecretRef("llm", "api-key")
    for not_a_ref in (
        "sk-1",
        {"secretKeyRef": {"name": "llm"}},
        {"secretKeyRef": {"name": "llm", "key": "k"}, "extra": 1},
        {"secretKeyRef": {"name": "", "key": "k"}},
        {"secretKeyRef": {"name": 1, "key": "k"}},
    ):
        assert secret_ref(not_a_ref) is None
    assert secret_refs(spec({"apiKey": ref, "mode": "x"})) == {
        "apiKey": SecretRef("llm", "api-key")
    }


def test_an_inline_sensitive_value_is_refused_without_echoing_it() -> None:
    inline = spec({"apiKey": CANARY})
    problems = sensitive_problems(inline)
    assert [path for path, _ in problems] == ["spec.configuration.apiKey"]
    assert CANARY not in repr(problems)
    contract_problems = contract.check(inline)
    assert any(p.path == "spec.configuration.apiKey" for p in contract_problems)
    assert CANARY not in " ".join(str(p) for p in contract_problems)


def test_a_sensitive_default_is_refused_too() -> None:
    with_default = [{**PROPERTIES[0], "default": CANARY}, PROPERTIES[1]]
    plugin = spec({}, properties=with_default)
    problems = contract.check(plugin)
    assert any(p.path == "spec.properties[0].default" for p in problems)
    assert CANARY not in " ".join(str(p) for p in problems)


def test_a_reference_is_accepted_and_not_checked_as_a_value() -> None:
    plugin = spec({"apiKey": {"secretKeyRef": {"name": "llm", "key": "api-key"}}})
    assert sensitive_problems(plugin) == []
    assert contract.check(plugin) == []


def test_the_raw_check_refuses_inline_values_even_in_an_invalid_spec() -> None:
    broken = {
        "version": "not semver",
        "properties": PROPERTIES,
        "configuration": {"apiKey": CANARY},
    }
    problems = sensitive_problems_raw(broken)
    assert [path for path, _ in problems] == ["spec.configuration.apiKey"]
    assert CANARY not in repr(problems)
    assert sensitive_problems_raw({"properties": "nonsense", "configuration": []}) == []


def test_redaction_hides_inline_sensitive_values_and_keeps_references() -> None:
    ref = {"secretKeyRef": {"name": "llm", "key": "api-key"}}
    plugin = spec({"apiKey": ref, "mode": "fast"})
    assert redact(plugin, {"apiKey": CANARY, "mode": "fast"}) == {
        "apiKey": REDACTED,
        "mode": "fast",
    }
    assert redact(plugin, {"apiKey": ref}) == {"apiKey": ref}
    wrong_type = spec({"apiKey": 42})
    assert "42" not in " ".join(str(p) for p in contract.check(wrong_type))
