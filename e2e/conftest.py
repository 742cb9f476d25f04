"""The e2e tier: tests against a real Kubernetes API server.

Which cluster, in order of preference:
1. `--kubeconfig PATH` (or `$KUBECONFIG`): any cluster, e.g. a kind cluster on a laptop, as long as
   the Wayang operator is not installed on it (`preflight` says what the suite needs and refuses
   a cluster that does not have it, before any test runs);
2. `--kind`: create a throwaway kind cluster (needs Docker and `kind` on PATH) and delete it after;
3. otherwise a local control plane of the suite's own (`e2e/localcluster`, built from upstream
   sources, state in `.cluster/e2e/`), started for the session from a clean slate and stopped at
   its end. The cluster `make demo` or `make cluster-up` keeps in `.cluster/` is never touched,
   except that the host's one node is lent to the session (`node.lend_host`) when a test needs
   one, and given back, with its images, afterwards.

The users approver-1, approver-2 and publisher-1 come from the local cluster's kubeconfig; on any
other cluster they are made through the CertificateSigningRequest API (signer
kubernetes.io/kube-apiserver-client), so the same tests run everywhere.
"""

from __future__ import annotations

import base64
import contextlib
import json
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
    local: local.Layout | None = None
    """The local cluster's folder when the session runs on the suite's own local cluster."""

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
        admin = Kube(kubectl or "kubectl", Path(given), None)
        problems = preflight(admin)
        if problems:
            pytest.exit(refusal(Path(given), problems), returncode=4)
        yield _installed(_with_csr_users(admin, folder))
        return
    layout = local.e2e_layout()
    cluster = local.up(layout)
    users = {identity.user: identity.user for identity in local.USERS}
    try:
        yield _installed(
            Kube(
                kubectl or str(cluster.kubectl),
                cluster.layout.kubeconfig,
                local.CLUSTER_NAME,
                users,
                layout,
            )
        )
    finally:
        local.down(layout)


WEBHOOK_CONFIGURATION = "wayang-e2e.wayang.io"
"""The name of the webhook configurations the suite's operator processes manage."""
E2E_TENANT_LABEL = "wayang-e2e/tenant"
"""The label by which the suite's own PluginPolicies select their test's namespace."""
WAYANG = ".wayang.io"
"""How the operator's webhooks are named."""
MINIMUM_MINOR = 30
"""ValidatingAdmissionPolicy is GA from Kubernetes 1.30."""


