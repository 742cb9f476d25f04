"""The rendered workload for every sandbox level, capability set and resource profile: what the
policies grant (grants.py) and nothing more."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from tests import documents as d

from wayang_operator.api.descriptor import PluginDescriptor
from wayang_operator.api.resources import Peer, PluginPolicySpec
from wayang_operator.core.policy import NamedPolicy
from wayang_operator.core.workload import (
    METRICS_PORT,
    Active,
    NotRunnable,
    Owner,
    Telemetry,
    descriptor_key,
    plugin_index,
    recorded,
    render,
)

OWNER = Owner(name="redactor", namespace="team-a", uid="1234-uid")
DIGEST = "sha256:" + "ab" * 32
LEVELS = ["trusted", "semi-trusted", "untrusted"]
CAPABILITIES: list[list[str]] = [[], ["network"], ["llm_access", "gpu"], ["network", "filesystem"]]
LLM = {"egress": [{"cidr": "10.20.0.0/16", "ports": [{"port": 443}]}]}
GRANTING: dict[str, Any] = {
    "capabilities": {"network": {}, "filesystem": {}, "gpu": {}, "llm_access": LLM},
}
"""A policy that grants every capability of the matrix."""
OPENS_NETWORK = {"network", "llm_access"}
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
    if profile.get("gpu") and "gpu" not in capabilities:
        capabilities = [*capabilities, "gpu"]
    spec = descriptor(sandboxLevel=level, capabilities=capabilities, resourceProfile=profile)
    if level == "untrusted" and OPENS_NETWORK & set(capabilities):
        with pytest.raises(NotRunnable, match="untrusted plugins get no network"):
            render(OWNER, spec, [policy(**GRANTING)])
        return
    objects = by_kind(render(OWNER, spec, [policy(**GRANTING)]))
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
    dns = {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}
    if level == "untrusted":
        assert egress == [], "untrusted: no egress at all"
    elif "network" in capabilities:
        assert egress == [dns, {}]
    elif "llm_access" in capabilities:
        llm = {
            "to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}],
            "ports": [{"port": 443, "protocol": "TCP"}],
        }
        assert egress == [dns, llm], "DNS and the LLM endpoint the policy names, nothing else"
    else:
        assert egress == [dns], "only DNS without a capability that opens the network"
    policy_spec = objects["NetworkPolicy"]["spec"]
    assert policy_spec["policyTypes"] == ["Ingress", "Egress"]
    assert policy_spec["ingress"] == [
        {"from": [{"podSelector": {}}], "ports": [{"protocol": "TCP", "port": 8080}]}
    ], "callers: the plugin's own namespace only"
    writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
    assert writable == ({"/tmp", "/data"} if "filesystem" in capabilities else set()), (
        "a writable volume only with the filesystem capability"
    )
    strategy = objects["Deployment"]["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxUnavailable"] == 0, "the old version serves until the new one is ready"


def test_the_descriptor_travels_in_the_config_map() -> None:
    spec = descriptor(configuration={"mode": "strict"})
    objects = by_kind(render(OWNER, spec, [policy()]))
    data = objects["ConfigMap"]["data"]
    assert list(data) == [descriptor_key(spec)]
    config = data[descriptor_key(spec)]
    assert '"mode": "strict"' in config
    assert DIGEST in config
    volume = objects["Deployment"]["spec"]["template"]["spec"]["volumes"][0]
    assert volume["configMap"]["items"] == [{"key": descriptor_key(spec), "path": "plugin.json"}]
    assert "wayang.io/known-good" not in objects["Deployment"]["metadata"]["annotations"]


def test_the_known_good_descriptor_stays_beside_the_one_rolling_out() -> None:
    """Both descriptors are in the ConfigMap, each pod template mounts only its own (a pod of
    the serving version restarted mid-upgrade still loads its own), and the Deployment records
    the known-good one so that it can be rendered again."""
    good = descriptor(configuration={"mode": "strict"})
    new = descriptor(version="2.0.0", configuration={"mode": "fast"})
    objects = by_kind(render(OWNER, new, [policy()], known_good=good))
    data = objects["ConfigMap"]["data"]
    assert set(data) == {descriptor_key(good), descriptor_key(new)}
    assert '"mode": "strict"' in data[descriptor_key(good)]
    volume = objects["Deployment"]["spec"]["template"]["spec"]["volumes"][0]
    assert volume["configMap"]["items"] == [{"key": descriptor_key(new), "path": "plugin.json"}]
    record = objects["Deployment"]["metadata"]["annotations"]["wayang.io/known-good"]
    assert recorded(record) == good, "the record reads back as the same descriptor"
    assert recorded(None) is None
    assert recorded('{"id": "not a descriptor"}') is None
    assert recorded("{") is None
    first = by_kind(render(OWNER, good, [policy()]))["Deployment"]["metadata"]["annotations"]
    recorded_now = by_kind(render(OWNER, good, [policy()], known_good=good))["Deployment"]
    assert (
        recorded_now["metadata"]["annotations"]["wayang.io/rendered"] != first["wayang.io/rendered"]
    ), "recording the known-good is a change the operator applies"
    back = by_kind(render(OWNER, good, [policy()], known_good=good))
    template = back["Deployment"]["spec"]["template"]
    alone = by_kind(render(OWNER, good, [policy()]))["Deployment"]["spec"]["template"]
    assert template == alone, "a rollback is the earlier pod template again"


def test_secrets_only_where_the_policy_allow_list_names_them() -> None:
    spec = descriptor(
        requiredSecrets=["db/readonly"],
        properties=[{"name": "apiKey", "type": "string", "sensitive": True}],
        configuration={"apiKey": {"secretKeyRef": {"name": "llm-credentials", "key": "api-key"}}},
    )
    with pytest.raises(NotRunnable, match="Secret 'db-readonly' is not allowed by policy 'strict'"):
        render(OWNER, spec, [policy("strict")])
    with pytest.raises(NotRunnable, match="'llm-credentials' is not allowed"):
        render(OWNER, spec, [policy(secrets={"allowed": ["db-*"]})])
    allowed = policy(secrets={"allowed": ["db-*", "llm-credentials"]})
    pod = by_kind(render(OWNER, spec, [allowed]))["Deployment"]["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["/var/run/secrets/wayang/db-readonly"]["readOnly"] is True
    assert mounts["/var/run/secrets/wayang/configuration/llm-credentials"]["readOnly"] is True
    assert {"name": "secret-0", "secret": {"secretName": "db-readonly"}} in pod["volumes"]
    assert {
        "name": "secret-1",
        "secret": {
            "secretName": "llm-credentials",
            "items": [{"key": "api-key", "path": "api-key"}],
        },
    } in pod["volumes"], "only the key the configuration names"


def test_scaled_to_zero_and_not_runnable_types() -> None:
    stopped = by_kind(render(OWNER, descriptor(), [policy()], replicas=0))
    assert stopped["Deployment"]["spec"]["replicas"] == 0
    maven = PluginDescriptor.model_validate(d.descriptor(), by_alias=True, by_name=False)
    with pytest.raises(NotRunnable, match="no runtime host image for maven plugins"):
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


def test_a_new_configuration_rolls_the_pods_and_nothing_else_does() -> None:
    """The pods load the descriptor at start: a change of it changes their template (a rolling
    restart, the old pod serving until the new one is ready); an unchanged plugin changes
    nothing."""

    def template(spec: PluginDescriptor) -> dict[str, Any]:
        rendered = by_kind(render(OWNER, spec, [policy()]))["Deployment"]
        template: dict[str, Any] = rendered["spec"]["template"]
        return template

    before = template(descriptor(configuration={"mode": "fast"}))
    assert template(descriptor(configuration={"mode": "fast"})) == before
    after = template(descriptor(configuration={"mode": "careful"}))
    assert after != before
    key = "wayang.io/descriptor-hash"
    assert after["metadata"]["annotations"][key] != before["metadata"]["annotations"][key]


def test_the_index_carries_what_the_engine_sdk_needs_with_defaults_applied() -> None:
    """Ports, category, timeout and errorHandling: the spec's own, with the seed's defaults for
    the retry policy and the circuit breaker where the spec leaves them out."""
    bare = descriptor(id="acme/bare")
    tuned = descriptor(
        id="acme/tuned",
        category="executor",
        resourceProfile={"timeout": 5000},
        errorHandling={
            "retryPolicy": {"maxAttempts": 5, "backoff": "linear"},
            "fallbackNodeId": "acme/bare",
            "humanReviewThreshold": "WARNING",
            "circuitBreaker": {"failureThreshold": 2},
        },
    )
    index = plugin_index("team-a", [Active("tuned", tuned), Active("bare", bare)])
    by_id = {e["id"]: e for e in json.loads(index["data"]["plugins.json"])}
    default_retry = {
        "maxAttempts": 3,
        "backoff": "exponential",
        "initialDelayMs": 500,
        "maxDelayMs": 30000,
        "jitter": True,
    }
    default_breaker = {
        "enabled": True,
        "failureThreshold": 5,
        "successThreshold": 2,
        "timeoutMs": 60000,
    }
    plain = by_id["acme/bare"]
    assert plain["outputs"] == {"success": "cleaned", "error": "error"}
    assert plain["category"] == "node"
    assert plain["timeout"] == 30000
    assert plain["errorHandling"] == {
        "retryPolicy": default_retry,
        "humanReviewThreshold": "CRITICAL",
        "autoHealEnabled": False,
        "circuitBreaker": default_breaker,
    }
    entry = by_id["acme/tuned"]
    assert entry["category"] == "executor"
    assert entry["timeout"] == 5000
    assert entry["errorHandling"] == {
        "retryPolicy": default_retry | {"maxAttempts": 5, "backoff": "linear"},
        "fallbackNodeId": "acme/bare",
        "humanReviewThreshold": "WARNING",
        "autoHealEnabled": False,
        "circuitBreaker": default_breaker | {"failureThreshold": 2},
    }


def test_telemetry_opens_the_metrics_port_to_its_scrapers_and_the_collector_to_the_host() -> None:
    """The metrics port is reachable only from the configured scrapers (never /execute: that
    port stays the callers'), and a span collector is reachable on its own port; without
    telemetry neither rule exists."""
    monitoring = Peer.model_validate(
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    )
    collector = Peer.model_validate({"cidr": "10.96.50.0/24"})
    telemetry = Telemetry(
        metrics_from=(monitoring,),
        otlp_endpoint="http://otel-collector.observability:4318",
        otlp_to=(collector,),
    )
    spec = descriptor()
    objects = by_kind(render(OWNER, spec, [policy()], telemetry=telemetry))
    rules = objects["NetworkPolicy"]["spec"]
    scrape = rules["ingress"][-1]
    assert scrape["ports"] == [{"protocol": "TCP", "port": METRICS_PORT}]
    assert scrape["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    assert rules["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8080}]
    assert rules["egress"][-1] == {
        "to": [{"ipBlock": {"cidr": "10.96.50.0/24"}}],
        "ports": [{"protocol": "TCP", "port": 4318}],
    }
    container = objects["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability:4318"
    assert env["WAYANG_METRICS_PORT"] == str(METRICS_PORT)
    annotations = objects["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(METRICS_PORT)
    plain = by_kind(render(OWNER, spec, [policy()]))
    assert len(plain["NetworkPolicy"]["spec"]["ingress"]) == 1
    assert plain["NetworkPolicy"]["spec"]["egress"] == rules["egress"][:-1]
    plain_env = plain["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in {item["name"] for item in plain_env}
    assert Telemetry(otlp_endpoint="https://collector:14318").otlp_port == 14318


def test_the_pod_template_carries_a_hash_of_itself() -> None:
    """Pods inherit it, so an observation can tell whether they run the Deployment's template
    without waiting for the controller to observe a generation bumped by an annotation."""
    good = descriptor(configuration={"mode": "strict"})
    other = descriptor(configuration={"mode": "fast"})

    def stamped(spec: PluginDescriptor, **kwargs: Any) -> str:
        deployment = by_kind(render(OWNER, spec, [policy()], **kwargs))["Deployment"]
        return str(
            deployment["spec"]["template"]["metadata"]["annotations"]["wayang.io/template-hash"]
        )

    assert stamped(good) == stamped(good, known_good=good), "recording the known-good: same pods"
    assert stamped(good) != stamped(other), "another descriptor is another template"
