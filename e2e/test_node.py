"""The local node runs pods for real: a pod of RuntimeClass `gvisor` runs in a gVisor sandbox, the
same pod without it runs under runc on the host's kernel, images are found by digest without a
registry, a ClusterIP Service answers from the host and from a sandboxed pod, and a NetworkPolicy
that denies all egress (what the product renders for untrusted plugins) cuts a sandboxed pod off
while ingress on its port still works.

The probe image (e2e/tools/probe) reports what kernel it sees. gVisor's signatures: its own
dmesg starts with "Starting gVisor...", and uname/`/proc/version` show the kernel gVisor
emulates (4.4.0), not the host's. A runc pod shares the host's kernel release.

These need the node of e2e/localcluster/node.py, so they run only as root and only on the local
cluster (not with --kubeconfig or --kind, where the node is not ours to start); otherwise they
are skipped. The session starts the node on its own cluster and stops it at the end; a node
another local cluster runs (`make demo`'s) is stopped meanwhile and started again afterwards
(conftest's `node` fixture).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from e2e.conftest import Kube
from e2e.localcluster import node as localnode
from e2e.localcluster.build import ensure_tool
from wayang_operator.images.oci import File, ImageSpec, build

HOST_RELEASE = os.uname().release
GVISOR_DMESG = "Starting gVisor..."


@pytest.fixture(scope="session")
def probe(
    node: localnode.Node, tmp_path_factory: pytest.TempPathFactory
) -> localnode.ImportedImage:
    """The probe image, built here and imported into the node's containerd."""
    binary = ensure_tool("probe")
    spec = ImageSpec(
        "localhost/wayang-test/probe:1.0",
        [[File("probe", binary.read_bytes(), 0o755)]],
        entrypoint=["/probe"],
    )
    image = build(spec, tmp_path_factory.mktemp("probe") / "layout")
    imported = node.import_image(image.layout)
    assert imported.digest == image.digest
    return imported


def probe_pod(
    kube: Kube,
    namespace: str,
    image: str,
    runtime_class: str | None = None,
    pull_policy: str = "Never",
    labels: dict[str, str] | None = None,
    automount_token: bool | None = None,
) -> dict[str, Any]:
    """Run the probe in a pod and return the pod once it is Ready."""
    name = f"probe-{runtime_class or 'runc'}-{uuid.uuid4().hex[:5]}"
    spec: dict[str, Any] = {
        "containers": [
            {
                "name": "probe",
                "image": image,
                "imagePullPolicy": pull_policy,
                "ports": [{"containerPort": 8080}],
                # every second, not 10: a first probe before the server listens (or the
                # kubelet's random start delay in its first period after starting) costs a period
                "readinessProbe": {"httpGet": {"path": "/probe", "port": 8080}, "periodSeconds": 1},
            }
        ],
        "terminationGracePeriodSeconds": 1,
    }
    if runtime_class:
        spec["runtimeClassName"] = runtime_class
    if automount_token is not None:
        spec["automountServiceAccountToken"] = automount_token
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "probe", "probe": name, **(labels or {})}},
        "spec": spec,
    }
    # a fresh namespace's default ServiceAccount may not exist yet (the controller manager
    # makes it), and a pod that mounts its token is refused until it does
    deadline = time.monotonic() + 30
    while kube.apply(pod, namespace=namespace, check=False).returncode != 0:
        assert time.monotonic() < deadline, f"pod {name} was never accepted"
        time.sleep(0.5)
    waited = kube.run(
        "wait", "--for=condition=Ready", f"pod/{name}", "--timeout=120s",
        namespace=namespace, check=False,
    )  # fmt: skip
    if waited.returncode != 0:
        described = kube.run("describe", "pod", name, namespace=namespace, check=False).stdout
        raise AssertionError(f"pod {name} not Ready:\n{described}")
    return kube.get("pod", name, namespace)


