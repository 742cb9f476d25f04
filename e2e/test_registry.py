"""A container plugin whose image only the cluster's OCI registry has: `wayang push --image`
uploads the sample image (runtime-images/build.py's OCI layout, never imported into the node),
the Plugin pins `<registry>/wayang/sample-echo@<manifest digest>`, trivy pulls it from the
registry to scan it (trusting the cluster's CA through the operator's WAYANG_ARTIFACT_CA_FILE),
and the node's containerd pulls it for the pod, over TLS, trusting the registry through its
hosts.toml. The registry's access log and containerd's image list show where it came from.

The hosted (wasm) variant, fetched from `oci://` by the operator and by the pod's fetcher, is in
test_hosted_plugins.py beside the HTTP one, with that module's helpers.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from e2e.conftest import Kube
from e2e.flow import (
    approval,
    condition,
    execute,
    phase_becomes,
    pods_of,
    push,
    sample_plugin,
    scanned_tenant_of,
)
from e2e.localcluster import cluster as local
from e2e.localcluster import node as localnode
from e2e.operator_process import Operator, scanning_workloads
from e2e.runtimeimages import sample_variant

READY_TIMEOUT = 240
REPOSITORY = "wayang/sample-echo"


@pytest.fixture(scope="module")
def pushed(
    registry: local.Registry, node: localnode.Node, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """The sample echo image, pushed to the registry only: `<registry>/<repo>@<digest>`.

    With a label of its own, so its image ID (the config's digest) is one no other module
    imports: the kubelet (KEP-2535, `imagePullCredentialsVerificationPolicy`'s default) treats
    an image it never pulled as preloaded, but once it has pulled an image ID from this
    registry it verifies every other name of that ID by pulling it, and `localhost/...` names
    of imported images cannot be pulled."""
    image = sample_variant(
        "echo",
        tmp_path_factory.mktemp("images") / "echo",
        labels={"io.wayang.test": "registry-only"},
    )
    reference = f"{registry.address}/{REPOSITORY}:1.0.0"
    lines = push("--image", str(image.layout), reference, "--ca-file", str(registry.ca))
    assert lines["pinned"] == f"{registry.address}/{REPOSITORY}@{image.digest}"
    assert f"{registry.address}/{REPOSITORY}" not in node.ctr("images", "ls", "-q")
    return lines["pinned"]


@pytest.fixture(scope="module")
def operator(
    kube: Kube, registry: local.Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    folder = tmp_path_factory.mktemp("operator")
    with scanning_workloads(kube, folder, WAYANG_ARTIFACT_CA_FILE=str(registry.ca)) as running:
        yield running


@pytest.fixture
def tenant(kube: Kube, namespace: str, operator: Operator) -> Iterator[str]:
    with scanned_tenant_of(kube, namespace) as name:
        yield name


def test_a_container_plugin_is_scanned_and_pulled_from_the_registry_by_digest(
    kube: Kube, tenant: str, pushed: str, node: localnode.Node, registry: local.Registry
) -> None:
    repository, digest = pushed.split("@")
    document = sample_plugin("echo", "echo", repository, digest)
    kube.apply(document, user="publisher-1", namespace=tenant)
    awaiting = phase_becomes(kube, tenant, "echo", "AwaitingApproval", timeout=240)
    assert condition(awaiting, "Scanned")["reason"] == "ScanPassed", "trivy pulled it over TLS"
    assert approval(kube, tenant, "echo", "approver-1").returncode == 0
    phase_becomes(kube, tenant, "echo", "Ready", timeout=READY_TIMEOUT)
    assert execute(kube, tenant, "echo", {"text": "pulled"})["port"] == "echoed"

    (pod,) = pods_of(kube, tenant, "echo")
    assert pod["spec"]["containers"][0]["image"] == pushed
    (status,) = pod["status"]["containerStatuses"]
    assert status["imageID"] == pushed, "the CRI's record of where the image came from"
    assert pushed in node.ctr("images", "ls", "-q")
    assert kube.local is not None
    log = kube.local.log_file("registry").read_text()
    # a GET when the node had none of its blobs, a HEAD when it held them already (another
    # module imported the same sample image): either way containerd asked this registry
    manifest = f"/v2/{REPOSITORY}/manifests/{digest} "
    resolved = [
        line
        for line in log.splitlines()
        if manifest in line and "containerd" in line and ('"GET ' in line or '"HEAD ' in line)
    ]
    assert resolved, "containerd resolved the manifest at the registry"
