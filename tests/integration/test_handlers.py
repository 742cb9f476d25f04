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
import datetime
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kmock
import kopf
import kubernetes
import pytest
from e2e import scanfixtures
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests import documents as d
from wayang_operator import metrics, tracing
from wayang_operator.api.descriptor import PluginDescriptor
from wayang_operator.controller import handlers, scanning  # noqa: F401 - importing registers
from wayang_operator.controller.runtime import RUNTIME
from wayang_operator.core.approval import REQUESTER_ANNOTATION
from wayang_operator.core.surface import surface_of
from wayang_operator.images.oci import Image
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


@contextlib.asynccontextmanager
async def running(settings: OperatorSettings) -> AsyncIterator[None]:
    """The operator in-process, with fresh per-process state (as after a restart)."""
    RUNTIME._api = None
    RUNTIME._scanner = None
    RUNTIME.settings = settings
    stop = asyncio.Event()
    task = asyncio.create_task(kopf.operator(standalone=True, clusterwide=True, stop_flag=stop))
    try:
        yield
    finally:
        stop.set()
        # kmock keeps watch streams open, so kopf may not notice the stop flag promptly
        done, _ = await asyncio.wait({task}, timeout=3)
        if not done:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest.fixture
async def emulator(kmock: kmock.KubernetesEmulator) -> kmock.KubernetesEmulator:
    for key, (kind, namespaced) in RESOURCES.items():
        kmock.resources[key] = kmock.ResourceInfo(
            kind=kind, namespaced=namespaced, verbs=VERBS, subresources={"status"}
        )
    SERVER.append(str(kmock.url).rstrip("/"))
    configuration = kubernetes.client.Configuration()
    configuration.host = SERVER[-1]
    kubernetes.client.Configuration.set_default(configuration)
    return kmock


@pytest.fixture
async def cluster(emulator: kmock.KubernetesEmulator) -> AsyncIterator[kmock.KubernetesEmulator]:
    async with running(OperatorSettings(watch_namespaces=False, standalone=True, workloads=False)):
        yield emulator


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
    approval["spec"]["surface"] = surface_of_document(plugin)  # as the webhook stamps it
    await create("pluginapprovals", "team-a", approval)
    status = await phase_of(cluster, "data-processor", "Ready")
    assert status["approvers"] == ["approver-1"]
    posted = await events_of(cluster, "data-processor", until="Ready")
    assert [(e["type"], e["reason"]) for e in posted] == [
        ("Normal", "AwaitingApproval"),
        ("Normal", "Approved"),
        ("Normal", "Ready"),
    ]
    approved = posted[1]
    assert approved["involvedObject"]["kind"] == "Plugin"
    assert approved["involvedObject"]["uid"] == "u1"
    assert approved["message"].startswith("Ready (Approved): approved by approver-1")


async def events_of(
    cluster: kmock.KubernetesEmulator, plugin: str, *, until: str
) -> list[dict[str, Any]]:
    """The Events posted on a Plugin of team-a, in order, once one with reason `until` is there
    (kopf posts them in the background). Read from the requests: kmock cannot generate names,
    so it stores only the first Event (kopf's are all `generateName: kopf-event-`)."""
    posted: list[dict[str, Any]] = []
    for _ in range(200):
        posted = [
            dict(request.data)
            for request in list(cluster)
            if request.method == kmock.method.POST
            and request.url.path == "/api/v1/namespaces/team-a/events"
            and isinstance(request.data, dict)
            and request.data.get("involvedObject", {}).get("name") == plugin
        ]
        if any(event["reason"] == until for event in posted):
            return posted
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {until} Event for {plugin}: {posted}")


