"""What was approved is what runs, on the local node, tried as a tenant would: someone with
Kubernetes' built-in `edit` role in the plugin's namespace (`mallory`, impersonated by the
admin), and a caller in another namespace.

The chart's ValidatingAdmissionPolicies (templates/admissionpolicy.yaml, rendered with `helm
template` for this test's operator, which runs as the admin) lock what the operator renders: the
attacks on the Deployment, the NetworkPolicy, the plugin index, look-alike pods and Services and
ScanReports are each refused, and the plugin keeps running as approved. A grown surface keeps
the approved render serving; a sensitive value reaches the plugin from its Secret and appears
nowhere else; a call from another namespace does not get through.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from e2e.conftest import ROOT, Kube
from e2e.flow import (
    approval,
    condition,
    execute,
    phase_becomes,
    pods_of,
    reason_becomes,
    running_tenant_of,
    sample_plugin,
    set_policy,
    until,
)
from e2e.localcluster import node as localnode
from e2e.localcluster.build import ensure_built
from e2e.operator_process import Operator, audit_export, with_audit_log
from e2e.runtimeimages import sample_images

AUDIT_NAMESPACE = "wayang-e2e-attacks-node-audit"
CHART = ROOT / "charts" / "wayang-operator"
READY = 180
MALLORY = "mallory"
GATEWAY = "10.88.0.1"
"""The host on the node's pod bridge, where pods reach a listener of the test."""
CANARY = "Zq7x9Wk2"
ROTATED = "Rt4m8Yp1"
"""The canary's successor when the Secret is rotated."""
"""A sensitive value (the echo sample's suffix allows at most 8 characters)."""


