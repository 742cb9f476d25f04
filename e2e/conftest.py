"""The e2e tier: tests against a real Kubernetes API server.

Which cluster, in order of preference:
1. `--kubeconfig PATH` (or `$KUBECONFIG`): any cluster, e.g. a kind cluster on a laptop;
2. `--kind`: create a throwaway kind cluster (needs Docker and `kind` on PATH) and delete it after;
3. otherwise the local control plane of `e2e/localcluster`, built from upstream sources: reused
   if `make cluster-up` already started one (then left running), else started for the session and
   stopped at the end, leaving no process behind.

The users approver-1, approver-2 and publisher-1 come from the local cluster's kubeconfig; on any
other cluster they are made through the CertificateSigningRequest API (signer
kubernetes.io/kube-apiserver-client), so the same tests run everywhere.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from e2e.localcluster import cluster as local
from e2e.localcluster import node as localnode
from e2e.localcluster.pki import Identity

ROOT = Path(__file__).resolve().parents[1]
CRDS = ROOT / "crds"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("wayang e2e")
    group.addoption(
        "--kubeconfig",
        default=os.environ.get("KUBECONFIG") or None,
        help="run against this cluster (default: $KUBECONFIG, else the local cluster)",
    )
    group.addoption("--kind", action="store_true", help="create a kind cluster for the session")
    group.addoption("--kubectl", default=None, help="kubectl binary (default: the one built here)")


@dataclass
class Kube:
    """kubectl against the cluster under test, as the admin or as one of the test users."""

    kubectl: str
    kubeconfig: Path
    admin_context: str | None
    user_contexts: dict[str, str] = field(default_factory=dict)

    def run(
        self,
        *args: str,
        user: str | None = None,
        namespace: str | None = None,
        stdin: str | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        command = [self.kubectl, f"--kubeconfig={self.kubeconfig}"]
        context = self.user_contexts[user] if user else self.admin_context
        if context:
            command.append(f"--context={context}")
        if namespace:
            command.append(f"--namespace={namespace}")
        result = subprocess.run(
            [*command, *args], input=stdin, capture_output=True, text=True, check=False, timeout=120
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
        return result

    def apply(
        self, document: dict[str, Any] | str, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        text = document if isinstance(document, str) else yaml.safe_dump(document)
        return self.run("apply", "-f", "-", stdin=text, **kwargs)

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        out = self.run("get", kind, name, "-o", "json", namespace=namespace).stdout
        document: dict[str, Any] = yaml.safe_load(out)
        return document

    def wait_gone(
        self, kind: str, name: str, namespace: str | None = None, timeout: float = 90
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.run("get", kind, name, namespace=namespace, check=False)
            if result.returncode != 0 and "NotFound" in result.stderr:
                return
            time.sleep(0.5)
        raise AssertionError(f"{kind}/{name} still exists after {timeout:.0f}s")


@contextlib.contextmanager
def _kind_cluster(kubeconfig: Path) -> Iterator[None]:
    if not shutil.which("kind") or not shutil.which("docker"):
        raise pytest.UsageError("--kind needs `kind` and `docker` on PATH")
    name = "wayang-e2e"
    subprocess.run(
        [
            "kind",
            "create",
            "cluster",
            "--name",
            name,
            "--kubeconfig",
            str(kubeconfig),
            "--wait",
            "180s",
        ],
        check=True,
    )
    try:
        yield
    finally:
        subprocess.run(["kind", "delete", "cluster", "--name", name], check=False)


def _csr_user(kube: Kube, identity: Identity, folder: Path) -> dict[str, Any]:
    """Issue a client certificate through the cluster's own CSR API; return a kubeconfig user."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = [x509.NameAttribute(NameOID.COMMON_NAME, identity.user)]
    subject += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, group) for group in identity.groups]
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name(subject))
        .sign(key, hashes.SHA256())
    )
    name = f"wayang-e2e-{identity.user}-{uuid.uuid4().hex[:6]}"
    kube.apply(
        {
            "apiVersion": "certificates.k8s.io/v1",
            "kind": "CertificateSigningRequest",
            "metadata": {"name": name},
            "spec": {
                "request": base64.b64encode(
                    request.public_bytes(serialization.Encoding.PEM)
                ).decode(),
                "signerName": "kubernetes.io/kube-apiserver-client",
                "usages": ["client auth"],
                "expirationSeconds": 86400,
            },
        }
    )
    kube.run("certificate", "approve", name)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        issued = kube.get("csr", name).get("status", {}).get("certificate")
        if issued:
            key_pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            return {
                "client-certificate-data": issued,
                "client-key-data": base64.b64encode(key_pem).decode(),
            }
        time.sleep(0.5)
    raise AssertionError(f"the cluster did not sign the CSR {name}")


