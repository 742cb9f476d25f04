"""Approved plugins really run: the operator (with WAYANG_WORKLOADS on) renders their workloads on
the local node, and every claim is checked from where it matters.

- Isolation from inside the pod, through the product's own execute path: the `introspect`
  sample reports the kernel it sees (gVisor emulates 4.4.0; runc shares the host's), whether a
  token is mounted, whether it can connect out, its memory limit, its user, whether its root
  filesystem is writable.
- Calls go through the plugin's Service (ClusterIP, programmed by kube-proxy on this host).
- Failures are real: a crashing image crash-loops under the kubelet's backoff until the breaker
  quarantines it; an upgrade is watched by a client calling all along; revoking removes the pods.

The images are the runtime images of runtime-images/build.py (sample plugins on the Python host),
imported into the node's containerd and pinned by digest; two variants are built here: echo
1.1.0 (another digest, for the upgrade) and an echo whose entrypoint is missing (it crashes).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from e2e import flow
from e2e.conftest import Kube
from e2e.flow import (
    approval,
    condition,
    execute,
    phase_becomes,
    pods_of,
    running_tenant_of,
    tenant_of,
    until,
)
from e2e.localcluster import node as localnode
from e2e.operator_process import WORKLOADS, Operator
from e2e.operator_process import running as running_operators
from e2e.runtimeimages import sample_images, sample_variant

HOST_RELEASE = os.uname().release
GATEWAY = "10.88.0.1"
"""The host on the node's pod bridge: where a pod's egress test connects to."""
READY_TIMEOUT = 180


@pytest.fixture(scope="module")
def images(
    node: localnode.Node, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, localnode.ImportedImage]:
    """The sample images (runtime-images/build.py) and two variants, imported into the node."""
    out = tmp_path_factory.mktemp("images")
    imported = {f"sample-{name}": image for name, image in sample_images(node, out).items()}
    variants = {
        "echo-1.1.0": sample_variant(
            "echo",
            out / "echo-1.1.0",
            name="localhost/wayang/sample-echo:1.1.0",
            labels={"org.opencontainers.image.version": "1.1.0"},
        ),
        "broken": sample_variant(
            "echo",
            out / "broken",
            name="localhost/wayang/sample-broken:1.0.0",
            entrypoint=("python3", "/opt/wayang/missing.py"),
        ),
    }
    for key, image in variants.items():
        imported[key] = node.import_image(image.layout)
    return imported


@pytest.fixture(scope="module")
def operator(
    kube: Kube, node: localnode.Node, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    running = Operator(
        kube,
        tmp_path_factory.mktemp("operator"),
        env=WORKLOADS,
    )
    with running_operators(kube, running):
        yield running


@pytest.fixture
def tenant(kube: Kube, namespace: str, operator: Operator) -> Iterator[str]:
    with running_tenant_of(kube, namespace) as name:
        yield name


def sample_plugin(
    name: str, sample: str, image: localnode.ImportedImage, **spec: Any
) -> dict[str, Any]:
    return flow.sample_plugin(name, sample, image.repository, image.digest, **spec)


def publish_and_approve(kube: Kube, namespace: str, document: dict[str, Any]) -> dict[str, Any]:
    name = document["metadata"]["name"]
    kube.apply(document, user="publisher-1", namespace=namespace)
    phase_becomes(kube, namespace, name, "AwaitingApproval")
    assert approval(kube, namespace, name, "approver-1").returncode == 0
    return phase_becomes(kube, namespace, name, "Ready", timeout=READY_TIMEOUT)


def plugin_index(kube: Kube, namespace: str) -> list[dict[str, Any]]:
    found = kube.run(
        "get", "configmap", "wayang-plugin-index", "-o", "json", namespace=namespace, check=False
    )
    if found.returncode != 0:
        return []
    return list(json.loads(json.loads(found.stdout)["data"]["plugins.json"]))


@pytest.fixture
def listener() -> Iterator[str]:
    """A TCP server on the host, reachable from pods at the bridge's gateway address."""
    server = socket.create_server(("0.0.0.0", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
                connection.close()
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"{GATEWAY}:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    server.close()


def test_an_untrusted_plugin_runs_under_gvisor_without_egress_or_token(
    kube: Kube, tenant: str, images: dict[str, localnode.ImportedImage], listener: str
) -> None:
    document = sample_plugin("introspect", "introspect", images["sample-introspect"])
    status = publish_and_approve(kube, tenant, document)
    assert status["workload"]["runtimeClass"] == "gvisor"
    assert condition(status, "WorkloadAvailable")["reason"] == "Available"
    [pod] = pods_of(kube, tenant, "introspect")
    spec = pod["spec"]
    assert spec["runtimeClassName"] == "gvisor"
    assert spec["automountServiceAccountToken"] is False
    assert spec["containers"][0]["image"].endswith(f"@{images['sample-introspect'].digest}")
    report = execute(kube, tenant, "introspect", {"target": listener})["output"]
    assert report["kernel"] != HOST_RELEASE, "gVisor's own kernel, not the host's"
    assert report["kernel"] == "4.4.0", report
    assert report["token"] is False
    assert report["egress"] not in (None, "ok"), "untrusted: no egress at all"
    assert report["uid"] == 65532
    assert report["rootWritable"] is False
    [entry] = plugin_index(kube, tenant)
    assert entry["plugin"] == "introspect"
    assert entry["digest"] == images["sample-introspect"].digest
    assert entry["endpoint"] == f"http://wayang-introspect.{tenant}.svc:80"


def test_a_trusted_plugin_runs_under_runc_within_its_limits(
    kube: Kube, tenant: str, images: dict[str, localnode.ImportedImage], listener: str
) -> None:
    document = sample_plugin(
        "introspect",
        "introspect",
        images["sample-introspect"],
        sandboxLevel="trusted",
        capabilities=["network"],
        resourceProfile={"cpu": "150m", "memory": "112Mi", "timeout": 10000},
    )
    status = publish_and_approve(kube, tenant, document)
    assert "runtimeClass" not in status["workload"], "the node's default runtime: runc"
    [pod] = pods_of(kube, tenant, "introspect")
    assert "runtimeClassName" not in pod["spec"]
    limits = pod["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"cpu": "150m", "memory": "112Mi"}
    report = execute(kube, tenant, "introspect", {"target": listener})["output"]
    assert report["kernel"] == HOST_RELEASE, "runc shares the host's kernel"
    assert report["memoryLimit"] == str(112 * 1024 * 1024), "the limit is in force in its cgroup"
    assert report["egress"] == "ok", "trusted with the network capability: egress allowed"
    assert report["token"] is False
    assert report["rootWritable"] is False


def test_execute_through_the_service_returns_the_output_or_an_error_payload(
    kube: Kube, tenant: str, images: dict[str, localnode.ImportedImage]
) -> None:
    publish_and_approve(kube, tenant, sample_plugin("echo", "echo", images["sample-echo"]))
    answer = execute(kube, tenant, "echo", {"text": "hello"})
    assert answer["port"] == "echoed"
    assert answer["output"]["text"] == "HELLO!", "the configured suffix"
    overridden = execute(kube, tenant, "echo", {"text": "hello"}, {"suffix": "?"})
    assert overridden["port"] == "error", "a call cannot override the configuration"
    assert overridden["error"]["details"]["field"] == "properties.suffix"
    failed = execute(kube, tenant, "echo", {"text": "x" * 1001})
    assert failed["port"] == "error"
    assert failed["error"]["type"] == "ValidationError"
    assert failed["error"]["details"]["field"] == "inputs.text"


def test_a_crashing_plugin_is_quarantined_then_tried_again(
    kube: Kube, tenant: str, images: dict[str, localnode.ImportedImage], operator: Operator
) -> None:
    document = sample_plugin(
        "broken",
        "echo",
        images["broken"],
        sandboxLevel="trusted",
        errorHandling={
            "circuitBreaker": {"failureThreshold": 2, "successThreshold": 1, "timeoutMs": 3000},
            "humanReviewThreshold": "CRITICAL",
        },
    )
    kube.apply(document, user="publisher-1", namespace=tenant)
    phase_becomes(kube, tenant, "broken", "AwaitingApproval")
    assert approval(kube, tenant, "broken", "approver-1").returncode == 0
    status = phase_becomes(kube, tenant, "broken", "Quarantined", timeout=READY_TIMEOUT)
    error = status["lastError"]
    assert error["type"] == "PluginLoadError"
    assert error["details"]["cause"] == "CrashLoopBackOff"
    assert error["retryable"] is True
    assert "exit code 2" in error["message"]
    assert status["workload"]["replicas"] == 0
    assert status["workload"]["breaker"]["failures"] >= 2
    deployment = kube.get("deployment", "wayang-broken", tenant)
    assert deployment["spec"]["replicas"] == 0
    until("the quarantined pods to go", lambda: not pods_of(kube, tenant, "broken"))
    # after timeoutMs the breaker half-opens: one pod on trial, which crashes again
    tripped = until(
        "a second quarantine after the trial",
        lambda: (kube.get("plugin", "broken", tenant)["status"]["workload"]["breaker"]
                 .get("trips", 0) >= 2),
    )  # fmt: skip
    assert tripped
    events = kube.run(
        "get", "events", "--field-selector", "involvedObject.name=broken", "-o", "json",
        namespace=tenant,
    )  # fmt: skip
    reasons = {event["reason"] for event in json.loads(events.stdout)["items"]}
    assert "Quarantined" in reasons
    audited = [e for e in operator.audit() if e.get("pluginId") == document["spec"]["id"]
               and e["tenantId"] == tenant]  # fmt: skip
    assert any(
        e["eventType"] == "PLUGIN_ERROR" and "quarantined" in e["details"]["message"]
        for e in audited
    ), audited


@contextlib.contextmanager
def calling(kube: Kube, tenant: str, plugin: str) -> Iterator[list[str]]:
    """Calls the plugin's Service all along (no retries: any call that fails is recorded),
    yielding the outcomes ("ok" or what went wrong)."""
    calls: list[str] = []
    stop = threading.Event()

    def call_all_along() -> None:
        while not stop.is_set():
            try:
                answer = execute(kube, tenant, plugin, {"text": "up"}, patience=0)
                calls.append("ok" if answer.get("port") == "echoed" else json.dumps(answer))
            except Exception as failure:
                calls.append(f"{type(failure).__name__}: {failure}")
            time.sleep(0.05)

    caller = threading.Thread(target=call_all_along, daemon=True)
    caller.start()
    try:
        yield calls
    finally:
        stop.set()
        caller.join()


def none_failed(calls: list[str]) -> None:
    failures = [call for call in calls if call != "ok"]
    assert len(calls) > 20, calls
    assert not failures, f"{len(failures)} of {len(calls)} calls failed: {failures[:5]}"


def test_an_upgrade_keeps_serving_until_the_new_version_is_ready(
    kube: Kube, tenant: str, images: dict[str, localnode.ImportedImage]
) -> None:
    first = sample_plugin("echo", "echo", images["sample-echo"])
    publish_and_approve(kube, tenant, first)
    with calling(kube, tenant, "echo") as calls:
        upgraded = sample_plugin("echo", "echo", images["echo-1.1.0"], version="1.1.0")
        kube.apply(upgraded, user="publisher-1", namespace=tenant)
        waiting = phase_becomes(kube, tenant, "echo", "AwaitingApproval")
        serving = condition(waiting, "WorkloadAvailable")
        assert serving["reason"] == "ServingPreviousVersion", serving
        assert waiting["workload"]["digest"] == images["sample-echo"].digest
        assert plugin_index(kube, tenant)[0]["version"] == "1.0.0"
        assert approval(kube, tenant, "echo", "approver-1", suffix="-1-1-0").returncode == 0
        ready = phase_becomes(kube, tenant, "echo", "Ready", timeout=READY_TIMEOUT)
        assert ready["workload"]["digest"] == images["echo-1.1.0"].digest
        until(
            "the old pod to go",
            lambda: [p["metadata"]["annotations"]["wayang.io/digest"]
                     for p in pods_of(kube, tenant, "echo")] == [images["echo-1.1.0"].digest],
        )  # fmt: skip
        time.sleep(1)
    none_failed(calls)
    assert plugin_index(kube, tenant)[0]["version"] == "1.1.0"


def test_a_plugin_whose_calls_keep_failing_is_quarantined(
    kube: Kube, tenant: str, images: dict[str, localnode.ImportedImage], operator: Operator
) -> None:
    """Seed §13, call-level: the pod never crashes, its calls fail. The runtime host counts
    them (errorHandling.circuitBreaker), turns unready, and the operator's breaker quarantines
    the plugin: the user is told the calls keep failing, not that the pod is broken."""
    document = sample_plugin(
        "failing",
        "failing",
        images["sample-failing"],
        sandboxLevel="trusted",
        errorHandling={
            "circuitBreaker": {"failureThreshold": 2, "successThreshold": 1, "timeoutMs": 60000},
            "humanReviewThreshold": "CRITICAL",
        },
    )
    publish_and_approve(kube, tenant, document)
    for _ in range(2):
        answer = execute(kube, tenant, "failing", {"reason": "upstream down"})
        assert answer["error"]["type"] == "ToolError", answer
    status = phase_becomes(kube, tenant, "failing", "Quarantined", timeout=READY_TIMEOUT)
    message = condition(status, "WorkloadAvailable")["message"]
    assert "its calls keep failing" in message, message
    assert status["workload"]["replicas"] == 0
    assert kube.get("deployment", "wayang-failing", tenant)["spec"]["replicas"] == 0

    def reasons() -> set[str]:
        events = kube.run(
            "get", "events", "--field-selector", "involvedObject.name=failing", "-o", "json",
            namespace=tenant,
        )  # fmt: skip
        return {event["reason"] for event in json.loads(events.stdout)["items"]}

    until("the Quarantined Event (written after the status)", lambda: "Quarantined" in reasons())


def test_a_configuration_change_reaches_the_running_plugin_without_a_new_approval(
    kube: Kube, tenant: str, images: dict[str, localnode.ImportedImage], operator: Operator
) -> None:
    """Issue 16 item 1: the publisher changes `configuration` only. No approval is asked (no
    policy binds configuration), the pods roll (the descriptor hash is in the pod template),
    the new value answers, and the change is audited with the publisher's identity."""
    document = sample_plugin("echo", "echo", images["sample-echo"], sandboxLevel="trusted")
    publish_and_approve(kube, tenant, document)
    assert execute(kube, tenant, "echo", {"text": "hi"})["output"]["text"] == "HI!"
    before = kube.get("deployment", "wayang-echo", tenant)["spec"]["template"]["metadata"]
    document["spec"]["configuration"] = {"suffix": "?"}
    kube.apply(document, user="publisher-1", namespace=tenant)
    until(
        "the new configuration to answer",
        lambda: execute(kube, tenant, "echo", {"text": "hi"})["output"]["text"] == "HI?",
        timeout=READY_TIMEOUT,
    )
    status = phase_becomes(kube, tenant, "echo", "Ready", timeout=READY_TIMEOUT)
    assert condition(status, "Approved")["status"] == "True", "the approval carried over"
    approvals = kube.run("get", "pluginapprovals", "-o", "name", namespace=tenant)
    assert len(approvals.stdout.split()) == 1, "nobody was asked again"
    after = kube.get("deployment", "wayang-echo", tenant)["spec"]["template"]["metadata"]
    key = "wayang.io/descriptor-hash"
    assert before["annotations"][key] != after["annotations"][key], "the pods rolled"
    updates = [e for e in operator.audit()
               if e.get("tenantId") == tenant and e["eventType"] == "PLUGIN_UPDATED"]  # fmt: skip
    assert updates, "the configuration change is audited"
    assert updates[-1]["actor"]["id"] == "publisher-1"


@pytest.mark.parametrize("auto_heal", [True, False], ids=["autoHeal", "noAutoHeal"])
def test_a_failing_upgrade_never_takes_the_good_version_down(
    kube: Kube,
    tenant: str,
    images: dict[str, localnode.ImportedImage],
    operator: Operator,
    auto_heal: bool,
) -> None:
    """Version 2.0.0 crashes at start. Its breaker trips; the approved 1.0.0 keeps serving
    throughout (not one call fails). With autoHealEnabled it is rolled back (audited, Event,
    explain), without it the new version is quarantined and tried again beside the old one."""
    errors = {
        "circuitBreaker": {"failureThreshold": 2, "successThreshold": 1, "timeoutMs": 5000},
        "autoHealEnabled": auto_heal,
    }
    good = sample_plugin("echo", "echo", images["sample-echo"], errorHandling=errors)
    publish_and_approve(kube, tenant, good)
    good_digest = images["sample-echo"].digest
    with calling(kube, tenant, "echo") as calls:
        bad = sample_plugin("echo", "echo", images["broken"], version="2.0.0", errorHandling=errors)
        kube.apply(bad, user="publisher-1", namespace=tenant)
        phase_becomes(kube, tenant, "echo", "AwaitingApproval")
        assert approval(kube, tenant, "echo", "approver-1", suffix="-2-0-0").returncode == 0
        expected = (
            ("Degraded", "RolledBack") if auto_heal else ("Quarantined", "NewVersionQuarantined")
        )
        status = phase_becomes(kube, tenant, "echo", expected[0], timeout=READY_TIMEOUT)
        workload = condition(status, "WorkloadAvailable")
        assert (workload["reason"], workload["status"]) == (expected[1], "True"), workload
        assert "version 1.0.0" in workload["message"], workload["message"]
        deployment = kube.get("deployment", "wayang-echo", tenant)
        template = deployment["spec"]["template"]["metadata"]["annotations"]
        assert template["wayang.io/digest"] == good_digest, "the known-good is rendered again"
        assert deployment["spec"]["replicas"] == 1, "never scaled to zero"
        if auto_heal:
            time.sleep(12)  # past timeoutMs: a rollback has no trials
            later = kube.get("plugin", "echo", tenant)["status"]
            assert condition(later, "WorkloadAvailable")["reason"] == "RolledBack"
            assert later["workload"]["breaker"]["trips"] == 1
        else:
            until(
                "a half-open trial of 2.0.0, beside 1.0.0, that trips again",
                lambda: kube.get("plugin", "echo", tenant)["status"]["workload"]["breaker"]
                .get("trips", 0) >= 2,
                timeout=READY_TIMEOUT,
            )  # fmt: skip
            phase_becomes(kube, tenant, "echo", "Quarantined", timeout=READY_TIMEOUT)
        until(
            "only 1.0.0's pod to be left",
            lambda: [p["metadata"]["annotations"]["wayang.io/digest"]
                     for p in pods_of(kube, tenant, "echo")] == [good_digest],
            timeout=READY_TIMEOUT,
        )  # fmt: skip
    none_failed(calls)
    events = kube.run(
        "get", "events", "--field-selector", "involvedObject.name=echo", "-o", "json",
        namespace=tenant,
    )  # fmt: skip
    assert expected[1] in {event["reason"] for event in json.loads(events.stdout)["items"]}
    audited = [e["eventType"] for e in operator.audit() if e.get("tenantId") == tenant]
    assert ("PLUGIN_ROLLED_BACK" in audited) is auto_heal, audited
    words = "Rolled back (autoHealEnabled)" if auto_heal else "the last known-good serves"
    # Without autoHealEnabled the half-open trials go on (each one says "Rolling out, the
    # previous pods serve"), so explain is read until it is between trials.
    until(
        f"explain to say {words!r}",
        lambda: words in flow.wayang(kube, "explain", "echo", "-n", tenant).stdout,
        timeout=READY_TIMEOUT,
    )


def test_disable_revoke_and_delete_unload_it(
    kube: Kube, tenant: str, images: dict[str, localnode.ImportedImage], operator: Operator
) -> None:
    document = sample_plugin("echo", "echo", images["sample-echo"])
    publish_and_approve(kube, tenant, document)
    document["spec"]["enabled"] = False
    kube.apply(document, user="publisher-1", namespace=tenant)
    disabled = phase_becomes(kube, tenant, "echo", "Disabled")
    assert condition(disabled, "WorkloadAvailable")["reason"] == "Disabled"
    until("the disabled plugin's pods to go", lambda: not pods_of(kube, tenant, "echo"))
    assert kube.get("deployment", "wayang-echo", tenant)["spec"]["replicas"] == 0
    until("the index to drop it", lambda: plugin_index(kube, tenant) == [])
    document["spec"]["enabled"] = True
    kube.apply(document, user="publisher-1", namespace=tenant)
    phase_becomes(kube, tenant, "echo", "Ready", timeout=READY_TIMEOUT)
    assert pods_of(kube, tenant, "echo")
    assert approval(kube, tenant, "echo", "approver-1", decision="Revoke").returncode == 0
    revoked = phase_becomes(kube, tenant, "echo", "Revoked")
    assert condition(revoked, "WorkloadAvailable")["reason"] == "Unloaded"
    until("the revoked plugin's pods to go", lambda: not pods_of(kube, tenant, "echo"))
    kube.run("delete", "plugin", "echo", "--wait=true", "--timeout=60s", namespace=tenant)
    until(
        "the owned objects to be collected",
        lambda: kube.run(
            "get", "deployment,service,networkpolicy,serviceaccount", "-l",
            "wayang.io/plugin=echo", "-o", "name", namespace=tenant,
        ).stdout.strip() == "",
    )  # fmt: skip
    entries = [
        e
        for e in operator.audit()
        if e.get("tenantId") == tenant and e["eventType"] in ("PLUGIN_LOADED", "PLUGIN_UNLOADED")
    ]
    kinds = [e["eventType"] for e in entries]
    assert kinds == [
        "PLUGIN_LOADED", "PLUGIN_UNLOADED", "PLUGIN_LOADED", "PLUGIN_UNLOADED", "PLUGIN_UNLOADED",
    ], [(e["eventType"], e["details"]["message"]) for e in entries]  # fmt: skip


def test_deleting_the_namespace_releases_its_plugins(
    kube: Kube, namespace: str, operator: Operator, images: dict[str, localnode.ImportedImage]
) -> None:
    """The finalizer's last step cannot write the plugin index in a namespace being deleted;
    the plugin must be let go all the same, or the namespace would never go."""
    with tenant_of(kube, namespace):
        kube.apply(sample_plugin("echo", "echo", images["sample-echo"]), user="publisher-1",
                   namespace=namespace)  # fmt: skip
        phase_becomes(kube, namespace, "echo", "AwaitingApproval")
        held = until(
            "the finalizer", lambda: kube.get("plugin", "echo", namespace)["metadata"].get(
                "finalizers")
        )  # fmt: skip
        assert held == ["wayang.io/unload"]
        kube.run("delete", "namespace", namespace, "--wait=false")
        kube.wait_gone("namespace", namespace, timeout=120)
