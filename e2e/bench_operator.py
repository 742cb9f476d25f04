"""Benchmark: N Plugins under an auto-approval policy, from creation until every one is Ready.

Baseline, measured in the same run on the same control plane with the operator stopped: create
the same N objects and write one status patch each with a plain client (the API server's own
write cost for what the operator must at least do). The ratio is operator time / baseline time.
The operator's peak resident memory (VmHWM) is read from /proc after each run; a fresh operator
process serves each N, so peaks at 100 and 1,000 plugins can be compared. API requests per plugin:
the API server's own count (`apiserver_request_total`, every client) over each run, divided by N;
the baseline's is what creating and patching alone costs. `--sizes 1000 10000` for the large runs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

from e2e.conftest import Kube
from e2e.localcluster.cluster import CLUSTER_NAME, Layout, down, up
from e2e.operator_process import Operator

ROOT = Path(__file__).resolve().parents[1]
SIZES = (100, 1000)


def plugin(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(
        (ROOT / "examples/plugins/pii-redactor-wasm.yaml").read_text()
    )
    document["metadata"] = {"name": name}
    document["spec"]["enabled"] = True
    return document


def create_all(api: client.CustomObjectsApi, namespace: str, count: int) -> None:
    for index in range(count):
        api.create_namespaced_custom_object(
            "wayang.io", "v1alpha1", namespace, "plugins", plugin(f"p{index}")
        )


def baseline(api: client.CustomObjectsApi, core: client.CoreV1Api, count: int) -> float:
    namespace = f"base-{count}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    started = time.monotonic()
    create_all(api, namespace, count)
    for index in range(count):
        api.patch_namespaced_custom_object_status(
            "wayang.io",
            "v1alpha1",
            namespace,
            "plugins",
            f"p{index}",
            {"status": {"phase": "Ready"}},
        )
    took = time.monotonic() - started
    api.delete_collection_namespaced_custom_object("wayang.io", "v1alpha1", namespace, "plugins")
    return took


def ready_count(api: client.CustomObjectsApi, namespace: str) -> int:
    listing: Any = api.list_namespaced_custom_object("wayang.io", "v1alpha1", namespace, "plugins")
    items: list[dict[str, Any]] = listing["items"]
    return sum(1 for item in items if (item.get("status") or {}).get("phase") == "Ready")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def with_operator(
    operator: Operator, api: client.CustomObjectsApi, core: client.CoreV1Api, count: int
) -> tuple[float, float]:
    """Seconds until `count` new plugins are all Ready, and the operator's peak RSS (MiB)."""
    operator.start()
    try:
        namespace = f"op-{count}"
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        started = time.monotonic()
        create_all(api, namespace, count)
        while ready_count(api, namespace) < count:
            limit = max(600.0, count * 0.2)
            if time.monotonic() - started > limit:
                raise RuntimeError(f"not all {count} plugins Ready after {limit:.0f} s")
            time.sleep(0.5)
        assert operator.process is not None
        return time.monotonic() - started, peak_rss_mib(operator.process.pid)
    finally:
        operator.stop()


def requests_served(cluster: Any) -> Callable[[], float]:
    """How many requests the API server has answered so far, from its own metrics."""

    def total() -> float:
        text = cluster.run_kubectl("get", "--raw", "/metrics")
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("apiserver_request_total{")
        )

    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    sizes = parser.parse_args().sizes
    with tempfile.TemporaryDirectory(prefix="wayang-bench-operator-") as name:
        folder = Path(name)
        layout = Layout(folder / "cluster")
        cluster = up(layout)
        try:
            config.load_kube_config(str(layout.kubeconfig))  # type: ignore[no-untyped-call]
            api, core = client.CustomObjectsApi(), client.CoreV1Api()
            cluster.run_kubectl("apply", "-f", str(ROOT / "crds"))
            cluster.run_kubectl("wait", "--for=condition=Established", "crd", "--all")
            cluster.run_kubectl(
                "apply",
                "-f",
                "-",
                stdin=yaml.safe_dump(
                    {
                        "apiVersion": "wayang.io/v1alpha1",
                        "kind": "PluginPolicy",
                        "metadata": {"name": "bench"},
                        "spec": {
                            "signing": {"required": False},
                            "scan": {"required": False},
                            "approval": {
                                "autoApprove": [{"name": "everything", "expression": "true"}]
                            },
                        },
                    }
                ),
            )
            print("plugins to Ready with auto-approval")
            print("(baseline: create + one status patch each with a plain client, same cluster)")
            kube = Kube(str(cluster.kubectl), layout.kubeconfig, CLUSTER_NAME)
            operator = Operator(kube, folder)  # one instance: its ports stay valid across runs
            served = requests_served(cluster)
            for count in sizes:
                before = served()
                base = baseline(api, core, count)
                middle = served()
                took, peak = with_operator(operator, api, core, count)
                after = served()
                print(
                    f"  {count:6} plugins: baseline {base:6.1f} s   operator {took:6.1f} s   "
                    f"x{took / base:.2f}   operator peak RSS {peak:6.1f} MiB   "
                    f"API requests per plugin: baseline {(middle - before) / count:.1f}, "
                    f"with the operator {(after - middle) / count:.1f}",
                    flush=True,
                )
        finally:
            down(layout)


if __name__ == "__main__":
    main()
