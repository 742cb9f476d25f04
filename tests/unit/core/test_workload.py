"""The rendered workload for every sandbox level, capability set and resource profile."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from tests import documents as d

from wayang_operator.api.descriptor import PluginDescriptor
from wayang_operator.api.resources import PluginPolicySpec
from wayang_operator.core.policy import NamedPolicy
from wayang_operator.core.workload import (
    Active,
    NotRunnable,
    Owner,
    plugin_index,
    render,
    runtime_class,
)

OWNER = Owner(name="redactor", namespace="team-a", uid="1234-uid")
DIGEST = "sha256:" + "ab" * 32
LEVELS = ["trusted", "semi-trusted", "untrusted"]
CAPABILITIES: list[list[str]] = [[], ["network"], ["llm_access", "gpu"], ["network", "filesystem"]]
PROFILES: list[dict[str, Any]] = [
    {},
    {"cpu": "500m", "memory": "256Mi", "timeout": 5000},
    {"cpu": "2", "memory": "4Gi", "gpu": 1, "ephemeralStorage": "1Gi"},
]


def descriptor(**spec: Any) -> PluginDescriptor:
    document = {
        **d.descriptor(),
        "implementation": {
            "type": "container",
            "coordinate": "registry.example.com/team/redactor:1.2",
            "digest": DIGEST,
        },
        **spec,
    }
    return PluginDescriptor.model_validate(document, by_alias=True, by_name=False)


def policy(name: str = "p", **spec: Any) -> NamedPolicy:
    return NamedPolicy(name, PluginPolicySpec.model_validate(spec, by_alias=True))


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in objects}


@pytest.mark.parametrize(
    ("level", "capabilities", "profile"), list(itertools.product(LEVELS, CAPABILITIES, PROFILES))
)
def test_every_level_capability_set_and_profile(
    level: str, capabilities: list[str], profile: dict[str, Any]
) -> None:
    spec = descriptor(sandboxLevel=level, capabilities=capabilities, resourceProfile=profile)
    objects = by_kind(render(OWNER, spec, [policy()]))
    assert list(objects) == [
        "ServiceAccount", "ConfigMap", "Deployment", "Service", "NetworkPolicy",
    ]  # fmt: skip
    for item in objects.values():
        owner = item["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["uid"], owner["controller"]) == ("Plugin", "1234-uid", True)
        assert item["metadata"]["namespace"] == "team-a"
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    # the approved bytes, whatever tag the coordinate carries
    assert container["image"] == f"registry.example.com/team/redactor@{DIGEST}"
    assert pod.get("runtimeClassName", "") == ("" if level == "trusted" else "gvisor")
    assert pod["automountServiceAccountToken"] is False
    assert objects["ServiceAccount"]["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    resources = container["resources"]
    assert resources["requests"]["cpu"] == resources["limits"]["cpu"] == profile.get("cpu", "100m")
    assert resources["limits"]["memory"] == profile.get("memory", "128Mi")
    assert resources["limits"].get("nvidia.com/gpu") == (
        str(profile["gpu"]) if profile.get("gpu") else None
    )
    assert resources["limits"].get("ephemeral-storage") == profile.get("ephemeralStorage")
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["WAYANG_TIMEOUT_MS"] == str(profile.get("timeout", 30000))
    egress = objects["NetworkPolicy"]["spec"]["egress"]
    if level == "untrusted":
        assert egress == [], "untrusted: no egress at all"
    elif "network" in capabilities:
        assert egress == [{}]
    else:
        assert all(rule.get("ports") for rule in egress), "only DNS without `network`"
    assert objects["NetworkPolicy"]["spec"]["policyTypes"] == ["Ingress", "Egress"]
    strategy = objects["Deployment"]["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxUnavailable"] == 0, "the old version serves until the new one is ready"


def test_the_descriptor_travels_in_the_config_map() -> None:
    spec = descriptor(configuration={"mode": "strict"})
    config = by_kind(render(OWNER, spec, [policy()]))["ConfigMap"]["data"]["plugin.json"]
    assert '"mode": "strict"' in config
    assert DIGEST in config


def test_secrets_only_where_policy_allows_them() -> None:
    spec = descriptor(requiredSecrets=["openai-key"])
    with pytest.raises(NotRunnable, match="allowSecrets: false"):
        render(OWNER, spec, [policy("strict")])
    with pytest.raises(NotRunnable, match="default policy"):
        render(OWNER, spec, [])
    pod = by_kind(render(OWNER, spec, [policy(allowSecrets=True)]))["Deployment"]["spec"][
        "template"
    ]["spec"]
    mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["/var/run/secrets/wayang/openai-key"]["readOnly"] is True
    assert {"name": "secret-openai-key", "secret": {"secretName": "openai-key"}} in pod["volumes"]


def test_policies_choose_the_runtime_class_and_must_agree() -> None:
    spec = descriptor(sandboxLevel="trusted")
    assert runtime_class(spec, [policy(runtimeClasses={"trusted": "kata"})]) == "kata"
    strict = descriptor(sandboxLevel="untrusted")
    lenient = policy("lenient", runtimeClasses={"untrusted": ""})
    with pytest.raises(NotRunnable, match="disagree"):
        runtime_class(strict, [policy("strict", runtimeClasses={"untrusted": "gvisor"}), lenient])


def test_scaled_to_zero_and_not_runnable_types() -> None:
    stopped = by_kind(render(OWNER, descriptor(), [policy()], replicas=0))
    assert stopped["Deployment"]["spec"]["replicas"] == 0
    maven = PluginDescriptor.model_validate(d.descriptor(), by_alias=True, by_name=False)
    with pytest.raises(NotRunnable, match="maven has no runtime"):
        render(OWNER, maven, [policy()])


def test_long_plugin_names_stay_valid_names() -> None:
    owner = Owner(name="x" * 63, namespace="team-a", uid="u")
    names = {o["metadata"]["name"] for o in render(owner, descriptor(), [policy()])}
    assert all(len(name) <= 63 for name in names)


def test_the_plugin_index_lists_active_plugins_with_their_endpoints() -> None:
    redactor = descriptor(id="acme/redactor", provides=["text.redact"], capabilities=["network"])
    summarizer = descriptor(id="acme/summarizer", version="2.0.0")
    index = plugin_index("team-a", [Active("summarizer", summarizer), Active("redactor", redactor)])
    assert index["metadata"] == {
        "name": "wayang-plugin-index",
        "namespace": "team-a",
        "labels": {"app.kubernetes.io/managed-by": "wayang-operator"},
    }
    entries = json.loads(index["data"]["plugins.json"])
    assert [e["id"] for e in entries] == ["acme/redactor", "acme/summarizer"]
    assert entries[0]["endpoint"] == "http://wayang-redactor.team-a.svc:80"
    assert entries[0]["provides"] == ["text.redact"]
    assert entries[0]["capabilities"] == ["network"]
    assert entries[1]["version"] == "2.0.0"
    assert entries[1]["digest"] == DIGEST
    assert json.loads(plugin_index("team-b", [])["data"]["plugins.json"]) == []
