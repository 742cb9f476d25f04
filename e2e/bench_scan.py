"""Benchmark: what the operator adds to a trivy run, and how many trivy runs N plugins cost.

1. Overhead: for each test image, the median of 15 runs of trivy alone (the same command
   line) against the median of 15 interleaved runs of the operator's scan path (archive digest
   check, trivy, report conversion and cap, policy decision). Same archive, warm cache, same run.
2. Sharing: N plugins over M digests on the real control plane with the operator running; the
   trivy runs counted in the ScanReports and in the operator's `wayang_scans_total` must be M.
"""

from __future__ import annotations

import asyncio
import datetime
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

from e2e import scanfixtures
from e2e.conftest import Kube
from e2e.localcluster.cluster import CLUSTER_NAME, Layout, down, up
from e2e.operator_process import Operator
from wayang_operator.api.resources import PluginPolicySpec, ScanReportStatus
from wayang_operator.core.policy import NamedPolicy
from wayang_operator.core.scanpolicy import decide
from wayang_operator.images.oci import Image
from wayang_operator.scanning import trivy
from wayang_operator.scanning.report import to_report

ROOT = Path(__file__).resolve().parents[1]
RUNS = 15
PLUGINS, DIGESTS = 50, 3


def direct(options: trivy.TrivyOptions, image: Image) -> float:
    target = trivy.Target(str(image.layout), image.digest, local=True)
    args = trivy.command(options, target, str(image.layout))
    started = time.monotonic()
    subprocess.run(args, check=True, capture_output=True)
    return time.monotonic() - started


def through_operator(options: trivy.TrivyOptions, image: Image) -> float:
    target = trivy.Target(str(image.layout), image.digest, local=True)
    policy = NamedPolicy("bench", PluginPolicySpec())
    started = time.monotonic()
    output = asyncio.run(trivy.scan(options, target))
    now = datetime.datetime.now(datetime.UTC)
    scanned = to_report(
        output, plugin_id="p", version="1", scanner_version="x", now="2026-01-01T00:00:00Z"
    )
    status = ScanReportStatus(report=scanned.report, fixable=scanned.fixable)
    decide(status, [policy], now)
    return time.monotonic() - started


def overhead(folder: Path) -> None:
    images = scanfixtures.images(folder / "images")
    cache = scanfixtures.vulnerability_db(folder / "cache")
    options = trivy.TrivyOptions(binary=str(scanfixtures.trivy()), cache_dir=cache, offline=True)
    print(f"scan overhead (median of {RUNS}, same archive, warm trivy cache)")
    totals = [0.0, 0.0]
    for name, image in images.items():
        direct(options, image)  # warm the cache for both
        pairs = [(direct(options, image), through_operator(options, image)) for _ in range(RUNS)]
        base = statistics.median(b for b, _ in pairs)
        ours = statistics.median(o for _, o in pairs)
        totals = [totals[0] + base, totals[1] + ours]
        print(
            f"  {name:10} trivy alone {base * 1000:6.0f} ms   "
            f"operator path {ours * 1000:6.0f} ms   x{ours / base:.2f}"
        )
    print(f"  all images: x{totals[1] / totals[0]:.2f} (aim: within 10%)")


def plugin(name: str, image: Image) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(
        (ROOT / "examples/plugins/pii-redactor-wasm.yaml").read_text()
    )
    document["metadata"] = {"name": name}
    document["spec"].update(
        id=f"acme/{name}",
        implementation={
            "type": "container",
            "coordinate": image.name.rsplit(":", 1)[0],
            "digest": image.digest,
        },
    )
    return document


def items(api: client.CustomObjectsApi, plural: str) -> list[dict[str, Any]]:
    listing: Any = api.list_namespaced_custom_object("wayang.io", "v1alpha1", "default", plural)
    found: list[dict[str, Any]] = listing["items"]
    return found


def metric(operator: Operator, name: str) -> float:
    url = f"http://127.0.0.1:{operator.ports['METRICS']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{")
    )


def sharing(folder: Path) -> None:
    images = list(scanfixtures.images(folder / "shared").values())[:DIGESTS]
    layout = Layout(folder / "cluster")
    cluster = up(layout)
    try:
        config.load_kube_config(str(layout.kubeconfig))  # type: ignore[no-untyped-call]
        api = client.CustomObjectsApi()
        cluster.run_kubectl("apply", "-f", str(ROOT / "crds"))
        cluster.run_kubectl("wait", "--for=condition=Established", "crd", "--all")
        policy = {
            "apiVersion": "wayang.io/v1alpha1",
            "kind": "PluginPolicy",
            "metadata": {"name": "bench"},
            "spec": {"signing": {"required": False}},
        }
        cluster.run_kubectl("apply", "-f", "-", stdin=yaml.safe_dump(policy))
        kube = Kube(str(cluster.kubectl), layout.kubeconfig, CLUSTER_NAME)
        env = scanfixtures.offline_scanning(images, folder / "operator")
        operator = Operator(kube, folder, env=env)
        operator.start()
        try:
            started = time.monotonic()
            for index in range(PLUGINS):
                api.create_namespaced_custom_object(
                    "wayang.io",
                    "v1alpha1",
                    "default",
                    "plugins",
                    plugin(f"p{index}", images[index % DIGESTS]),
                )
            while True:
                plugins = items(api, "plugins")
                done = [
                    i
                    for i in plugins
                    if (i.get("status") or {}).get("phase") not in (None, "Scanning")
                ]
                if len(done) == PLUGINS:
                    break
                if time.monotonic() - started > 300:
                    raise RuntimeError(f"only {len(done)} of {PLUGINS} plugins decided after 300 s")
                time.sleep(0.5)
            took = time.monotonic() - started
            reports = items(api, "scanreports")
            runs = sum(r["status"]["runs"] for r in reports)
            counted = metric(operator, "wayang_scans_total")
            print(f"trivy runs for {PLUGINS} plugins on {DIGESTS} digests (must be {DIGESTS}):")
            print(
                f"  ScanReports {len(reports)}, runs recorded {runs}, "
                f"wayang_scans_total {counted:.0f}; all decided in {took:.1f} s"
            )
            if runs != DIGESTS or counted != DIGESTS:
                raise SystemExit("FAILED: scans were not shared per digest")
        finally:
            operator.stop()
    finally:
        down(layout)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="wayang-bench-scan-") as name:
        folder = Path(name)
        overhead(folder)
        sharing(folder)


if __name__ == "__main__":
    main()
