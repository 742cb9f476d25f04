"""The approved surface, field by field: what grows (new approvals needed), what shrinks or stays
(the approval carries over), and a digest that changes with every power and nothing else."""

from __future__ import annotations

from typing import Any

import pytest
from tests import documents as d

from wayang_operator.api.descriptor import PluginDescriptor
from wayang_operator.core.surface import digest, growth, shrinkage, surface_of

BASE: dict[str, Any] = {
    **d.descriptor(),
    "implementation": {
        "type": "container",
        "coordinate": "registry.example.com/team/echo",
        "digest": "sha256:" + "ab" * 32,
        "entrypoint": "echo_plugin:run",
    },
    "sandboxLevel": "semi-trusted",
    "capabilities": ["network", "llm_access"],
    "requiredSecrets": ["db/readonly"],
    "resourceProfile": {"cpu": "500m", "memory": "256Mi", "timeout": 10000},
    "provides": ["text.echo"],
    "requires": ["text.tokenize"],
    "dependencies": [{"id": "com.example/tokenizer", "version": "^1.0.0"}],
    "properties": [{"name": "apiKey", "type": "string", "sensitive": True}],
    "configuration": {"apiKey": {"secretKeyRef": {"name": "llm", "key": "key"}}},
}


def spec(**changes: Any) -> PluginDescriptor:
    document = {**BASE, **changes}
    return PluginDescriptor.model_validate(document, by_alias=True, by_name=False)


GROWS: list[tuple[dict[str, Any], str]] = [
    ({"sandboxLevel": "trusted"}, "sandboxLevel semi-trusted → trusted"),
    ({"capabilities": ["network", "llm_access", "gpu"]}, "capability gpu added"),
    ({"requiredSecrets": ["db/readonly", "db/admin"]}, "requiredSecrets db/admin added"),
    (
        {"configuration": {"apiKey": {"secretKeyRef": {"name": "admin-token", "key": "key"}}}},
        "configuration Secret admin-token added",
    ),
    ({"resourceProfile": {"cpu": "2", "memory": "256Mi"}}, "resourceProfile.cpu 500m → 2"),
    (
        {"resourceProfile": {"cpu": "500m", "memory": "1Gi", "timeout": 10000}},
        "resourceProfile.memory 256Mi → 1Gi",
    ),
    (
        {"resourceProfile": {"cpu": "500m", "memory": "256Mi", "timeout": 60000}},
        "resourceProfile.timeout 10000 → 60000 ms",
    ),
    (
        {"resourceProfile": {"cpu": "500m", "memory": "256Mi", "timeout": 10000, "gpu": 1}},
        "resourceProfile.gpu 0 → 1",
    ),
    ({"provides": ["text.echo", "payments.charge"]}, "provides payments.charge added"),
    ({"requires": ["text.tokenize", "db.query"]}, "requires db.query added"),
    (
        {"dependencies": [{"id": "com.example/tokenizer", "version": "^2.0.0"}]},
        "dependency com.example/tokenizer changed (^1.0.0 → ^2.0.0)",
    ),
    (
        {"implementation": {**BASE["implementation"], "coordinate": "evil.example.com/echo"}},
        "implementation.coordinate changed",
    ),
    (
        {"implementation": {**BASE["implementation"], "entrypoint": "other:run"}},
        "implementation.entrypoint changed",
    ),
]


@pytest.mark.parametrize(("change", "named"), GROWS)
def test_each_power_that_grows_is_named_and_changes_the_digest(
    change: dict[str, Any], named: str
) -> None:
    approved, current = surface_of(spec()), surface_of(spec(**change))
    grown = growth(approved, current)
    assert any(g.startswith(named) for g in grown), grown
    assert digest(approved) != digest(current)
    assert growth(current, approved) != grown or not grown


SHRINKS: list[dict[str, Any]] = [
    {"sandboxLevel": "untrusted"},
    {"capabilities": ["llm_access"]},
    {"requiredSecrets": []},
    {"configuration": {}},
    {"resourceProfile": {"cpu": "100m", "memory": "128Mi", "timeout": 5000}},
    {"provides": []},
    {"requires": []},
    {"dependencies": []},
]


@pytest.mark.parametrize("change", SHRINKS)
def test_fewer_powers_carry_the_approval_over_and_say_what_was_given_up(
    change: dict[str, Any],
) -> None:
    approved, current = surface_of(spec()), surface_of(spec(**change))
    assert growth(approved, current) == []
    assert digest(approved) != digest(current)
    assert shrinkage(approved, current), "the carry-over's audit entry says what was given up"


def test_what_is_not_a_power_does_not_change_the_surface() -> None:
    same = spec(description="new words", tags=["x"], enabled=False, name="Renamed plugin")
    assert digest(surface_of(same)) == digest(surface_of(spec()))
    order = spec(capabilities=["llm_access", "network"], requiredSecrets=["db/readonly"] * 1)
    assert digest(surface_of(order)) == digest(surface_of(spec())), "sets are sorted"


def test_configuration_is_part_of_it_only_when_a_policy_binds_it() -> None:
    changed = spec(configuration={**BASE["configuration"], "mode": "fast"})
    assert digest(surface_of(changed)) == digest(surface_of(spec()))
    bound_before = surface_of(spec(), bind_configuration=True)
    bound_after = surface_of(changed, bind_configuration=True)
    assert growth(bound_before, bound_after) == [
        "configuration changed (a policy binds it: approval.bindConfiguration)"
    ]


def test_quantities_compare_by_value_not_by_text() -> None:
    approved = surface_of(spec(resourceProfile={"cpu": "1", "memory": "1Gi"}))
    same = surface_of(spec(resourceProfile={"cpu": "1000m", "memory": "1024Mi"}))
    assert growth(approved, same) == []
    larger = surface_of(spec(resourceProfile={"cpu": "1001m", "memory": "1G"}))
    assert growth(approved, larger) == ["resourceProfile.cpu 1 → 1001m"], "1G < 1Gi"