@pytest.fixture(scope="module")
def images(node: localnode.Node, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return sample_images(node, tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def admission_policies(kube: Kube) -> Iterator[None]:
    """The chart's policies, trusting this test's operator (the admin user)."""
    who = json.loads(kube.run("auth", "whoami", "-o", "json").stdout)["status"]["userInfo"]
    helm = ensure_built(["helm"])["helm"]
    rendered = subprocess.run(
        [
            str(helm),
            "template",
            "e2e",
            str(CHART),
            "--namespace",
            "wayang-system",
            "--show-only",
            "templates/admissionpolicy.yaml",
            "--set",
            f"admissionPolicy.operatorUsers={{{who['username']}}}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    kube.run("apply", "-f", "-", stdin=rendered)
    try:
        yield
    finally:
        kube.run("delete", "-f", "-", "--ignore-not-found", stdin=rendered, check=False)


@pytest.fixture(scope="module")
def operator(
    kube: Kube, node: localnode.Node, admission_policies: None, tmp_path_factory: Any
) -> Iterator[Operator]:
    env = {"WAYANG_WORKLOADS": "true", "WAYANG_WORKLOAD_CHECK_INTERVAL": "1"}
    folder = tmp_path_factory.mktemp("operator")
    with with_audit_log(kube, folder, AUDIT_NAMESPACE, env) as running:
        yield running


@pytest.fixture
def tenant(kube: Kube, namespace: str, operator: Operator) -> Iterator[str]:
    with running_tenant_of(kube, namespace) as name:
        kube.run(
            "create", "rolebinding", "mallory-edit", "--clusterrole=edit", f"--user={MALLORY}",
            namespace=name,
        )  # fmt: skip
        yield name


def as_mallory(kube: Kube, tenant: str, *args: str, stdin: str | None = None) -> str:
    """A command as the tenant with `edit`; returns its error (it must be refused)."""
    result = kube.run(*args, "--as", MALLORY, namespace=tenant, stdin=stdin, check=False)
    assert result.returncode != 0, f"{' '.join(args)} was allowed: {result.stdout}"
    return result.stderr


def publish(
    kube: Kube, tenant: str, document: dict[str, Any], approver: str = "approver-1"
) -> dict[str, Any]:
    name = document["metadata"]["name"]
    kube.apply(document, user="publisher-1", namespace=tenant)
    phase_becomes(kube, tenant, name, "AwaitingApproval")
    assert approval(kube, tenant, name, approver).returncode == 0
    return phase_becomes(kube, tenant, name, "Ready", timeout=READY)


def echo(images: dict[str, Any], **spec: Any) -> dict[str, Any]:
    image = images["echo"]
    return sample_plugin("echo", "echo", image.repository, image.digest, **spec)


def test_what_the_operator_rendered_is_locked_against_a_tenant_with_edit(
    kube: Kube, tenant: str, images: dict[str, Any]
) -> None:
    publish(kube, tenant, echo(images))
    deployment = kube.get("deployment", "wayang-echo", tenant)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["runtimeClassName"] == "gvisor"
    patches = {
        "image swapped": [
            {
                "op": "replace",
                "path": "/spec/template/spec/containers/0/image",
                "value": "localhost/evil:latest",
            }
        ],
        "runtimeClassName removed": [
            {"op": "remove", "path": "/spec/template/spec/runtimeClassName"}
        ],
        "hostPath added": [
            {
                "op": "add",
                "path": "/spec/template/spec/volumes/-",
                "value": {"name": "host", "hostPath": {"path": "/"}},
            }
        ],
    }
    for what, patch in patches.items():
        said = as_mallory(
            kube,
            tenant,
            "patch",
            "deployment",
            "wayang-echo",
            "--type=json",
            "-p",
            json.dumps(patch),
        )
        assert "only the operator changes or deletes it" in said, what
    said = as_mallory(kube, tenant, "delete", "deployment", "wayang-echo")
    assert "rendered by the Wayang operator" in said
    opened = [{"op": "replace", "path": "/spec/egress", "value": [{}]}]
    said = as_mallory(
        kube,
        tenant,
        "patch",
        "networkpolicy",
        "wayang-echo",
        "--type=json",
        "-p",
        json.dumps(opened),
    )
    assert "only the operator changes or deletes it" in said
    extra = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "open-all"},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]},
    }
    said = as_mallory(kube, tenant, "apply", "-f", "-", stdin=json.dumps(extra))
    assert "may select Wayang plugin pods" in said
    sparing = json.loads(json.dumps(extra))
    sparing["spec"]["podSelector"] = {
        "matchExpressions": [{"key": "wayang.io/plugin", "operator": "DoesNotExist"}]
    }
    allowed = kube.run(
        "apply",
        "-f",
        "-",
        "--as",
        MALLORY,
        namespace=tenant,
        stdin=json.dumps(sparing),
        check=False,
    )
    assert allowed.returncode == 0, "a policy that spares plugin pods is the tenant's business"
    index = {"data": {"plugins.json": "[]"}}
    said = as_mallory(
        kube,
        tenant,
        "patch",
        "configmap",
        "wayang-plugin-index",
        "--type=merge",
        "-p",
        json.dumps(index),
    )
    assert "only the operator changes or deletes it" in said
    said = as_mallory(
        kube,
        tenant,
        "patch",
        "configmap",
        "wayang-echo",
        "--type=merge",
        "-p",
        json.dumps({"data": {"evil.py": "print(1)"}}),
    )
    assert "only the operator changes or deletes it" in said
    lookalike = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "lookalike"},
        "spec": {
            "selector": {"matchLabels": {"wayang.io/plugin": "echo"}},
            "template": {
                "metadata": {"labels": {"wayang.io/plugin": "echo"}},
                "spec": {"containers": [{"name": "c", "image": "localhost/evil:1"}]},
            },
        },
    }
    assert "claims a Wayang plugin" in as_mallory(
        kube, tenant, "apply", "-f", "-", stdin=json.dumps(lookalike)
    )
    pod_claim = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "claim", "labels": {"wayang.io/plugin": "echo"}},
        "spec": {"containers": [{"name": "c", "image": "localhost/evil:1"}]},
    }
    assert "claims a Wayang plugin" in as_mallory(
        kube, tenant, "apply", "-f", "-", stdin=json.dumps(pod_claim)
    )
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "sneaky"},
        "spec": {"selector": {"wayang.io/plugin": "echo"}, "ports": [{"port": 80}]},
    }
    assert "claims a Wayang plugin" in as_mallory(
        kube, tenant, "apply", "-f", "-", stdin=json.dumps(service)
    )
    # what the operator rendered is as it rendered it, and the plugin still answers
    after = kube.get("deployment", "wayang-echo", tenant)
    assert after["spec"]["template"] == deployment["spec"]["template"]
    assert execute(kube, tenant, "echo", {"text": "hi"})["output"]["text"] == "HI!"
    # a restart is fine: deleting the plugin's pod is allowed, the Deployment makes a new one
    [old] = pods_of(kube, tenant, "echo")
    kube.run(
        "delete", "pod", old["metadata"]["name"], "--as", MALLORY, "--wait=false", namespace=tenant
    )
    until(
        "a new pod",
        lambda: [
            p
            for p in pods_of(kube, tenant, "echo")
            if p["metadata"]["name"] != old["metadata"]["name"]
        ],
        timeout=60,
    )
    phase_becomes(kube, tenant, "echo", "Ready", timeout=READY)