def _with_csr_users(kube: Kube, folder: Path) -> Kube:
    """A kubeconfig next to the given one, adding a context per test user (made by CSR)."""
    kube.run("apply", "-f", str(local.USERS_MANIFEST))
    config = yaml.safe_load(kube.kubeconfig.read_text())
    current = kube.admin_context or config["current-context"]
    cluster_name = next(c["context"]["cluster"] for c in config["contexts"] if c["name"] == current)
    contexts = {}
    for identity in local.USERS:
        user = _csr_user(kube, identity, folder)
        config["users"].append({"name": f"e2e-{identity.user}", "user": user})
        config["contexts"].append(
            {
                "name": f"e2e-{identity.user}",
                "context": {"cluster": cluster_name, "user": f"e2e-{identity.user}"},
            }
        )
        contexts[identity.user] = f"e2e-{identity.user}"
    path = folder / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return Kube(kube.kubectl, path, current, contexts)


@pytest.fixture(scope="session")
def kube(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Kube]:
    folder = tmp_path_factory.mktemp("cluster")
    kubectl = request.config.getoption("--kubectl")
    given = request.config.getoption("--kubeconfig")
    if request.config.getoption("--kind"):
        kubeconfig = folder / "kind.kubeconfig"
        with _kind_cluster(kubeconfig):
            yield _installed(_with_csr_users(Kube(kubectl or "kubectl", kubeconfig, None), folder))
        return
    if given:
        yield _installed(_with_csr_users(Kube(kubectl or "kubectl", Path(given), None), folder))
        return
    running = local.current()
    cluster = running or local.up()
    users = {identity.user: identity.user for identity in local.USERS}
    try:
        yield _installed(
            Kube(
                kubectl or str(cluster.kubectl),
                cluster.layout.kubeconfig,
                local.CLUSTER_NAME,
                users,
            )
        )
    finally:
        if running is None:
            local.down()


def _installed(kube: Kube) -> Kube:
    """Install the CRDs; never removed, as on a shared cluster that deletes everyone's objects."""
    kube.run("apply", "--server-side", "--force-conflicts", "-f", str(CRDS))
    kube.run("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRDS))
    return kube


@pytest.fixture
def namespace(kube: Kube, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (without waiting)."""
    stem = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40].strip("-")
    name = f"e2e-{stem}-{uuid.uuid4().hex[:5]}"
    kube.run("create", "namespace", name)
    yield name
    kube.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def node(kube: Kube) -> Iterator[localnode.Node]:
    """The local node (e2e/localcluster/node.py), for tests whose pods must really run. It needs
    root and the local cluster (with --kubeconfig or --kind the node is not ours to start): the
    tests that use it are skipped otherwise. A node that `up --node` started is reused and left
    running; else the session starts one and stops it at the end."""
    if os.geteuid() != 0:
        pytest.skip("the local node needs root (containerd, iptables, cgroups, mounts)")
    cluster = local.current()
    if cluster is None or kube.kubeconfig.resolve() != cluster.layout.kubeconfig.resolve():
        pytest.skip("not the local cluster: a node is only started on e2e/localcluster's")
    running = localnode.current(cluster.layout)
    started = running or localnode.up(cluster.layout)
    try:
        yield started
    finally:
        if running is None:
            localnode.stop(cluster.layout)