async def test_each_reconcile_is_a_trace_continuing_the_plugins_traceparent(
    cluster: kmock.KubernetesEmulator,
) -> None:
    """The spans of the operator's decisions, recorded in memory: every reconcile of a Plugin
    annotated with a traceparent is a child of that trace, and evaluating, auditing and writing
    the status are children of the reconcile; the evaluation names the phase and each gate."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    RUNTIME.tracer = tracing.tracer_of(provider)
    try:
        relaxed = {"signing": {"required": False}, "scan": {"required": False}}
        await create("pluginpolicies", None, {"metadata": {"name": "relaxed"}, "spec": relaxed})
        plugin = _in_team_a(d.plugin(), "data-processor")
        plugin["metadata"]["uid"] = "uid-traced"  # the operator remembers what it wrote per uid
        trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
        plugin["metadata"]["annotations"] = {
            tracing.TRACEPARENT_ANNOTATION: f"00-{trace_id}-{parent_id}-01"
        }
        await create("plugins", "team-a", plugin)
        await phase_of(cluster, "data-processor", "AwaitingApproval")
    finally:
        RUNTIME.tracer = trace.NoOpTracer()
    spans = exporter.get_finished_spans()
    reconciles = [s for s in spans if s.name == "wayang.reconcile"]
    assert reconciles, [s.name for s in spans]
    written = next(s for s in reconciles if (s.attributes or {}).get("wayang.outcome") == "written")
    assert f"{written.context.trace_id:032x}" == trace_id, "the Plugin's trace continues"
    assert written.parent is not None
    assert f"{written.parent.span_id:016x}" == parent_id
    assert (written.attributes or {})["wayang.plugin"] == "data-processor"
    children = {
        s.name: s
        for s in spans
        if s.parent is not None and s.parent.span_id == written.context.span_id
    }
    assert {"wayang.evaluate", "wayang.audit", "wayang.status"} <= set(children), list(children)
    evaluated = children["wayang.evaluate"].attributes or {}
    assert evaluated["wayang.phase"] == "AwaitingApproval"
    assert evaluated["wayang.gate.Approved"] == "False AwaitingApproval"
    assert (children["wayang.audit"].attributes or {})["wayang.audit.event"] == "PLUGIN_REGISTERED"


async def test_a_rejection_posts_a_warning(cluster: kmock.KubernetesEmulator) -> None:
    relaxed = {"signing": {"required": False}, "scan": {"required": False}}
    await create("pluginpolicies", None, {"metadata": {"name": "relaxed"}, "spec": relaxed})
    await create("plugins", "team-a", _in_team_a(d.plugin(), "data-processor"))
    await phase_of(cluster, "data-processor", "AwaitingApproval")
    rejection = d.approval()
    rejection["metadata"].update(name="no", namespace="team-a")
    rejection["metadata"]["annotations"] = {
        REQUESTER_ANNOTATION: json.dumps({"username": "approver-2"})
    }
    rejection["spec"]["decision"] = "Reject"
    await create("pluginapprovals", "team-a", rejection)
    await phase_of(cluster, "data-processor", "Rejected")
    posted = await events_of(cluster, "data-processor", until="Rejected")
    rejected = next(e for e in posted if e["reason"] == "Rejected")
    assert rejected["type"] == "Warning"
    assert "rejected by approver-2" in rejected["message"]
    assert ("Normal", "AwaitingApproval") in [(e["type"], e["reason"]) for e in posted]


def surface_of_document(plugin: dict[str, Any]) -> dict[str, Any]:
    """The approved surface the admission webhook copies into an approval (kmock runs no
    webhooks)."""
    descriptor = PluginDescriptor.model_validate(plugin["spec"], by_alias=True, by_name=False)
    return surface_of(descriptor).model_dump(mode="json", by_alias=True, exclude_none=True)


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


@pytest.fixture(scope="module")
def scan_setup(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[OperatorSettings, dict[str, Image]]:
    """Settings for real scans: local archives named by digest, the test database, offline."""
    folder = tmp_path_factory.mktemp("scans")
    images = scanfixtures.images(folder / "images")
    env = scanfixtures.offline_scanning(images.values(), folder)
    offline = {name.removeprefix("WAYANG_").lower(): value for name, value in env.items()}
    settings = OperatorSettings.model_validate(
        {"watch_namespaces": False, "standalone": True, "workloads": False, **offline}
    )
    return settings, images


def container_plugin(name: str, image: Image) -> dict[str, Any]:
    return _in_team_a(
        d.plugin(),
        name,
        id=f"acme/{name}",
        implementation={
            "type": "container",
            "coordinate": image.name.rsplit(":", 1)[0],
            "digest": image.digest,
        },
    )


def trivy_runs() -> float:
    return sum(
        sample.value
        for metric in metrics.SCANS.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


async def test_one_scan_per_digest_shared_by_plugins_and_kept_across_restarts(
    emulator: kmock.KubernetesEmulator, scan_setup: tuple[OperatorSettings, dict[str, Image]]
) -> None:
    settings, images = scan_setup
    auto = {
        "signing": {"required": False},
        "approval": {"autoApprove": [{"name": "all", "expression": "scan.highCount == 0"}]},
    }
    before = trivy_runs()
    async with running(settings):
        await create("pluginpolicies", None, {"metadata": {"name": "auto"}, "spec": auto})
        for name in ("clean-a", "clean-b", "clean-c"):
            await create("plugins", "team-a", container_plugin(name, images["clean"]))
        await create("plugins", "team-a", container_plugin("vulnerable", images["vulnerable"]))
        await create("plugins", "team-a", container_plugin("leaky", images["leaky"]))
        for name in ("clean-a", "clean-b", "clean-c"):
            ready = await phase_of(emulator, name, "Ready")
            scanned = next(c for c in ready["conditions"] if c["type"] == "Scanned")
            assert scanned["reason"] == "ScanPassed"
        blocked = await phase_of(emulator, "vulnerable", "Blocked")
        assert blocked["reviewStatus"] == "rejected"
        assert blocked["lastError"]["type"] == "SecurityError"
        assert scanfixtures.FIXED_CVE in blocked["lastError"]["message"]
        leaky = await phase_of(emulator, "leaky", "Blocked")
        assert "secret found: aws-access-key-id" in leaky["lastError"]["message"]
    assert trivy_runs() - before == 3  # three digests, five plugins
    reports = {
        name: dict(body)
        for (resource, _, name), body in emulator.objects.items()
        if resource == "wayang.io/v1alpha1/scanreports"
    }
    assert set(reports) == {image.digest.replace(":", "-") for image in images.values()}
    assert all(report["status"]["runs"] == 1 for report in reports.values())

    async with running(settings):  # a restart: the reports are the cache, nothing is scanned
        await create("plugins", "team-a", container_plugin("clean-d", images["clean"]))
        await phase_of(emulator, "clean-d", "Ready")
    assert trivy_runs() - before == 3


def scan_report(emulator: kmock.KubernetesEmulator, image: Image) -> dict[str, Any]:
    key = ("wayang.io/v1alpha1/scanreports", "team-a", image.digest.replace(":", "-"))
    return dict(emulator.objects[key])


async def eventually(check: Any, what: str) -> None:
    for _ in range(300):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(what)


async def test_a_new_database_rescans_and_a_timeout_is_an_error_payload(
    emulator: kmock.KubernetesEmulator,
    scan_setup: tuple[OperatorSettings, dict[str, Image]],
    tmp_path: Path,
) -> None:
    base, images = scan_setup
    cache = scanfixtures.vulnerability_db(tmp_path / "cache")
    settings = base.model_copy(update={"scan_cache_dir": cache, "scan_check_interval": 0.2})
    relaxed = {"signing": {"required": False}}
    async with running(settings):
        await create("pluginpolicies", None, {"metadata": {"name": "scan"}, "spec": relaxed})
        await create("plugins", "team-a", container_plugin("clean", images["clean"]))
        await phase_of(emulator, "clean", "AwaitingApproval")
        first = scan_report(emulator, images["clean"])["status"]
        assert first["runs"] == 1
        later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=5)
        scanfixtures.vulnerability_db(cache, updated_at=later)  # a database update arrives
        await eventually(
            lambda: scan_report(emulator, images["clean"])["status"]["runs"] == 2,
            "no rescan after the database changed",
        )
        status = scan_report(emulator, images["clean"])["status"]
        assert status["databaseUpdatedAt"] != first["databaseUpdatedAt"]

    impatient = settings.model_copy(update={"scan_timeout": 0.001})
    async with running(impatient):
        await create("plugins", "team-a", container_plugin("vulnerable", images["vulnerable"]))
        blocked = await phase_of(emulator, "vulnerable", "Blocked")
        assert blocked["lastError"]["type"] == "Timeout"
        scanned = next(c for c in blocked["conditions"] if c["type"] == "Scanned")
        assert scanned["reason"] == "ScanError"
        assert "did not finish within 0.001s" in scanned["message"]
        error = scan_report(emulator, images["vulnerable"])["status"]["lastError"]
        assert error["retryable"] is True
        assert error["originNode"] == "wayang-operator/scanner"
