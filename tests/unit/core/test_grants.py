"""Requested powers against granted ones: every capability has an effect, a capability no policy
grants blocks with its name, untrusted plugins get no network, Secrets by allow-list, callers."""

from __future__ import annotations

from typing import Any

import pytest
from tests.unit.core.test_workload import descriptor, policy

from wayang_operator.api.descriptor import Capability
from wayang_operator.core.gates import Reason
from wayang_operator.core.grants import OPENS_NETWORK, NotGranted, grant, secret_name

DNS = {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}
DB = {"egress": [{"namespaceSelector": {"matchLabels": {"db": "yes"}}, "ports": [{"port": 5432}]}]}


def refused(spec: Any, policies: list[Any]) -> NotGranted:
    with pytest.raises(NotGranted) as caught:
        grant(spec, policies)
    return caught.value


@pytest.mark.parametrize("capability", [c.value for c in Capability])
def test_a_capability_the_policy_does_not_grant_blocks_with_its_name(capability: str) -> None:
    spec = descriptor(capabilities=[capability], sandboxLevel="trusted")
    error = refused(spec, [policy("strict", capabilities={})])
    assert error.reason is Reason.CAPABILITY_NOT_GRANTED
    assert f"capability {capability} is not granted by policy 'strict'" in str(error)


def test_without_grants_a_policy_grants_what_plugins_always_had() -> None:
    for capability in ("network", "filesystem", "gpu"):
        grant(descriptor(capabilities=[capability], sandboxLevel="trusted"), [policy()])
    for capability in ("database", "llm_access", "rag_access", "memory_access", "tool_execution"):
        error = refused(descriptor(capabilities=[capability], sandboxLevel="trusted"), [policy()])
        assert error.reason is Reason.CAPABILITY_NOT_GRANTED


@pytest.mark.parametrize("capability", sorted(c.value for c in OPENS_NETWORK))
def test_untrusted_plugins_get_no_network_whatever_the_policy(capability: str) -> None:
    grants = {"network": {}, "database": DB, "llm_access": DB, "rag_access": DB}
    grants |= {"memory_access": DB, "tool_execution": DB}
    spec = descriptor(capabilities=[capability], sandboxLevel="untrusted")
    error = refused(spec, [policy(capabilities=grants)])
    assert "untrusted plugins get no network" in str(error)


def test_a_destination_capability_opens_exactly_its_destinations() -> None:
    spec = descriptor(capabilities=["database"], sandboxLevel="semi-trusted")
    powers = grant(spec, [policy(capabilities={"database": DB})])
    to_db = {
        "to": [{"namespaceSelector": {"matchLabels": {"db": "yes"}}}],
        "ports": [{"port": 5432, "protocol": "TCP"}],
    }
    assert powers.egress == [DNS, to_db]
    assert grant(descriptor(), [policy(capabilities={"database": DB})]).egress == [DNS]


def test_gpus_only_with_the_gpu_capability_and_within_the_grant() -> None:
    without = descriptor(resourceProfile={"gpu": 1})
    assert "GPUs come only with the gpu capability" in str(refused(without, [policy()]))
    two = descriptor(capabilities=["gpu"], resourceProfile={"gpu": 2})
    assert "grant at most 1" in str(refused(two, [policy()]))
    assert grant(two, [policy(capabilities={"gpu": {"max": 4}})]).gpus == 2


def test_a_writable_volume_only_with_filesystem_and_the_smaller_grant_wins() -> None:
    assert grant(descriptor(), [policy()]).writable is None
    spec = descriptor(capabilities=["filesystem"])
    small = policy("small", capabilities={"filesystem": {"sizeLimit": "256Mi"}})
    large = policy("large", capabilities={"filesystem": {"sizeLimit": "2Gi"}})
    assert grant(spec, [large, small]).writable == "256Mi"


