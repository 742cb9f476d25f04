"""Hosted plugins on the real node, wheels (`python`) and modules (`wasm`): fetched by digest,
scanned, approved, run on the runtime host under gVisor, and refused by digest in the pod when
the bytes behind the same URL change after approval.

The artifacts are built here (runtime-images/build.py `wheel` and `wasm_module`, byte-for-byte
repeatable) and served over HTTP from the host's address, or pushed with `wayang push` to the
cluster's OCI registry (TLS from the cluster's CA, on the same address) and pinned as `oci://`
artifacts by the file's digest; the operator fetches them
to scan them (trivy with the test database), and each plugin pod's init container (the runtime
image's /opt/wayang/fetch.py, the operator's own fetching module) fetches them again, checks the
digest and unpacks them read-only for the host. The NetworkPolicy lets the pod reach only that
artifact source (an untrusted plugin gets no other egress).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.runtime_build import BUILD

from e2e import scanfixtures
from e2e.conftest import ROOT, Kube
from e2e.flow import (
    approval,
    condition,
    execute,
    phase_becomes,
    plugin_document,
    pods_of,
    push,
    scanned_tenant_of,
    until,
)
from e2e.localcluster import cluster as local
from e2e.localcluster import node as localnode
from e2e.localcluster.cluster import host_address
from e2e.operator_process import Operator, scanning_workloads
from e2e.runtimeimages import build_images

HOST = host_address() or "127.0.0.1"
"""The host's address (the default route's interface): the operator, on the host, and the pods,
through the node's bridge, both reach the artifact server there."""
ECHO = ROOT / "runtime-images" / "python" / "samples" / "echo"
WASM = ROOT / "runtime-images" / "wasm" / "samples"
JVM = ROOT / "runtime-images" / "jvm" / "samples"
READY_TIMEOUT = 180


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Repository:
    """An HTTP file server on the pod bridge; `files` is what it serves, by path."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        self.url = ""


@pytest.fixture(scope="module")
def repository(node: localnode.Node) -> Iterator[Repository]:
    served = Repository()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.requests.append(self.path)
            body = served.files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer((HOST, 0), Handler)
    served.url = f"http://{HOST}:{httpd.server_address[1]}"
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield served
    httpd.shutdown()


def runtime_image(node: localnode.Node, folder: Path, name: str) -> str:
    """A runtime host image built by build.py (`name`), imported into the node, pinned."""
    ((_, info),) = build_images(folder, name).items()
    imported = node.import_image(Path(info["tar"]))
    return f"{imported.repository}@{imported.digest}"


@pytest.fixture(scope="module")
def host_image(node: localnode.Node, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The Python runtime host image (with its fetcher)."""
    return runtime_image(node, tmp_path_factory.mktemp("images"), "runtime-python")


