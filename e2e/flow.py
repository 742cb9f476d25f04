"""The governance flow's steps, shared by the e2e modules: a tenant namespace with its own policy,
a sample plugin, approvals written as a given user, and waits for a phase or a reason.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from e2e.conftest import E2E_TENANT_LABEL, ROOT, Kube

EXAMPLE = ROOT / "examples" / "plugins" / "pii-redactor-wasm.yaml"
SAMPLES = ROOT / "runtime-images" / "python" / "samples"
BIN = Path(sys.executable).parent
"""The venv's scripts: wayang, kubectl-wayang."""


@contextlib.contextmanager
def tenant_of(kube: Kube, namespace: str) -> Iterator[str]:
    """The test namespace, with publisher rights for publisher-1 and approver-1, and a policy."""
    kube.run("label", "namespace", namespace, f"{E2E_TENANT_LABEL}={namespace}")
    for user in ("publisher-1", "approver-1"):
        kube.run(
            "create",
            "rolebinding",
            f"publisher-{user}",
            "--clusterrole=wayang-local:publisher",
            f"--user={user}",
            namespace=namespace,
        )
    set_policy(kube, namespace, {})
    yield namespace
    kube.run("delete", "pluginpolicy", namespace, "--ignore-not-found", check=False)


@contextlib.contextmanager
def running_tenant_of(kube: Kube, namespace: str) -> Iterator[str]:
    """`tenant_of` for tests whose plugins run: their Plugins are deleted at the end while the
    operator still runs (it holds a finalizer on each until its final audit entry)."""
    with tenant_of(kube, namespace) as name:
        yield name
        kube.run(
            "delete", "plugins", "--all", "--wait=true", "--timeout=90s",
            namespace=name, check=False,
        )  # fmt: skip


@contextlib.contextmanager
def scanned_tenant_of(kube: Kube, namespace: str) -> Iterator[str]:
    """`running_tenant_of` whose policy requires a passed scan before approval."""
    with running_tenant_of(kube, namespace) as name:
        set_policy(kube, name, {"scan": {"required": True}})
        yield name


def set_policy(kube: Kube, namespace: str, spec: dict[str, Any]) -> None:
    defaults = {"signing": {"required": False}, "scan": {"required": False}}
    kube.apply(
        {
            "apiVersion": "wayang.io/v1alpha1",
            "kind": "PluginPolicy",
            "metadata": {"name": namespace},
            "spec": {
                **defaults,
                **spec,
                "namespaceSelector": {"matchLabels": {E2E_TENANT_LABEL: namespace}},
            },
        }
    )


def plugin(name: str = "pii-redactor", **spec: Any) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    document["metadata"]["name"] = name
    document["spec"].update({"enabled": True, **spec})
    return document


def sample_plugin(
    name: str, sample: str, repository: str, digest: str, **spec: Any
) -> dict[str, Any]:
    """A Plugin of type container for one of the runtime's sample images, pinned by digest."""
    descriptor: dict[str, Any] = json.loads((SAMPLES / sample / "plugin.json").read_text())
    descriptor["implementation"] = {
        "type": "container",
        "coordinate": repository,
        "digest": digest,
        "entrypoint": descriptor["implementation"]["entrypoint"],
    }
    return plugin_document(name, descriptor, **spec)


def plugin_document(name: str, descriptor: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """The Plugin `name` with the descriptor as its spec, enabled, `spec` laid over it."""
    return {
        "apiVersion": "wayang.io/v1alpha1",
        "kind": "Plugin",
        "metadata": {"name": name},
        "spec": {**descriptor, "enabled": True, **spec},
    }


def approval_document(
    plugin_name: str, spec: dict[str, Any], name: str, decision: str = "Approve", **override: Any
) -> dict[str, Any]:
    """A PluginApproval for the plugin whose spec is given: its exact id, version and digest."""
    return {
        "apiVersion": "wayang.io/v1alpha1",
        "kind": "PluginApproval",
        "metadata": {"name": name},
        "spec": {
            "plugin": plugin_name,
            "pluginId": spec["id"],
            "version": spec["version"],
            "digest": spec["implementation"]["digest"],
            "decision": decision,
            **override,
        },
    }


def approval(
    kube: Kube,
    namespace: str,
    plugin_name: str,
    user: str,
    decision: str = "Approve",
    suffix: str = "",
    **override: Any,
) -> subprocess.CompletedProcess[str]:
    current = kube.get("plugin", plugin_name, namespace)["spec"]
    name = f"{plugin_name}-{user}-{decision.lower()}{suffix}"
    document = approval_document(plugin_name, current, name, decision, **override)
    return kube.apply(document, user=user, namespace=namespace, check=False)


def wayang(kube: Kube, *args: str, user: str = "approver-1") -> subprocess.CompletedProcess[str]:
    """`kubectl wayang ARGS` as `user` (a context of the cluster's kubeconfig, or "admin")."""
    command = [str(BIN / "kubectl-wayang"), *args, f"--kubeconfig={kube.kubeconfig}"]
    context = kube.user_contexts.get(user) if user != "admin" else kube.admin_context
    if context:
        command.append(f"--context={context}")
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=180)