def test_a_grown_surface_leaves_the_approved_render_serving(
    kube: Kube, tenant: str, images: dict[str, Any]
) -> None:
    approved = publish(kube, tenant, echo(images))
    before = kube.get("deployment", "wayang-echo", tenant)
    grown = echo(images, sandboxLevel="trusted", capabilities=["network"])
    kube.apply(grown, user="publisher-1", namespace=tenant)
    waiting = phase_becomes(kube, tenant, "echo", "AwaitingApproval")
    workload = condition(waiting, "WorkloadAvailable")
    assert workload["reason"] == "ServingPreviousVersion"
    assert "the grown surface" in workload["message"]
    after = kube.get("deployment", "wayang-echo", tenant)
    assert after["spec"]["template"] == before["spec"]["template"], "nothing unapproved rendered"
    assert after["spec"]["template"]["spec"]["runtimeClassName"] == "gvisor"
    assert execute(kube, tenant, "echo", {"text": "still"})["output"]["text"] == "STILL!"
    assert approval(kube, tenant, "echo", "approver-2").returncode == 0
    ready = phase_becomes(kube, tenant, "echo", "Ready", timeout=READY)
    assert ready["approvedSurface"] != approved["approvedSurface"]
    until(
        "the approved grown surface rendered",
        lambda: (
            "runtimeClassName"
            not in kube.get("deployment", "wayang-echo", tenant)["spec"]["template"]["spec"]
        ),
    )


def test_a_sensitive_value_reaches_the_plugin_and_nowhere_else(
    kube: Kube, tenant: str, images: dict[str, Any], operator: Operator
) -> None:
    set_policy(kube, tenant, {"secrets": {"allowed": ["echo-secret"]}})
    plugin = echo(images)
    plugin["spec"]["properties"][0] |= {"sensitive": True}
    plugin["spec"]["properties"][0].pop("default", None)
    plugin["spec"]["configuration"] = {
        "suffix": {"secretKeyRef": {"name": "echo-secret", "key": "suffix"}}
    }
    kube.apply(plugin, user="publisher-1", namespace=tenant)
    phase_becomes(kube, tenant, "echo", "AwaitingApproval")
    assert approval(kube, tenant, "echo", "approver-1").returncode == 0
    missing = reason_becomes(kube, tenant, "echo", "WorkloadAvailable", "SecretMissing")
    assert "Secret 'echo-secret'" in missing["message"]
    kube.run(
        "create",
        "secret",
        "generic",
        "echo-secret",
        f"--from-literal=suffix={CANARY}",
        namespace=tenant,
    )
    phase_becomes(kube, tenant, "echo", "Ready", timeout=READY)
    assert execute(kube, tenant, "echo", {"text": "hi"})["output"]["text"] == "HI" + CANARY
    places = {
        "the Plugin (spec and status)": kube.run(
            "get", "plugin", "echo", "-o", "yaml", namespace=tenant
        ).stdout,
        "Events": kube.run("get", "events", "-o", "yaml", namespace=tenant).stdout,
        "ConfigMaps (descriptor, plugin index)": kube.run(
            "get", "configmaps", "-o", "yaml", namespace=tenant
        ).stdout,
        "PluginApprovals": kube.run(
            "get", "pluginapprovals", "-o", "yaml", namespace=tenant
        ).stdout,
        "the operator's logs": operator.logs(),
        "the audit log": json.dumps(audit_export(kube, AUDIT_NAMESPACE)),
    }
    for where, text in places.items():
        assert CANARY not in text, f"the sensitive value is in {where}"
    # rotating the Secret reaches the running plugin without a restart (the host re-reads the
    # volume the kubelet updates in place): the same pod answers with the new value
    [serving] = [pod["metadata"]["name"] for pod in pods_of(kube, tenant, "echo")]
    rotated = {"stringData": {"suffix": ROTATED}}
    kube.run("patch", "secret", "echo-secret", "-p", json.dumps(rotated), namespace=tenant)
    until(
        "the rotated Secret to reach the plugin (the kubelet's sync period)",
        lambda: execute(kube, tenant, "echo", {"text": "hi"})["output"]["text"] == "HI" + ROTATED,
        timeout=READY,
    )
    assert [pod["metadata"]["name"] for pod in pods_of(kube, tenant, "echo")] == [serving]
    assert ROTATED not in kube.run("get", "plugin", "echo", "-o", "yaml", namespace=tenant).stdout