@pytest.fixture(scope="module")
def jvm_image(node: localnode.Node, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The JVM runtime host image (the same host and fetcher, with Debian's JRE)."""
    return runtime_image(node, tmp_path_factory.mktemp("jvm-images"), "runtime-jvm")


@pytest.fixture(scope="module")
def operator(
    kube: Kube,
    host_image: str,
    jvm_image: str,
    repository: Repository,
    registry: local.Registry,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Operator]:
    folder = tmp_path_factory.mktemp("operator")
    with scanning_workloads(
        kube,
        folder,
        WAYANG_RUNTIME_IMAGES=json.dumps(
            {"python": host_image, "wasm": host_image, "jar": jvm_image, "maven": jvm_image}
        ),
        WAYANG_PLUGIN_ARTIFACTS_TO=json.dumps([{"cidr": f"{HOST}/32"}]),
        WAYANG_ARTIFACT_CA_FILE=str(registry.ca),  # the registry's: the operator and pods
    ) as running:
        yield running


@pytest.fixture
def tenant(kube: Kube, namespace: str, operator: Operator) -> Iterator[str]:
    with scanned_tenant_of(kube, namespace) as name:
        yield name


def wheel_plugin(name: str, url: str, data: bytes, **spec: Any) -> dict[str, Any]:
    descriptor: dict[str, Any] = json.loads((ECHO / "plugin.json").read_text())
    descriptor["implementation"] = {
        "type": "python",
        "coordinate": "wayang-samples-echo",
        "repository": url,
        "digest": sha256(data),
        "entrypoint": descriptor["implementation"]["entrypoint"],
    }
    return plugin_document(name, descriptor, **spec)


def fetched_plugin(name: str, sample: Path, data: bytes, **implementation: str) -> dict[str, Any]:
    """The sample's Plugin with its artifact pinned: the implementation fields given, the digest
    of `data`."""
    descriptor: dict[str, Any] = json.loads((sample / "plugin.json").read_text())
    descriptor["implementation"].update(implementation, digest=sha256(data))
    return plugin_document(name, descriptor)


def wasm_plugin(name: str, sample: str, url: str, data: bytes) -> dict[str, Any]:
    return fetched_plugin(name, WASM / sample, data, repository=url)


def publish(kube: Kube, namespace: str, document: dict[str, Any], phase: str) -> dict[str, Any]:
    kube.apply(document, user="publisher-1", namespace=namespace)
    return phase_becomes(kube, namespace, document["metadata"]["name"], phase, timeout=180)


def test_a_wheel_is_scanned_approved_and_served_by_the_python_host_under_gvisor(
    kube: Kube, tenant: str, repository: Repository
) -> None:
    name, data = BUILD.wheel(ECHO)
    repository.files[f"/{tenant}/{name}"] = data
    url = f"{repository.url}/{tenant}/{name}"
    awaiting = publish(kube, tenant, wheel_plugin("echo", url, data), "AwaitingApproval")
    assert condition(awaiting, "Scanned")["reason"] == "ScanPassed"
    report = kube.get("scanreport", sha256(data).replace(":", "-"), tenant)
    assert report["spec"]["artifact"]["type"] == "python"
    assert report["spec"]["artifact"]["repository"] == url

    assert approval(kube, tenant, "echo", "approver-1").returncode == 0
    phase_becomes(kube, tenant, "echo", "Ready", timeout=READY_TIMEOUT)
    answer = execute(kube, tenant, "echo", {"text": "wheel"})
    assert answer["port"] == "echoed", answer
    assert answer["output"]["text"] == "WHEEL!", "the wheel's code, with the configured suffix"

    (pod,) = pods_of(kube, tenant, "echo")
    assert pod["spec"]["runtimeClassName"] == "gvisor"
    (fetched,) = pod["status"]["initContainerStatuses"]
    assert fetched["name"] == "fetch"
    assert fetched["state"]["terminated"]["exitCode"] == 0
    logs = kube.run("logs", pod["metadata"]["name"], "-c", "fetch", namespace=tenant).stdout
    assert json.loads(logs.strip().splitlines()[-1])["digest"] == sha256(data)


def test_a_wheel_that_bundles_a_vulnerable_package_is_blocked_by_its_scan(
    kube: Kube, tenant: str, repository: Repository
) -> None:
    name, data = BUILD.wheel(ECHO, bundles=[("requests", "2.19.0")])
    repository.files[f"/{tenant}/vulnerable/{name}"] = data
    url = f"{repository.url}/{tenant}/vulnerable/{name}"
    blocked = publish(kube, tenant, wheel_plugin("vulnerable", url, data), "Blocked")
    scanned = condition(blocked, "Scanned")
    assert scanned["reason"] == "ScanFailed"
    assert scanned["message"].startswith(
        f"{scanfixtures.FIXED_CVE} (HIGH) in requests 2.19.0, fixed in 2.20.0"
    ), scanned["message"]


def test_bytes_changed_behind_the_same_url_after_approval_never_load(
    kube: Kube, tenant: str, repository: Repository
) -> None:
    """The attacker controls the artifact server: after approval they swap the wheel behind the
    approved URL. The next pod's fetcher refuses it by digest, and no plugin code runs."""
    name, data = BUILD.wheel(ECHO)
    path = f"/{tenant}/swapped/{name}"
    repository.files[path] = data
    publish(kube, tenant, wheel_plugin("swapped", repository.url + path, data), "AwaitingApproval")
    assert approval(kube, tenant, "swapped", "approver-1").returncode == 0
    phase_becomes(kube, tenant, "swapped", "Ready", timeout=READY_TIMEOUT)

    repository.files[path] = BUILD.wheel(ECHO, bundles=[("evil", "6.6.6")])[1]
    (old,) = pods_of(kube, tenant, "swapped")
    kube.run("delete", "pod", old["metadata"]["name"], "--wait=false", namespace=tenant)

    def refused() -> dict[str, Any] | None:
        for pod in pods_of(kube, tenant, "swapped"):
            if pod["metadata"]["name"] == old["metadata"]["name"]:
                continue
            for status in pod.get("status", {}).get("initContainerStatuses") or []:
                ended = status.get("lastState", {}).get("terminated") or status.get(
                    "state", {}
                ).get("terminated")
                if ended and ended.get("exitCode") == 1:
                    return pod
        return None

    pod = until("the new pod's fetcher to refuse the swapped wheel", refused, timeout=120)
    (fetch,) = pod["status"]["initContainerStatuses"]
    ended = fetch.get("lastState", {}).get("terminated") or fetch["state"]["terminated"]
    assert ended["message"].startswith("SecurityError: "), ended
    assert f"not the pinned {sha256(data)}" in ended["message"]
    (plugin,) = pod["status"]["containerStatuses"]
    assert plugin["state"].get("waiting", {}).get("reason") == "PodInitializing"
    assert "running" not in plugin["state"]


def test_a_wasm_module_runs_on_wasmtime_under_gvisor_within_its_memory_limit(
    kube: Kube, tenant: str, repository: Repository
) -> None:
    """The same host, the wasm strategy: the module answers through the node contract, and a
    module that asks for more memory than the plugin's resourceProfile.memory does not get it."""
    for sample in ("echo", "hog"):
        name, data = BUILD.wasm_module(WASM / sample)
        repository.files[f"/{tenant}/{name}"] = data
        document = wasm_plugin(sample, sample, f"{repository.url}/{tenant}/{name}", data)
        awaiting = publish(kube, tenant, document, "AwaitingApproval")
        assert condition(awaiting, "Scanned")["reason"] == "ScanPassed"
        assert approval(kube, tenant, sample, "approver-1").returncode == 0
    for sample in ("echo", "hog"):
        phase_becomes(kube, tenant, sample, "Ready", timeout=READY_TIMEOUT)
    answer = execute(kube, tenant, "echo", {"text": "wasm"})
    assert answer["port"] == "echoed", answer
    assert answer["output"] == {"inputs": {"text": "wasm"}, "properties": {}}
    (pod,) = pods_of(kube, tenant, "echo")
    assert pod["spec"]["runtimeClassName"] == "gvisor"
    hog = execute(kube, tenant, "hog", {"text": "more"})
    assert hog["output"] == {"grown": False}, "256 MiB more is past the 192Mi limit"


def test_a_wasm_module_reaches_the_network_only_with_the_capability_in_a_pod_on_the_node(
    kube: Kube, tenant: str, repository: Repository
) -> None:
    """The fetch sample (`wayang.http`, the only way out of the module) twice, the same bytes:
    with `network` (granted by the policy) the host makes the request from the pod; without
    it the module gets a SecurityError, and the server never sees the request, although the
    pod's NetworkPolicy opens this server to the pod's fetcher (the artifact rule): the
    grant is enforced by the host, not only by the network."""
    name, data = BUILD.wasm_module(WASM / "fetch")
    repository.files[f"/{tenant}/{name}"] = data
    repository.files[f"/{tenant}/page"] = b"hello from the host"
    url = f"{repository.url}/{tenant}/{name}"
    granted = wasm_plugin("fetch", "fetch", url, data)
    assert granted["spec"]["capabilities"] == ["network"]
    denied = wasm_plugin("nonet", "fetch", url, data)
    denied["spec"]["capabilities"] = []
    for document in (granted, denied):
        awaiting = publish(kube, tenant, document, "AwaitingApproval")
        assert condition(awaiting, "Scanned")["reason"] == "ScanPassed"
        assert approval(kube, tenant, document["metadata"]["name"], "approver-1").returncode == 0
    for plugin in ("fetch", "nonet"):
        phase_becomes(kube, tenant, plugin, "Ready", timeout=READY_TIMEOUT)

    page = f"{repository.url}/{tenant}/page"
    answer = execute(kube, tenant, "fetch", {"url": page})
    assert answer["port"] == "fetched", answer
    assert answer["output"]["status"] == 200, answer
    assert answer["output"]["body"] == "hello from the host"
    assert repository.requests.count(f"/{tenant}/page") == 1

    refused = execute(kube, tenant, "nonet", {"url": page})
    assert refused["output"] == {
        "error": {"type": "SecurityError", "message": "outbound HTTP needs the network capability"}
    }, refused
    assert repository.requests.count(f"/{tenant}/page") == 1, "the request never left the pod"
    (pod,) = pods_of(kube, tenant, "nonet")
    (host,) = pod["spec"]["containers"]
    # the API server drops an empty value (omitempty): the variable is there, and not "1"
    network = [env for env in host["env"] if env["name"] == "WAYANG_WASM_NETWORK"]
    assert network == [{"name": "WAYANG_WASM_NETWORK"}], "the renderer's denial"


def test_a_wasm_module_pushed_to_the_registry_is_fetched_from_oci_by_the_scan_and_the_pod(
    kube: Kube, tenant: str, registry: local.Registry, tmp_path: Path
) -> None:
    """`wayang push` makes the module an OCI artifact; the Plugin pins `oci://` and the file's
    digest; the operator's scan and the pod's fetcher both read the blob by that digest over TLS
    (the cluster's CA, given to the pod as WAYANG_ARTIFACT_CA), through the NetworkPolicy's
    artifact rule on the registry's port."""
    name, data = BUILD.wasm_module(WASM / "echo")
    path = tmp_path / name
    path.write_bytes(data)
    reference = f"oci://{registry.address}/{tenant}/echo:1.0.0"
    pushed = push(str(path), reference, "--ca-file", str(registry.ca))
    assert pushed["file digest"] == sha256(data)
    awaiting = publish(
        kube, tenant, wasm_plugin("echo", "echo", reference, data), "AwaitingApproval"
    )
    assert condition(awaiting, "Scanned")["reason"] == "ScanPassed"
    assert approval(kube, tenant, "echo", "approver-1").returncode == 0
    phase_becomes(kube, tenant, "echo", "Ready", timeout=READY_TIMEOUT)
    answer = execute(kube, tenant, "echo", {"text": "oci"})
    assert answer["output"] == {"inputs": {"text": "oci"}, "properties": {}}

    (pod,) = pods_of(kube, tenant, "echo")
    (fetch,) = pod["spec"]["initContainers"]
    assert {"name": "WAYANG_ARTIFACT_REPOSITORY", "value": reference} in fetch["env"]
    logs = kube.run("logs", pod["metadata"]["name"], "-c", "fetch", namespace=tenant).stdout
    assert json.loads(logs.strip().splitlines()[-1])["digest"] == sha256(data)
    assert kube.local is not None
    blob = f"GET /v2/{tenant}/echo/blobs/{sha256(data)}"
    log = kube.local.log_file("registry").read_text().splitlines()
    reads = [line for line in log if blob in line and "wayang-fetch" in line]
    assert len(reads) >= 2, "the operator's scan and the pod's fetcher each read the blob"


def test_a_wasm_module_with_a_credential_in_its_data_is_blocked_by_its_scan(
    kube: Kube, tenant: str, repository: Repository
) -> None:
    import wasmtime  # noqa: PLC0415

    text = (
        f"AWS_ACCESS_KEY_ID={scanfixtures.FAKE_KEY_ID}\\n"
        f"AWS_SECRET_ACCESS_KEY={scanfixtures.FAKE_SECRET}\\n"
    )
    data = bytes(wasmtime.wat2wasm(f'(module (memory 1) (data (i32.const 0) "{text}"))'))
    repository.files[f"/{tenant}/leaky.wasm"] = data
    document = wasm_plugin("leaky", "echo", f"{repository.url}/{tenant}/leaky.wasm", data)
    blocked = publish(kube, tenant, document, "Blocked")
    scanned = condition(blocked, "Scanned")
    assert scanned["reason"] == "ScanFailed"
    assert "secret" in scanned["message"].lower(), scanned["message"]
    assert scanfixtures.FAKE_SECRET not in json.dumps(blocked)


def jvm_plugin(name: str, kind: str, repository: str, data: bytes) -> dict[str, Any]:
    return fetched_plugin(name, JVM / "echo", data, type=kind, repository=repository)


def test_a_maven_jar_runs_on_the_jvm_host_and_a_jar_shading_a_vulnerable_library_is_blocked(
    kube: Kube, tenant: str, repository: Repository
) -> None:
    """maven: the jar at its coordinate's path in a Maven repository, scanned with trivy's Java
    database, approved, fetched again by the pod and run by the JVM host under gVisor. jar: the
    same plugin with log4j-core 2.14.1 shaded into it is Blocked on its CVE."""
    name, data = BUILD.jar_sample(JVM / "echo")
    repository.files[f"/{tenant}/maven2/io/wayang/samples/echo/1.0.0/{name}"] = data
    document = jvm_plugin("echo", "maven", f"{repository.url}/{tenant}/maven2", data)
    awaiting = publish(kube, tenant, document, "AwaitingApproval")
    assert condition(awaiting, "Scanned")["reason"] == "ScanPassed"
    assert approval(kube, tenant, "echo", "approver-1").returncode == 0
    phase_becomes(kube, tenant, "echo", "Ready", timeout=READY_TIMEOUT)
    answer = execute(kube, tenant, "echo", {"text": "jvm"})
    assert answer["port"] == "echoed", answer
    (pod,) = pods_of(kube, tenant, "echo")
    assert pod["spec"]["runtimeClassName"] == "gvisor"

    shaded = scanfixtures.shading(data, "org.apache.logging.log4j", "log4j-core", "2.14.1")
    repository.files[f"/{tenant}/shaded.jar"] = shaded
    blocked = publish(
        kube,
        tenant,
        jvm_plugin("shaded", "jar", f"{repository.url}/{tenant}/shaded.jar", shaded),
        "Blocked",
    )
    scanned = condition(blocked, "Scanned")
    assert scanned["reason"] == "ScanFailed"
    assert scanfixtures.JAR_CVE in scanned["message"], scanned["message"]