def preflight(kube: Kube) -> list[str]:
    """What keeps a cluster the suite did not make from being one it can test on, in words.

    The suite runs its own operator processes with their own webhooks and PluginPolicies. An
    operator already installed (the Helm chart, a `make demo`) would answer the same admission
    requests and reconcile the same Plugins, and its policies would govern the test namespaces:
    tests would fail in ways that look like product bugs. Leftovers of an earlier session of this
    suite (its webhook configuration) are removed instead of reported.
    """
    problems = []
    version = kube.run("version", "-o", "json", check=False)
    if version.returncode != 0:
        return [f"the API server does not answer: {version.stderr.strip()[:300]}"]
    server = yaml.safe_load(version.stdout).get("serverVersion") or {}
    minor = int("".join(c for c in str(server.get("minor", "0")) if c.isdigit()) or 0)
    if (str(server.get("major")), minor) < ("1", MINIMUM_MINOR):
        problems.append(
            f"Kubernetes {server.get('gitVersion')}: the suite needs 1.{MINIMUM_MINOR} or newer "
            "(ValidatingAdmissionPolicy)"
        )
    allowed = kube.run("auth", "can-i", "*", "*", "--all-namespaces", check=False)
    if allowed.stdout.strip() != "yes":
        problems.append(
            "the kubeconfig's user is not a cluster admin (`kubectl auth can-i '*' '*'` says "
            f"{allowed.stdout.strip() or allowed.stderr.strip()[:200]}): the suite installs CRDs, "
            "webhooks and RBAC, and signs client certificates for its test users"
        )
    for kind in ("validatingwebhookconfigurations", "mutatingwebhookconfigurations"):
        listed = kube.run("get", kind, "-o", "json", check=False)
        for item in (yaml.safe_load(listed.stdout) or {}).get("items", []) if listed.stdout else []:
            name = item["metadata"]["name"]
            hooks = [
                h["name"] for h in item.get("webhooks") or [] if h["name"].endswith(".wayang.io")
            ]
            if not hooks:
                continue
            if name == WEBHOOK_CONFIGURATION:
                kube.run("delete", kind, name, "--ignore-not-found", check=False)
                continue
            problems.append(
                f"{kind[:-1]}/{name} sends wayang.io objects to an installed operator "
                f"({', '.join(hooks)})"
            )
    deployments = kube.run(
        "get", "deployments", "--all-namespaces", "-l", "app.kubernetes.io/name=wayang-operator",
        "-o", "json", check=False,
    )  # fmt: skip
    for item in (
        (yaml.safe_load(deployments.stdout) or {}).get("items", []) if deployments.stdout else []
    ):
        meta = item["metadata"]
        release = meta.get("labels", {}).get("app.kubernetes.io/instance", meta["name"])
        problems.append(
            f"deployment/{meta['name']} in namespace {meta['namespace']} runs the operator "
            f"(helm release {release!r}: `helm uninstall {release} -n {meta['namespace']}`)"
        )
    policies = kube.run("get", "pluginpolicies", "-o", "json", check=False)
    for item in (
        (yaml.safe_load(policies.stdout) or {}).get("items", []) if policies.returncode == 0 else []
    ):
        selector = (item.get("spec") or {}).get("namespaceSelector") or {}
        if E2E_TENANT_LABEL not in (selector.get("matchLabels") or {}):
            problems.append(
                f"pluginpolicy/{item['metadata']['name']} would govern the test namespaces "
                f"(namespaceSelector {json.dumps(selector)})"
            )
    return problems


def _items(kube: Kube, *args: str) -> list[dict[str, Any]]:
    """The items of a list, or none where the kind does not exist (yet)."""
    listed = kube.run(*args, "-o", "json", check=False)
    if listed.returncode != 0:
        return []
    return list((yaml.safe_load(listed.stdout) or {}).get("items") or [])


def refusal(kubeconfig: Path, problems: list[str]) -> str:
    lines = "\n".join(f"  - {problem}" for problem in problems)
    return (
        f"the e2e tier will not run on the cluster of {kubeconfig}:\n{lines}\n"
        "It runs its own operator processes, webhooks and PluginPolicies, and needs a cluster "
        "where no Wayang operator is installed and no other PluginPolicy exists. Either:\n"
        "  - run it on a cluster of its own: `make e2e` (the local one, started and stopped by "
        "the session) or `make e2e E2E_ARGS=--kind`;\n"
        "  - or remove the installation from this cluster first: `helm uninstall RELEASE -n "
        "NAMESPACE` and `kubectl delete pluginpolicies --all` (the CRDs may stay)."
    )


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
    root and the suite's own local cluster (with --kubeconfig or --kind the node is not ours to
    start): the tests that use it are skipped otherwise. The session borrows the host's one node
    slot (`lend_host`): a node another local cluster runs is stopped meanwhile and started again
    at the end."""
    if os.geteuid() != 0:
        pytest.skip("the local node needs root (containerd, iptables, cgroups, mounts)")
    if kube.local is None:
        pytest.skip("not the local cluster: a node is only started on e2e/localcluster's")
    with localnode.lend_host(kube.local) as started:
        yield started


@pytest.fixture(scope="session")
def registry(kube: Kube) -> local.Registry:
    """The local cluster's OCI registry (started with it, TLS from its CA): its `address`
    (host:port, the same from the host and from pods) and `ca`. Only the suite's own local
    cluster has one; with --kubeconfig or --kind the tests that push to it are skipped, for the
    node fixture's reason: the suite did not start that cluster, so it knows no registry its
    nodes trust and cannot configure their containerd (CI runs the local cluster, where these
    tests run)."""
    found = local.registry(kube.local) if kube.local is not None else None
    if found is None:
        pytest.skip(
            "not the local cluster: only e2e/localcluster's starts a registry its node trusts"
        )
    return found
