"""The governance flow's steps, shared by the e2e modules: a tenant namespace with its own policy,
a sample plugin, approvals written as a given user, and waits for a phase or a reason.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import yaml

from e2e.conftest import ROOT, Kube

EXAMPLE = ROOT / "examples" / "plugins" / "pii-redactor-wasm.yaml"


@contextlib.contextmanager
def tenant_of(kube: Kube, namespace: str) -> Iterator[str]:
    """The test namespace, with publisher rights for publisher-1 and approver-1, and a policy."""
    kube.run("label", "namespace", namespace, f"wayang-e2e/tenant={namespace}")
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
                "namespaceSelector": {"matchLabels": {"wayang-e2e/tenant": namespace}},
            },
        }
    )


def plugin(name: str = "pii-redactor", **spec: Any) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    document["metadata"]["name"] = name
    document["spec"].update({"enabled": True, **spec})
    return document


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
    spec = {
        "plugin": plugin_name,
        "pluginId": current["id"],
        "version": current["version"],
        "digest": current["implementation"]["digest"],
        "decision": decision,
        **override,
    }
    name = f"{plugin_name}-{user}-{decision.lower()}{suffix}"
    document = {
        "apiVersion": "wayang.io/v1alpha1",
        "kind": "PluginApproval",
        "metadata": {"name": name},
        "spec": spec,
    }
    return kube.apply(document, user=user, namespace=namespace, check=False)


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
    raise AssertionError(
        f"{name} is {plugin_status.get('phase')}, not {phase}: {json.dumps(plugin_status)[:1500]}"
    )


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