def test_network_anywhere_yields_to_a_restricted_grant_and_two_lists_must_agree() -> None:
    spec = descriptor(capabilities=["network"])
    anywhere = policy("anywhere")
    office = policy("office", capabilities={"network": {"egress": [{"cidr": "10.0.0.0/8"}]}})
    assert grant(spec, [anywhere, office]).egress == [
        DNS,
        {"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]},
    ]
    lab = policy("lab", capabilities={"network": {"egress": [{"cidr": "192.168.0.0/16"}]}})
    error = refused(spec, [office, lab])
    assert error.reason is Reason.POLICIES_DISAGREE


def test_secrets_by_allow_list_and_scopes_map_to_names() -> None:
    assert secret_name("db/readonly") == "db-readonly"
    assert secret_name("Payments/API_Key") == "payments-api-key"
    assert secret_name("../../etc") == "etc"
    spec = descriptor(requiredSecrets=["db/readonly"])
    error = refused(spec, [policy("p", secrets={"allowed": ["payments-*"]})])
    assert error.reason is Reason.SECRET_NOT_ALLOWED
    assert "Secret 'db-readonly' is not allowed by policy 'p' (secrets.allowed: payments-*)" in str(
        error
    )
    both = [policy("a", secrets={"allowed": ["db-*"]}), policy("b", secrets={"allowed": ["x"]})]
    assert "policy 'b'" in str(refused(spec, both)), "every policy must allow it"
    assert refused(spec, []).reason is Reason.SECRET_NOT_ALLOWED, "no policy: none allowed"


def test_callers_are_the_namespace_plus_those_the_policies_name() -> None:
    engine = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "wayang"}}}
    powers = grant(descriptor(), [policy(callers=[engine])])
    assert powers.ingress_from == [{"podSelector": {}}, engine]
    other = {"namespaceSelector": {"matchLabels": {"team": "x"}}}
    disagree = [policy("a", callers=[engine]), policy("b", callers=[other])]
    assert refused(descriptor(), disagree).reason is Reason.POLICIES_DISAGREE


WASM = {"type": "wasm", "coordinate": "echo", "digest": "sha256:" + "ab" * 32}


@pytest.mark.parametrize(
    ("level", "kind", "expected"),
    [
        ("semi-trusted", "wasm", ""),  # the module is its own sandbox: runc by default
        ("untrusted", "wasm", "gvisor"),
        ("semi-trusted", "container", "gvisor"),
        ("trusted", "wasm", ""),
    ],
)
def test_without_runtime_classes_the_defaults_depend_on_level_and_type(
    level: str, kind: str, expected: str
) -> None:
    implementation = WASM if kind == "wasm" else descriptor().implementation.model_dump()
    spec = descriptor(sandboxLevel=level, implementation=implementation)
    assert grant(spec, [policy()]).runtime_class == expected


def test_a_policy_chooses_the_runtime_class_per_type() -> None:
    classes = {
        "semi-trusted": "gvisor",
        "byType": [
            {"type": "wasm", "semi-trusted": "wasm-runc"},
            {"type": "jar", "trusted": "kata"},
        ],
    }
    wasm = descriptor(sandboxLevel="semi-trusted", implementation=WASM)
    assert grant(wasm, [policy(runtimeClasses=classes)]).runtime_class == "wasm-runc"
    container = descriptor(sandboxLevel="semi-trusted")
    assert grant(container, [policy(runtimeClasses=classes)]).runtime_class == "gvisor"
    # a policy that names classes but no row for the type: the level's class, not the wasm default
    plain = policy(runtimeClasses={"semi-trusted": "gvisor"})
    assert grant(wasm, [plain]).runtime_class == "gvisor"


def test_policies_that_disagree_on_a_type_s_runtime_class_refuse_naming_both() -> None:
    wasm = descriptor(sandboxLevel="semi-trusted", implementation=WASM)
    loose = policy("loose", runtimeClasses={"byType": [{"type": "wasm", "semi-trusted": ""}]})
    strict = policy("strict", runtimeClasses={"semi-trusted": "gvisor"})
    error = refused(wasm, [loose, strict])
    assert error.reason is Reason.POLICIES_DISAGREE
    assert "semi-trusted wasm plugins" in str(error)
    assert "'loose' wants 'the default runtime'" in str(error)