def report(address: str, target: str | None = None) -> dict[str, Any]:
    """GET /probe from the host."""
    query = f"?target={target}" if target else ""
    with urllib.request.urlopen(f"http://{address}/probe{query}", timeout=10) as response:
        document: dict[str, Any] = json.load(response)
    return document


def service_for(kube: Kube, namespace: str, name: str, pod: dict[str, Any]) -> str:
    """A ClusterIP Service (port 80) in front of `pod`'s 8080; its IP once it answers."""
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name},
            "spec": {
                "selector": {"probe": pod["metadata"]["name"]},
                "ports": [{"port": 80, "targetPort": 8080}],
            },
        },
        namespace=namespace,
    )
    cluster_ip = str(kube.get("service", name, namespace)["spec"]["clusterIP"])
    deadline = time.monotonic() + 30  # until kube-proxy has programmed the endpoints
    while True:
        try:
            report(f"{cluster_ip}:80")
            return cluster_ip
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@contextlib.contextmanager
def tcp_listener(address: str) -> Iterator[tuple[int, list[str]]]:
    """A TCP listener on `address` (a free port outside the NodePort range, which kube-router
    lets through to the host whatever the policy); yields its port and the peers it accepted."""
    while True:
        server = socket.create_server((address, 0))
        port = server.getsockname()[1]
        if not 30000 <= port <= 32767:
            break
        server.close()
    server.settimeout(0.2)
    peers: list[str] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, peer = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            peers.append(peer[0])
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port, peers
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()


def runtime_of(node: localnode.Node, pod: dict[str, Any]) -> str:
    """The containerd runtime (shim) that runs the pod's container."""
    container_id = pod["status"]["containerStatuses"][0]["containerID"].removeprefix(
        "containerd://"
    )
    info = json.loads(node.ctr("containers", "info", container_id))
    return str(info["Runtime"]["Name"])


def test_a_gvisor_pod_runs_in_a_gvisor_sandbox(
    kube: Kube, namespace: str, node: localnode.Node, probe: localnode.ImportedImage
) -> None:
    pod = probe_pod(kube, namespace, probe.by_digest, localnode.RUNTIME_CLASS, "IfNotPresent")
    seen = report(f"{pod['status']['podIP']}:8080")
    assert seen["dmesg_head"].splitlines()[0].endswith(GVISOR_DMESG), seen
    assert seen["uname"] != HOST_RELEASE, seen
    assert HOST_RELEASE not in seen["kernel"], seen
    assert seen["token"] is True
    assert runtime_of(node, pod) == "io.containerd.runsc.v1"
    # the API server reaches the kubelet (logs, exec) with its client certificate
    logs = kube.run("logs", pod["metadata"]["name"], namespace=namespace).stdout
    assert "probe listening on :8080" in logs


def test_the_same_pod_without_the_runtime_class_sees_the_host_kernel(
    kube: Kube, namespace: str, node: localnode.Node, probe: localnode.ImportedImage
) -> None:
    pod = probe_pod(kube, namespace, probe.by_digest)
    seen = report(f"{pod['status']['podIP']}:8080")
    assert seen["uname"] == HOST_RELEASE, seen
    assert HOST_RELEASE in seen["kernel"], seen
    assert "gVisor" not in seen["dmesg_head"], seen
    assert runtime_of(node, pod) == "io.containerd.runc.v2"


def test_a_service_answers_from_the_host_and_from_a_sandboxed_pod(
    kube: Kube, namespace: str, node: localnode.Node, probe: localnode.ImportedImage
) -> None:
    backend = probe_pod(kube, namespace, probe.name)  # by tag works too
    client = probe_pod(kube, namespace, probe.by_digest, localnode.RUNTIME_CLASS)
    cluster_ip = service_for(kube, namespace, "probe", backend)
    from_host = report(f"{cluster_ip}:80")
    assert from_host["uname"] == HOST_RELEASE  # the backend is the runc pod
    from_sandbox = report(f"{client['status']['podIP']}:8080", target=f"{cluster_ip}:80")
    assert from_sandbox["egress"] == "ok", from_sandbox
    assert GVISOR_DMESG in from_sandbox["dmesg_head"]


