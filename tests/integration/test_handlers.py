"""Handler wiring, in-process, against the kmock Kubernetes emulator: the real kopf indexes and
handlers run, watch events arrive, statuses are written back through the API wrapper. Fast, and
no evidence of API server behaviour (kmock ignores resourceVersion and selectors): that is the
e2e tier's job.

kmock 0.8 cannot serve `GET /api/v1/namespaces`, so the operator runs here as it does with
`WAYANG_WATCH_NAMESPACES=false`: the namespace-label handlers are not registered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import kmock
import kopf
import kubernetes
import pytest

from tests import documents as d
from wayang_operator.controller import handlers, scanning  # noqa: F401 - importing registers
from wayang_operator.controller.runtime import RUNTIME
from wayang_operator.core.approval import REQUESTER_ANNOTATION
from wayang_operator.settings import OperatorSettings

SERVER: list[str] = []


@kopf.on.login()
def _login_to_kmock(**_: Any) -> kopf.ConnectionInfo:
    return kopf.ConnectionInfo(server=SERVER[-1], insecure=True)


RESOURCES = {
    "v1/namespaces": ("Namespace", False),
    "apiextensions.k8s.io/v1/customresourcedefinitions": ("CustomResourceDefinition", False),
    "wayang.io/v1alpha1/plugins": ("Plugin", True),
    "wayang.io/v1alpha1/pluginapprovals": ("PluginApproval", True),
    "wayang.io/v1alpha1/pluginpolicies": ("PluginPolicy", False),
    "wayang.io/v1alpha1/scanreports": ("ScanReport", True),
    "v1/events": ("Event", True),
}
VERBS = {"get", "list", "watch", "create", "patch", "update", "delete"}


@pytest.fixture
async def cluster(kmock: kmock.KubernetesEmulator) -> AsyncIterator[kmock.KubernetesEmulator]:
    for key, (kind, namespaced) in RESOURCES.items():
        kmock.resources[key] = kmock.ResourceInfo(
            kind=kind, namespaced=namespaced, verbs=VERBS, subresources={"status"}
        )
    SERVER.append(str(kmock.url).rstrip("/"))
    configuration = kubernetes.client.Configuration()
    configuration.host = SERVER[-1]
    kubernetes.client.Configuration.set_default(configuration)
    RUNTIME._api = None
    RUNTIME.settings = OperatorSettings(watch_namespaces=False, standalone=True)
    stop = asyncio.Event()
    task = asyncio.create_task(kopf.operator(standalone=True, clusterwide=True, stop_flag=stop))
    try:
        yield kmock
    finally:
        stop.set()
        # kmock keeps watch streams open, so kopf may not notice the stop flag promptly
        done, _ = await asyncio.wait({task}, timeout=3)
        if not done:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def create(plural: str, namespace: str | None, body: dict[str, Any]) -> None:
    """Create through the API, as a user would, so the emulator streams a watch event."""
    api = kubernetes.client.CustomObjectsApi()
    if namespace is None:
        await asyncio.to_thread(
            api.create_cluster_custom_object, "wayang.io", "v1alpha1", plural, body
        )
    else:
        await asyncio.to_thread(
            api.create_namespaced_custom_object, "wayang.io", "v1alpha1", namespace, plural, body
        )


async def phase_of(cluster: kmock.KubernetesEmulator, name: str, wanted: str) -> dict[str, Any]:
    status: dict[str, Any] = {}
    for _ in range(200):
        try:
            body = dict(cluster.objects["wayang.io/v1alpha1/plugins", "team-a", name])
        except KeyError:
            body = {}
        status = dict(body.get("status") or {})
        if status.get("phase") == wanted:
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name} is not {wanted}: {status}")


async def test_plugin_awaits_then_an_approval_makes_it_ready(
    cluster: kmock.KubernetesEmulator,
) -> None:
    relaxed = {"signing": {"required": False}, "scan": {"required": False}}
    await create("pluginpolicies", None, {"metadata": {"name": "relaxed"}, "spec": relaxed})
    plugin = d.plugin()
    # the API server would fill in namespace, uid and generation; kmock does not
    plugin["metadata"].update(namespace="team-a", uid="u1", generation=1)
    await create("plugins", "team-a", plugin)
    await phase_of(cluster, "data-processor", "AwaitingApproval")
    approval = d.approval()
    approval["metadata"]["namespace"] = "team-a"
    approval["metadata"]["annotations"] = {
        REQUESTER_ANNOTATION: json.dumps({"username": "approver-1"})
    }
    await create("pluginapprovals", "team-a", approval)
    status = await phase_of(cluster, "data-processor", "Ready")
    assert status["approvers"] == ["approver-1"]


def _in_team_a(document: dict[str, Any], name: str, **spec: Any) -> dict[str, Any]:
    document["metadata"].update(name=name, namespace="team-a", uid=f"uid-{name}", generation=1)
    document["spec"].update(spec)
    return document


async def test_a_policy_change_re_evaluates_plugins(cluster: kmock.KubernetesEmulator) -> None:
    await create("plugins", "team-a", _in_team_a(d.plugin(), "data-processor"))
    blocked = await phase_of(cluster, "data-processor", "Blocked")  # no policy: signatures required
    assert blocked["lastError"]["type"] == "SecurityError"
    relaxed = {"signing": {"required": False}, "scan": {"required": False}}
    await create("pluginpolicies", None, {"metadata": {"name": "relaxed"}, "spec": relaxed})
    await phase_of(cluster, "data-processor", "AwaitingApproval")


async def test_a_provider_becoming_ready_resolves_its_dependant(
    cluster: kmock.KubernetesEmulator,
) -> None:
    auto = {
        "signing": {"required": False},
        "scan": {"required": False},
        "approval": {"autoApprove": [{"name": "all", "expression": "true"}]},
    }
    await create("pluginpolicies", None, {"metadata": {"name": "auto"}, "spec": auto})
    consumer = _in_team_a(d.plugin(), "consumer", id="acme/consumer", requires=["text.redact"])
    await create("plugins", "team-a", consumer)
    await phase_of(cluster, "consumer", "Unresolved")
    provider = _in_team_a(d.plugin(), "provider", id="acme/provider", provides=["text.redact"])
    await create("plugins", "team-a", provider)
    await phase_of(cluster, "provider", "Ready")
    await phase_of(cluster, "consumer", "Ready")
