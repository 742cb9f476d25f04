"""Policy selection by namespace labels, approver counts and registries."""

from __future__ import annotations

from tests import documents as d
from tests.documents import mutated

from wayang_operator.api.descriptor import PluginDescriptor
from wayang_operator.api.resources import LabelSelector, PluginPolicySpec
from wayang_operator.core.policy import (
    DEFAULT_POLICY_NAME,
    NamedPolicy,
    applicable,
    registry_allowed,
    selector_matches,
)


def selector(**spec: object) -> LabelSelector:
    return LabelSelector.model_validate(spec)


def test_label_selectors() -> None:
    labels = {"tenant": "a", "tier": "gold"}
    assert selector_matches(None, labels)
    assert selector_matches(selector(), labels)
    assert selector_matches(selector(matchLabels={"tenant": "a"}), labels)
    assert not selector_matches(selector(matchLabels={"tenant": "b"}), labels)
    expressions = [
        ({"key": "tier", "operator": "In", "values": ["gold", "silver"]}, True),
        ({"key": "tier", "operator": "NotIn", "values": ["gold"]}, False),
        ({"key": "tenant", "operator": "Exists"}, True),
        ({"key": "missing", "operator": "DoesNotExist"}, True),
        ({"key": "missing", "operator": "In", "values": ["x"]}, False),
    ]
    for expression, expected in expressions:
        assert selector_matches(selector(matchExpressions=[expression]), labels) is expected


def test_applicable_policies_or_the_default() -> None:
    a = NamedPolicy(
        "a", PluginPolicySpec.model_validate({"namespaceSelector": {"matchLabels": {"t": "a"}}})
    )
    everywhere = NamedPolicy("all", PluginPolicySpec())
    assert [p.name for p in applicable([a, everywhere], {"t": "a"})] == ["a", "all"]
    assert [p.name for p in applicable([a], {"t": "b"})] == [DEFAULT_POLICY_NAME]
    default = applicable([], {})[0]
    assert default.signing.required
    assert default.scan.required
    assert not default.approval.allow_self_approval


def test_registries_by_prefix() -> None:
    container = PluginDescriptor.model_validate(
        mutated(
            mutated(d.descriptor(), "implementation.type", "container"),
            "implementation.coordinate",
            "registry.example.com/team/x:1",
        )
    )
    allowed = NamedPolicy(
        "p", PluginPolicySpec.model_validate({"allowedRegistries": ["registry.example.com/team/"]})
    )
    assert registry_allowed(allowed, container) is None
    other = NamedPolicy("p", PluginPolicySpec.model_validate({"allowedRegistries": ["localhost/"]}))
    refused = registry_allowed(other, container)
    assert refused is not None
    assert "registry.example.com/team/x:1" in refused
    assert "localhost/" in refused
    maven = PluginDescriptor.model_validate(
        mutated(d.descriptor(), "implementation.repository", "https://repo.example.com/maven2")
    )
    assert (
        registry_allowed(
            NamedPolicy(
                "p",
                PluginPolicySpec.model_validate(
                    {"allowedRegistries": ["https://repo.example.com/"]}
                ),
            ),
            maven,
        )
        is None
    )