@contextlib.contextmanager
def another_tenant(kube: Kube, stem: str) -> Iterator[str]:
    name = f"{stem}-{uuid.uuid4().hex[:5]}"
    kube.run("create", "namespace", name)
    try:
        with running_tenant_of(kube, name) as made:
            yield made
    finally:
        kube.run("delete", "namespace", name, "--wait=false", check=False)


def test_a_call_from_another_namespace_does_not_get_through(
    kube: Kube, tenant: str, images: dict[str, Any]
) -> None:
    publish(kube, tenant, echo(images))
    address = f"{kube.get('service', 'wayang-echo', tenant)['spec']['clusterIP']}:80"
    introspect = images["introspect"]
    caller = sample_plugin(
        "caller",
        "introspect",
        introspect.repository,
        introspect.digest,
        sandboxLevel="trusted",
        capabilities=["network"],
    )
    publish(kube, tenant, caller)
    inside = execute(kube, tenant, "caller", {"target": address})["output"]
    assert inside["egress"] == "ok", "a caller in the plugin's own namespace gets through"
    with another_tenant(kube, "e2e-outsider") as outsider:
        publish(kube, outsider, caller)
        outside = execute(kube, outsider, "caller", {"target": address})["output"]
        assert outside["egress"] != "ok", "a caller from another namespace does not"


@pytest.fixture
def listeners() -> Iterator[tuple[str, str]]:
    """Two TCP servers on the host, reachable from pods at the bridge's gateway address."""
    servers = [socket.create_server(("0.0.0.0", 0)) for _ in range(2)]
    stop = threading.Event()

    def accept(server: socket.socket) -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                connection, _ = server.accept()
                connection.close()

    threads = [threading.Thread(target=accept, args=(s,), daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    yield tuple(f"{GATEWAY}:{s.getsockname()[1]}" for s in servers)  # type: ignore[misc]
    stop.set()
    for thread, server in zip(threads, servers, strict=True):
        thread.join()
        server.close()


def test_a_destination_capability_opens_its_destinations_and_nothing_else(
    kube: Kube, tenant: str, images: dict[str, Any], listeners: tuple[str, str]
) -> None:
    granted, other = listeners
    host, port = granted.rsplit(":", 1)
    rule = {"cidr": f"{host}/32", "ports": [{"port": int(port)}]}
    set_policy(kube, tenant, {"capabilities": {"llm_access": {"egress": [rule]}}})
    introspect = images["introspect"]
    asking = sample_plugin(
        "llm-user", "introspect", introspect.repository, introspect.digest,
        sandboxLevel="semi-trusted", capabilities=["llm_access"],
    )  # fmt: skip
    publish(kube, tenant, asking)
    assert execute(kube, tenant, "llm-user", {"target": granted})["output"]["egress"] == "ok"
    refused = execute(kube, tenant, "llm-user", {"target": other})["output"]["egress"]
    assert refused != "ok", "llm_access opens the LLM endpoint the policy names, no other"


def test_a_render_the_api_server_refuses_is_a_status(
    kube: Kube, tenant: str, images: dict[str, Any]
) -> None:
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "no-deployments"},
        "spec": {"hard": {"count/deployments.apps": "0"}},
    }
    kube.apply(quota, namespace=tenant)
    kube.apply(echo(images), user="publisher-1", namespace=tenant)
    phase_becomes(kube, tenant, "echo", "AwaitingApproval")
    assert approval(kube, tenant, "echo", "approver-1").returncode == 0
    refused = reason_becomes(kube, tenant, "echo", "WorkloadAvailable", "RenderRefused")
    assert "Deployment wayang-echo" in refused["message"]
    assert "exceeded quota" in refused["message"]
    kube.run("delete", "resourcequota", "no-deployments", namespace=tenant)
    # any change of the plugin sends its objects again at once (else after 5 minutes)
    kube.apply(echo(images, description="after the quota"), user="publisher-1", namespace=tenant)
    phase_becomes(kube, tenant, "echo", "Ready", timeout=READY)