def test_images_are_found_by_digest_only_when_imported(
    kube: Kube, namespace: str, node: localnode.Node, probe: localnode.ImportedImage
) -> None:
    """The digest reference resolves because import_image names the image by it; a digest
    nothing was imported under is not found (no registry to fall back on)."""
    images = node.ctr("images", "list", "--quiet").split()
    assert probe.by_digest in images
    assert probe.name in images
    missing = f"{probe.repository}@sha256:{'0' * 64}"
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "missing"},
            "spec": {"containers": [{"name": "c", "image": missing, "imagePullPolicy": "Never"}]},
        },
        namespace=namespace,
    )
    deadline = time.monotonic() + 60
    reason = ""
    while time.monotonic() < deadline and reason != "ErrImageNeverPull":
        statuses = kube.get("pod", "missing", namespace).get("status", {})
        waiting = [
            s.get("state", {}).get("waiting", {}) for s in statuses.get("containerStatuses", [])
        ]
        reason = waiting[0].get("reason", "") if waiting else ""
        time.sleep(0.5)
    assert reason == "ErrImageNeverPull"


UNTRUSTED = {"wayang-test/trust": "untrusted"}


def test_a_network_policy_cuts_a_sandboxed_pod_off_but_lets_its_port_in(
    kube: Kube, namespace: str, node: localnode.Node, probe: localnode.ImportedImage
) -> None:
    """What the product renders for an untrusted plugin: no egress at all, ingress on 8080 only.

    kube-router (node.py) enforces it; the bridge plugin alone would not. Each pod is asked,
    through its HTTP port from the host (ingress, allowed on 8080), to open a TCP connection to a
    pod, a Service and a listener on the node's own address: the restricted gVisor pod must fail
    every one, an unrestricted pod next to it must reach all of them.
    """
    kube.apply(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "untrusted"},
            "spec": {
                "podSelector": {"matchLabels": UNTRUSTED},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"ports": [{"protocol": "TCP", "port": 8080}]}],
                "egress": [],
            },
        },
        namespace=namespace,
    )
    restricted = probe_pod(
        kube,
        namespace,
        probe.by_digest,
        localnode.RUNTIME_CLASS,
        labels=UNTRUSTED,
        automount_token=False,
    )
    unrestricted = probe_pod(kube, namespace, probe.by_digest)
    restricted_at = f"{restricted['status']['podIP']}:8080"
    unrestricted_at = f"{unrestricted['status']['podIP']}:8080"
    service_ip = service_for(kube, namespace, "unrestricted", unrestricted)

    with tcp_listener(node.ip) as (port, peers):
        targets = {
            "a pod": unrestricted_at,
            "a Service": f"{service_ip}:80",
            "the node": f"{node.ip}:{port}",
        }
        # kube-router programs the pod's chain once it sees the pod: wait for the first denial
        deadline = time.monotonic() + 30
        while report(restricted_at, target=targets["a pod"])["egress"] == "ok":
            assert time.monotonic() < deadline, "the egress policy was never enforced"
            time.sleep(0.5)
        for what, target in targets.items():
            denied = report(restricted_at, target=target)  # ingress on 8080: answered
            assert denied["egress"] not in ("", "ok"), (what, denied)
            assert GVISOR_DMESG in denied["dmesg_head"]
            allowed = report(unrestricted_at, target=target)
            assert allowed["egress"] == "ok", (what, allowed)
        # the kernel completes a handshake before the listener's thread accepts it
        deadline = time.monotonic() + 5
        while unrestricted["status"]["podIP"] not in peers:
            assert time.monotonic() < deadline, peers
            time.sleep(0.1)
        assert restricted["status"]["podIP"] not in peers  # accepted in order: it came first

    # ingress from a pod on the allowed port works too
    assert report(unrestricted_at, target=restricted_at)["egress"] == "ok"
    # no service-account token where automounting is off; the default still mounts one
    assert report(restricted_at)["token"] is False
    assert report(unrestricted_at)["token"] is True
