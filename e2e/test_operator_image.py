"""The operator's image runs on the real node the way the Helm chart runs it: imported into the
node's containerd (no registry), in a runc pod as the image's own user with a read-only root
filesystem, an emptyDir on /tmp (HOME, the webhook certificate, temporary files) and one on
trivy's cache folder.

The pod cannot reach the API server yet (the local cluster's listens on 127.0.0.1), so it does
not start the operator; it checks, from inside, everything the operator needs before it talks to
Kubernetes: the image's Python imports the controller (kopf, the kubernetes client, cel-python's
re2, cryptography), the PostgreSQL audit store's binary libpq loads, every shared object of the
wheels finds its libraries in the image, the settings the image's environment gives point at the
bundled trivy and a writable cache, trivy runs and writes that cache, the console scripts work,
and nothing can be written outside the volumes.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from e2e.conftest import Kube
from e2e.localcluster import node as localnode
from e2e.runtimeimages import operator_image, operator_layout
from e2e.test_node import runtime_of

USER = 65532
CHECK = r"""
import errno, json, os, pathlib, shutil, subprocess, sys, time

started = time.monotonic()
import wayang_operator.controller.main  # the operator process's module: every handler with it
imported = time.monotonic() - started
import psycopg
from wayang_operator.settings import OperatorSettings

settings = OperatorSettings()
try:
    pathlib.Path("/usr/local/probe").write_text("x")
    root = "writable"
except OSError as error:
    root = errno.errorcode[error.errno]
site = pathlib.Path("/usr/local/lib/python3.11/dist-packages")
missing = []
for library in sorted(site.rglob("*.so*")):
    linked = subprocess.run(["ldd", str(library)], capture_output=True, text=True).stdout
    missing += [f"{library}: {line.strip()}" for line in linked.splitlines() if "not found" in line]
