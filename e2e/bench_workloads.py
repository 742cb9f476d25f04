"""Benchmark: plugins really running on the local node, runc against gVisor, in one run.

1. Approval to Ready: N plugins of the echo sample (N = 1, 10, 50) are published and wait for
   approval; the clock starts when one `kubectl apply` writes all N approvals and stops when
   every plugin is Ready (its pod ready behind its Service). Once with sandboxLevel trusted
   (runc), once semi-trusted (gVisor); gVisor is reported as a ratio of runc. Each plugin asks
   for 20m CPU and 96Mi (plus the gvisor RuntimeClass's pod overhead) so 50 fit the 2-core node.
2. Approval to Ready per implementation type: the echo sample of each type
   (examples/plugins/echo-<type>.yaml, semi-trusted) pushed to the cluster's registry with
   `wayang push --pin`, one at a time on a node with nothing else running: the container image,
   the Python host with the wheel, the wasm module, the JVM host with the jar (the artifact
   fetched and checked by the pod's init container). Ratios against the container, same run.
3. Execute latency and throughput of the runtime host for the trivial echo plugin: the host
   process run directly on this machine (the baseline), then through the Service to a runc pod
   and to a gVisor pod (1 CPU each): p50/p99 of 300 sequential calls, and calls per second from
   8 concurrent clients for 5 s.

Needs root and the local cluster with its node (`python -m e2e.localcluster up --node`); the
cluster and node are started when they are not running, and stopped again at the end.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from e2e.conftest import ROOT, Kube
from e2e.flow import SAMPLES, approval_document, sample_plugin, tenant_of
from e2e.localcluster import cluster as local
from e2e.localcluster import node as localnode
from e2e.operator_process import Operator
from e2e.operator_process import running as running_operators
from e2e.runtimeimages import sample_artifacts, sample_variant

SIZES = (1, 10, 50)
SEQUENTIAL, CLIENTS, SECONDS = 300, 8, 5.0
HOST = ROOT / "runtime-images" / "python" / "host.py"
ECHO = SAMPLES / "echo"
TIMEOUT = 900


def echo_plugin(name: str, image: localnode.ImportedImage, level: str, cpu: str) -> dict[str, Any]:
    profile = {"cpu": cpu, "memory": "96Mi", "timeout": 10000}
    return sample_plugin(
        name, "echo", image.repository, image.digest, sandboxLevel=level, resourceProfile=profile
    )


def listing(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "List", "items": items}


def phases(kube: Kube, namespace: str) -> list[str]:
    found = json.loads(kube.run("get", "plugins", "-o", "json", namespace=namespace).stdout)
    return [(item.get("status") or {}).get("phase", "") for item in found["items"]]


def wait_all(kube: Kube, namespace: str, phase: str, count: int) -> None:
    deadline = time.monotonic() + TIMEOUT
    while (seen := phases(kube, namespace)).count(phase) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"FAILED: {seen.count(phase)} of {count} plugins {phase}: {seen}")
        time.sleep(0.5)


def fresh_tenant(kube: Kube, label: str) -> str:
    namespace = f"wayang-bench-{label}-{uuid.uuid4().hex[:4]}"
    kube.run("create", "namespace", namespace)
    return namespace


def remove(kube: Kube, namespace: str) -> None:
    """Delete the namespace and wait until it is gone (its pods too), so the next measurement
    has the node to itself; the operator, still running, lets go of its plugins."""
    kube.run("delete", "namespace", namespace, "--wait=false", check=False)
    kube.wait_gone("namespace", namespace, timeout=TIMEOUT)


def approval_to_ready(kube: Kube, image: localnode.ImportedImage, level: str, count: int) -> float:
    namespace = fresh_tenant(kube, f"{level}-{count}")
    try:
        with tenant_of(kube, namespace):
            names = [f"echo-{i}" for i in range(count)]
            plugins = [echo_plugin(name, image, level, "20m") for name in names]
            kube.apply(listing(plugins), user="publisher-1", namespace=namespace)
            wait_all(kube, namespace, "AwaitingApproval", count)
            approvals = [
                approval_document(name, plugin["spec"], f"{name}-approve")
                for name, plugin in zip(names, plugins, strict=True)
            ]
            started = time.monotonic()
            kube.apply(listing(approvals), user="approver-1", namespace=namespace)
            wait_all(kube, namespace, "Ready", count)
            return time.monotonic() - started
    finally:
        remove(kube, namespace)


HOSTED = ("python", "wasm", "jar")
"""The types measured beside the container (maven runs on the same JVM host as jar)."""


def pinned_example(kind: str, source: str, registry: local.Registry) -> dict[str, Any]:
    """examples/plugins/echo-<kind>.yaml pushed (`wayang push --pin`) to the cluster's registry
    under a tag of this run, semi-trusted."""
    reference = f"oci://{registry.address}/bench/echo-{kind}:{uuid.uuid4().hex[:8]}"
    flags = ["--image"] if kind == "container" else []
    pushed = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "wayang"), "push", *flags, source, reference,
         "--ca-file", str(registry.ca),
         "--pin", str(ROOT / "examples" / "plugins" / f"echo-{kind}.yaml")],
        capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    if pushed.returncode != 0:
        raise SystemExit(f"FAILED: wayang push {kind}: {pushed.stderr}")
    document: dict[str, Any] = yaml.safe_load(pushed.stdout)
    document["metadata"]["name"] = "echo"
    document["spec"]["sandboxLevel"] = "semi-trusted"
    return document


def type_to_ready(kube: Kube, document: dict[str, Any]) -> tuple[float, str]:
    """Seconds from the approval to Ready for one plugin, and the RuntimeClass it ran on."""
    kind = document["spec"]["implementation"]["type"]
    namespace = fresh_tenant(kube, f"type-{kind}")
    try:
        with tenant_of(kube, namespace):
            kube.apply(document, user="publisher-1", namespace=namespace)
            wait_all(kube, namespace, "AwaitingApproval", 1)
            approval = approval_document("echo", document["spec"], "echo-approve")
            started = time.monotonic()
            kube.apply(approval, user="approver-1", namespace=namespace)
            wait_all(kube, namespace, "Ready", 1)
            took = time.monotonic() - started
            workload = kube.get("plugin", "echo", namespace)["status"]["workload"]
            return took, workload.get("runtimeClass") or "runc"
    finally:
        remove(kube, namespace)


def types_to_ready(kube: Kube, sources: dict[str, str], registry: local.Registry) -> None:
    print("approval to Ready per implementation type (one plugin, semi-trusted)", flush=True)
    baseline = 0.0
    for kind in ("container", *HOSTED):
        took, runtime = type_to_ready(kube, pinned_example(kind, sources[kind], registry))
        baseline = baseline or took
        print(f"  {kind:9} {took:6.1f} s  x{took / baseline:.2f}  ({runtime})", flush=True)


def post(url: str, body: bytes) -> float:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.load(response)
    took = time.perf_counter() - started
    if answer.get("port") != "echoed":
        raise SystemExit(f"FAILED: execute answered {answer}")
    return took


def measure(url: str) -> Measured:
    """(p50 ms, p99 ms, calls/s, failed calls) for the echo plugin at `url`."""
    body = json.dumps({"inputs": {"text": "bench"}}).encode()
    for _ in range(20):
        post(url, body)  # warm workers and connections
    times = sorted(post(url, body) for _ in range(SEQUENTIAL))
    p50 = statistics.median(times) * 1000
    p99 = times[int(len(times) * 0.99) - 1] * 1000
    deadline = time.monotonic() + SECONDS

    def client() -> tuple[int, int]:
        calls = failed = 0
        while time.monotonic() < deadline:
            try:
                post(url, body)
                calls += 1
            except OSError:
                failed += 1
        return calls, failed

    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(lambda _: client(), range(CLIENTS)))
    return p50, p99, sum(c for c, _ in results) / SECONDS, sum(f for _, f in results)


Measured = tuple[float, float, float, int]


def direct_host(
    folder: Path,
    descriptor: str | None = None,
    plugin_path: Path = ECHO,
    env: dict[str, str] | None = None,
    sample: Callable[[int], None] | None = None,
) -> Measured:
    """The baseline: host.py as a plain process on this machine, the echo sample loaded (or
    the `descriptor` text with its artifact in `plugin_path`, `env` added). `sample(pid)` is
    called once the host is ready, before the calls (the idle RSS of bench_hosts)."""
    path = folder / "echo.json"
    path.write_text(descriptor or (ECHO / "plugin.json").read_text())
    log = folder / "host.log"
    environment = {
        **os.environ,
        "WAYANG_DESCRIPTOR": str(path),
        "WAYANG_PLUGIN_PATH": str(plugin_path),
        "WAYANG_SCHEMA_DIR": str(ROOT / "schemas"),
        "WAYANG_BIND": "127.0.0.1",
        "PORT": "0",
        **(env or {}),
    }
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, str(HOST)], env=environment, stdout=out)
    try:
        port = None
        while port is None:
            for line in log.read_text().splitlines():
                record = json.loads(line)
                if record["event"] == "listening":
                    port = record["port"]
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}"
        until_ready(lambda: urllib.request.urlopen(f"{url}/readyz", timeout=2).status == 200)
        if sample is not None:
            sample(process.pid)
        return measure(f"{url}/execute")
    finally:
        process.terminate()
        process.wait(10)


def until_ready(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if check():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("FAILED: not ready in 60 s")
        time.sleep(0.2)


def through_service(kube: Kube, image: localnode.ImportedImage, level: str) -> Measured:
    namespace = fresh_tenant(kube, f"exec-{level}")
    try:
        with tenant_of(kube, namespace):
            plugin = echo_plugin("echo", image, level, "1")
            kube.apply(plugin, user="publisher-1", namespace=namespace)
            wait_all(kube, namespace, "AwaitingApproval", 1)
            approval = approval_document("echo", plugin["spec"], "echo-approve")
            kube.apply(approval, user="approver-1", namespace=namespace)
            wait_all(kube, namespace, "Ready", 1)
            address = kube.get("service", "wayang-echo", namespace)["spec"]["clusterIP"]
            url = f"http://{address}/execute"
            until_ready(lambda: post(url, b'{"inputs": {"text": "x"}}') > 0)
            return measure(url)
    finally:
        remove(kube, namespace)


def execute_latency(kube: Kube, image: localnode.ImportedImage, folder: Path) -> None:
    print(
        f"echo execute: p50/p99 of {SEQUENTIAL} sequential calls, calls/s from {CLIENTS} "
        f"clients for {SECONDS:.0f} s",
        flush=True,
    )
    base = direct_host(folder)
    rows: list[tuple[str, Callable[[], Measured]]] = [
        ("host process (baseline)", lambda: base),
        ("runc pod via Service", lambda: through_service(kube, image, "trusted")),
        ("gVisor pod via Service", lambda: through_service(kube, image, "semi-trusted")),
    ]
    for label, run in rows:
        p50, p99, rate, failed = run()
        print(
            f"  {label:24} p50 {p50:6.2f} ms (x{p50 / base[0]:.2f})   p99 {p99:6.2f} ms   "
            f"{rate:7.0f} calls/s (x{rate / base[2]:.2f}), {failed} failed",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--part",
        choices=("all", "ready", "types", "execute"),
        default="all",
        help="what to measure",
    )
    part = parser.parse_args().part
    if os.geteuid() != 0:
        raise SystemExit("bench_workloads needs root (the local node)")
    running_cluster = local.current()
    cluster = running_cluster or local.up()
    running_node = localnode.current(cluster.layout)
    node = running_node or localnode.up(cluster.layout)
    users = {identity.user: identity.user for identity in local.USERS}
    kube = Kube(str(cluster.kubectl), cluster.layout.kubeconfig, local.CLUSTER_NAME, users)
    kube.run("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    try:
        with tempfile.TemporaryDirectory(prefix="wayang-bench-workloads-") as name:
            folder = Path(name)
            built = subprocess.run(
                [sys.executable, str(ROOT / "runtime-images" / "build.py"), "--out",
                 str(folder / "images")],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            images = json.loads(built.stdout)
            layout = images["localhost/wayang/sample-echo:1.0.0"]["layout"]
            image = node.import_image(Path(layout))
            hosts = {
                name.split("/")[-1].split(":")[0]: node.import_image(Path(info["tar"])).by_digest
                for name, info in images.items()
                if "/runtime-" in name
            }
            registry = local.registry(cluster.layout)
            if registry is None:
                raise SystemExit("the local cluster has no registry: restart it")
            env = {
                "WAYANG_WORKLOADS": "true",
                "WAYANG_WORKLOAD_READY_GRACE": "600",
                "WAYANG_WORKLOAD_CHECK_INTERVAL": "2",
                "WAYANG_RUNTIME_IMAGES": json.dumps(
                    {
                        "python": hosts["runtime-python"],
                        "wasm": hosts["runtime-python"],
                        "jar": hosts["runtime-jvm"],
                        "maven": hosts["runtime-jvm"],
                    }
                ),
                "WAYANG_PLUGIN_ARTIFACTS_TO": json.dumps(
                    [{"cidr": registry.address.rsplit(":", 1)[0] + "/32"}]
                ),
                "WAYANG_ARTIFACT_CA_FILE": str(registry.ca),
            }
            operator = Operator(kube, folder / "operator", env=env)
            with running_operators(kube, operator):
                if part in ("all", "ready"):
                    print(
                        "approval to Ready on the local node (2 cores; 20m CPU, 96Mi per plugin)",
                        flush=True,
                    )
                    for count in SIZES:
                        runc = approval_to_ready(kube, image, "trusted", count)
                        gvisor = approval_to_ready(kube, image, "semi-trusted", count)
                        print(
                            f"  {count:3} plugin(s): runc {runc:6.1f} s   gVisor {gvisor:6.1f} s"
                            f"   x{gvisor / runc:.2f}",
                            flush=True,
                        )
                if part in ("all", "types"):
                    # a container image of its own (pushed, never imported: test_registry.py)
                    pushed = sample_variant(
                        "echo", folder / "pushed-echo", labels={"io.wayang.bench": "types"}
                    )
                    sources = {
                        "container": str(pushed.layout),
                        **{
                            kind: info["file"]
                            for kind, info in sample_artifacts(folder / "artifacts").items()
                        },
                    }
                    types_to_ready(kube, sources, registry)
                if part in ("all", "execute"):
                    execute_latency(kube, image, folder)
    finally:
        if running_node is None:
            localnode.stop(cluster.layout)
        if running_cluster is None:
            local.down()


if __name__ == "__main__":
    main()