def push(*args: str) -> dict[str, str]:
    """`wayang push` as a publisher runs it (to the local cluster's registry, say): the
    `key: value` lines it prints (`file digest`, `manifest digest`, `pinned`)."""
    result = subprocess.run(
        [str(BIN / "wayang"), "push", *args], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return pushed_lines(result.stdout)


def pushed_lines(out: str) -> dict[str, str]:
    """The top-level `key: value` lines of `wayang push`'s output (not the YAML snippet's)."""
    pairs = (line.split(": ", 1) for line in out.splitlines() if not line.startswith(" "))
    return {pair[0]: pair[1] for pair in pairs if len(pair) == 2}


def phase_becomes(
    kube: Kube, namespace: str, name: str, phase: str, timeout: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    plugin_status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        plugin_status = kube.get("plugin", name, namespace).get("status") or {}
        if plugin_status.get("phase") == phase:
            return plugin_status
        time.sleep(0.3)
    failing = [
        f"{condition['type']}={condition['status']} {condition.get('reason')}: "
        f"{condition.get('message')}"
        for condition in plugin_status.get("conditions", [])
        if condition.get("status") != "True"
    ]
    workload = json.dumps(plugin_status.get("workload"))
    raise AssertionError(
        f"{name} is {plugin_status.get('phase')}, not {phase}; not passed: {failing}; "
        f"workload: {workload}; status: {json.dumps(plugin_status)[:1500]}; "
        f"logs: {pod_logs(kube, namespace, name)}"
    )


def pod_logs(kube: Kube, namespace: str, plugin: str) -> str:
    """The tail of every container's log in the plugin's pods, so a failed wait says why."""
    found = kube.run(
        "logs",
        "-l",
        f"wayang.io/plugin={plugin}",
        "--all-containers",
        "--tail=30",
        "--prefix",
        namespace=namespace,
        check=False,
    )
    return (found.stdout + found.stderr)[-4000:]


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == kind)


def reason_becomes(kube: Kube, namespace: str, name: str, kind: str, reason: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    found: dict[str, Any] = {}
    while time.monotonic() < deadline:
        conditions = (kube.get("plugin", name, namespace).get("status") or {}).get(
            "conditions"
        ) or []
        found = next((c for c in conditions if c["type"] == kind), {})
        if found.get("reason") == reason:
            return found
        time.sleep(0.3)
    raise AssertionError(f"{name} {kind} is {found}, not {reason}")


def execute(
    kube: Kube,
    namespace: str,
    plugin: str,
    inputs: dict[str, Any],
    properties: dict[str, Any] | None = None,
    *,
    patience: float = 20,
) -> dict[str, Any]:
    """POST /execute to the plugin's Service (retrying only until kube-proxy routes it)."""
    service = kube.get("service", f"wayang-{plugin}", namespace)
    body = json.dumps({"inputs": inputs, "properties": properties or {}}).encode()
    address = f"http://{service['spec']['clusterIP']}/execute"
    deadline = time.monotonic() + patience
    while True:
        request = urllib.request.Request(
            address, data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                answer: dict[str, Any] = json.load(response)
                return answer
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def pods_of(kube: Kube, namespace: str, plugin: str) -> list[dict[str, Any]]:
    found = kube.run(
        "get", "pods", "-l", f"wayang.io/plugin={plugin}", "-o", "json", namespace=namespace
    )
    return list(json.loads(found.stdout)["items"])


def until(what: str, check: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)