version = subprocess.run([settings.trivy, "--version"], capture_output=True, text=True)
# an image the way the operator scans a local archive: an OCI layout (made in /tmp by the
# project's builder), trivy caching what it learnt of the layers in the cache folder
from wayang_operator.images.oci import File, ImageSpec, build
layout = pathlib.Path("/tmp/scan-me")
shutil.rmtree(layout, ignore_errors=True)
build(ImageSpec("localhost/wayang-test/scan-me:1", [[File("/etc/hello", b"hi\n")]]), layout)
scan = subprocess.run(
    [settings.trivy, "image", "--quiet", "--scanners", "secret", "--skip-db-update", "--format",
     "json", "--cache-dir", str(settings.scan_cache_dir), "--input", str(layout)],
    capture_output=True, text=True,
)
cli = subprocess.run(["wayang", "--version"], capture_output=True, text=True)
print(json.dumps({
    "uid": os.getuid(), "gid": os.getgid(), "home": os.environ.get("HOME"),
    "root": root, "import_seconds": round(imported, 2),
    "psycopg": psycopg.pq.__impl__, "missing_libraries": missing,
    "trivy": settings.trivy, "trivy_on_path": shutil.which("trivy"),
    "operator_on_path": shutil.which("wayang-operator"),
    "scan_cache_dir": str(settings.scan_cache_dir),
    "trivy_version": [version.returncode, version.stdout.strip()],
    "scan": [scan.returncode, scan.stderr[-800:]],
    "scan_report": json.loads(scan.stdout).get("ArtifactName") if scan.returncode == 0 else None,
    "cache_written": sorted(p.name for p in settings.scan_cache_dir.iterdir())
        if settings.scan_cache_dir.is_dir() else [],
    "cli": [cli.returncode, cli.stdout.strip()],
}))
"""


@pytest.fixture(scope="module")
def image(
    node: localnode.Node, tmp_path_factory: pytest.TempPathFactory
) -> localnode.ImportedImage:
    return operator_image(node, tmp_path_factory.mktemp("operator-image"))


def run_to_completion(kube: Kube, namespace: str, pod: dict[str, Any]) -> dict[str, Any]:
    """Create the pod (once the namespace's ServiceAccount exists) and wait until it ends."""
    name = pod["metadata"]["name"]
    deadline = time.monotonic() + 30
    while kube.apply(pod, namespace=namespace, check=False).returncode != 0:
        assert time.monotonic() < deadline, f"pod {name} was never accepted"
        time.sleep(0.5)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        found = kube.get("pod", name, namespace)
        if found.get("status", {}).get("phase") in {"Succeeded", "Failed"}:
            return found
        time.sleep(1)
    described = kube.run("describe", "pod", name, namespace=namespace, check=False).stdout
    raise AssertionError(f"pod {name} did not finish:\n{described}")


def test_the_operator_image_runs_as_its_user_on_a_read_only_root(
    kube: Kube, namespace: str, node: localnode.Node, image: localnode.ImportedImage
) -> None:
    assert image.repository == "localhost/wayang/wayang-operator"
    assert image.by_digest in node.ctr("images", "list", "--quiet").split()
    name = f"operator-image-{uuid.uuid4().hex[:5]}"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 1,
            # no runAsUser: the image's own user must be non-root for the kubelet to start it
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "check",
                    "image": image.by_digest,
                    "imagePullPolicy": "Never",
                    "command": ["python3", "-c", CHECK],
                    "securityContext": {
                        "readOnlyRootFilesystem": True,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [
                        {"name": "tmp", "mountPath": "/tmp"},
                        {"name": "scan-cache", "mountPath": "/var/cache/wayang"},
                    ],
                }
            ],
            "volumes": [
                {"name": "tmp", "emptyDir": {}},
                {"name": "scan-cache", "emptyDir": {}},
            ],
        },
    }
    done = run_to_completion(kube, namespace, pod)
    logs = kube.run("logs", name, namespace=namespace, check=False)
    status = done["status"]["containerStatuses"][0]
    assert done["status"]["phase"] == "Succeeded", f"{status}\n{logs.stdout}\n{logs.stderr}"
    assert status["state"]["terminated"]["exitCode"] == 0
    assert status["imageID"].endswith(image.digest), status
    assert runtime_of(node, done) == "io.containerd.runc.v2"
    report = json.loads(logs.stdout.strip().splitlines()[-1])
    assert (report["uid"], report["gid"]) == (USER, USER), report
    assert report["root"] == "EROFS", report
    assert report["home"] == "/tmp"
    assert report["psycopg"] == "binary", report
    assert report["missing_libraries"] == [], report
    assert report["trivy"] == report["trivy_on_path"] == "/usr/local/bin/trivy", report
    assert report["operator_on_path"] == "/usr/local/bin/wayang-operator", report
    assert report["trivy_version"] == [0, "Version: 0.67.2"], report
    assert report["scan_cache_dir"] == "/var/cache/wayang/trivy", report
    assert report["scan"][0] == 0, report
    assert report["scan_report"] == "/tmp/scan-me", report
    assert report["cache_written"], f"trivy wrote nothing in its cache: {report}"
    assert report["cli"] == [0, "wayang 0.1.0"], report
    # compiled in the image: a read-only root cannot cache bytecode, and compiling the kubernetes
    # client at every start takes seconds
    assert report["import_seconds"] < 5, report


def test_the_image_is_the_one_build_py_writes(
    node: localnode.Node, image: localnode.ImportedImage
) -> None:
    """The reference the chart is given names build.py's image: its entrypoint is the console
    script, its user the non-root 65532, and the operator's code is the last, small layer."""
    layout = operator_layout(node)
    blobs = layout / "blobs" / "sha256"
    index = json.loads((layout / "index.json").read_text())
    assert index["manifests"][0]["digest"] == image.digest
    manifest = json.loads((blobs / image.digest.removeprefix("sha256:")).read_text())
    config = json.loads((blobs / manifest["config"]["digest"].removeprefix("sha256:")).read_text())
    assert config["config"]["Entrypoint"] == ["/usr/local/bin/wayang-operator"]
    assert config["config"]["User"] == f"{USER}:{USER}"
    assert "WAYANG_SCAN_CACHE_DIR=/var/cache/wayang/trivy" in config["config"]["Env"]
    sizes = [layer["size"] for layer in manifest["layers"]]
    assert len(sizes) == 4
    assert sizes[-1] < 2_000_000, f"the operator's own layer is not small: {sizes}"
