"""The Helm chart on the real cluster: what it renders is valid for the API server, and `helm
install` yields a working operator (two replicas from the operator image on the local node, the
webhooks reached through their Service with the CA the operator filled in, the chart's RBAC),
which then governs and runs a plugin from publication to execution, survives the loss of its
leader, and leaves the CRDs behind on uninstall.

The chart's operator is uninstalled at the end of the module: every other e2e module runs its own
operator process and must not meet a second one.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e import flow
from e2e.conftest import CRDS, ROOT, Kube
from e2e.flow import approval, execute, phase_becomes, pods_of, until
from e2e.localcluster import node as localnode
from e2e.localcluster.build import ensure_built
from e2e.runtimeimages import build_images, operator_image, sample_images
from e2e.scanfixtures import for_operator_pods
from wayang_operator.core.approval import REQUESTER_ANNOTATION

CHART = ROOT / "charts" / "wayang-operator"
RELEASE = "wayang-operator"
SYSTEM = "wayang-system"
INSTALL_TIMEOUT = "300s"
POLICY = {  # the chart's default policy, made workable for a test without keys
    "signing": {"required": False},
    "scan": {"required": True, "maxSeverity": "HIGH"},
    "approval": {"allowSelfApproval": False},
    "runtimeClasses": {"trusted": "", "semi-trusted": "gvisor", "untrusted": "gvisor"},
}


@pytest.fixture(scope="module")
def helm() -> Path:
    return ensure_built(["helm"])["helm"]


def run_helm(
    kube: Kube, helm: Path, *args: str, check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    context = [f"--kube-context={kube.admin_context}"] if kube.admin_context else []
    result = subprocess.run(
        [str(helm), f"--kubeconfig={kube.kubeconfig}", *context, *args],
        input=stdin, capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    if check:
        assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


def install_values(image: localnode.ImportedImage, scanning: tuple[Path, Path]) -> list[str]:
    """The chart's values for the local node: the imported image, the approver, and trivy's
    offline database and the plugin images as archives, from host folders (no registry here)."""
    cache = {"hostPath": {"path": str(scanning[0]), "type": "Directory"}}
    archives = {"hostPath": {"path": str(scanning[1]), "type": "Directory"}}
    return [
        "--set", f"image.repository={image.repository}",
        "--set", f"image.digest={image.digest}",
        "--set", "image.pullPolicy=Never",  # imported into the node: there is no registry
        "--set", "operator.leaseDuration=6",
        "--set", "operator.logLevel=DEBUG",
        "--set-json", 'rbac.approvers={"users":["approver-1"]}',
        "--set-json", f"defaultPolicy.spec={json.dumps(POLICY)}",
        "--set-json", 'operator.extraEnv=[{"name":"WAYANG_WORKLOAD_CHECK_INTERVAL","value":"1"}]',
        "--set", "scanning.offline=true",
        "--set-json", f"scanning.cache={json.dumps(cache)}",
        "--set-json", f"scanning.archives={json.dumps(archives)}",
    ]  # fmt: skip


def settled_namespace(kube: Kube) -> None:
    """Wait out a wayang-system still terminating from an earlier run (deleted without waiting)."""
    phase = kube.run(
        "get", "namespace", SYSTEM, "-o", "jsonpath={.status.phase}", check=False
    ).stdout  # fmt: skip
    if phase == "Terminating":
        kube.wait_gone("namespace", SYSTEM, timeout=180)


def webhooks_answer(kube: Kube, timeout: float = 90) -> None:
    """Ready pods are not yet a reachable webhook: kube-proxy programs the new Service's rules a
    moment later, and until then the API server's calls are refused. A server-side dry run of a
    Plugin goes through both webhooks without storing anything."""
    document = flow.plugin("webhook-probe")
    deadline = time.monotonic() + timeout
    while True:
        probe = kube.run(
            "apply", "--dry-run=server", "-f", "-",
            stdin=yaml.safe_dump(document), namespace=SYSTEM, check=False,
        )  # fmt: skip
        if probe.returncode == 0:
            return
        assert time.monotonic() < deadline, probe.stderr
        time.sleep(1)


def adopt_crds(kube: Kube) -> None:
    """The session installed the CRDs with kubectl; the release takes them over (what an admin
    does to bring existing CRDs under a chart)."""
    for path in sorted(CRDS.glob("*.yaml")):
        name = yaml.safe_load(path.read_text())["metadata"]["name"]
        kube.run("label", "crd", name, "--overwrite", "app.kubernetes.io/managed-by=Helm")
        kube.run(
            "annotate", "crd", name, "--overwrite",
            f"meta.helm.sh/release-name={RELEASE}", f"meta.helm.sh/release-namespace={SYSTEM}",
        )  # fmt: skip


@pytest.fixture(scope="module")
def images(node: localnode.Node, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("images")
    return {"operator": operator_image(node, folder), **sample_images(node, folder)}


@pytest.fixture(scope="module")
def scanning(images: dict[str, Any]) -> Iterator[tuple[Path, Path]]:
    """trivy's offline database and the echo image by digest, in host folders the operator pods
    mount (its layout from a reproducible rebuild: the node holds only the imported copy)."""
    folder = Path(tempfile.mkdtemp(prefix="wayang-chart-scan-", dir="/var/tmp"))
    try:
        (built,) = build_images(folder / "build", "sample-echo").values()
        assert built["digest"] == images["echo"].digest  # the build is reproducible
        yield for_operator_pods(folder, {built["digest"]: Path(built["layout"])})
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def installed(
    kube: Kube, helm: Path, images: dict[str, Any], scanning: tuple[Path, Path]
) -> Iterator[str]:
    settled_namespace(kube)
    adopt_crds(kube)
    started = time.monotonic()
    run_helm(
        kube, helm, "upgrade", "--install", RELEASE, str(CHART),
        "--namespace", SYSTEM, "--create-namespace", "--wait", f"--timeout={INSTALL_TIMEOUT}",
        "--force-conflicts",  # the CRDs' fields were kubectl's (adopt_crds)
        *install_values(images["operator"], scanning),
    )  # fmt: skip
    # helm 4's --wait (kstatus) once returned before the pods were ready: wait as NOTES.txt says
    kube.run(
        "rollout", "status", f"deployment/{RELEASE}", "--timeout=180s", namespace=SYSTEM
    )  # fmt: skip
    sys.stderr.write(f"helm install until ready: {time.monotonic() - started:.1f}s\n")
    webhooks_answer(kube)
    sys.stderr.write(f"until the webhooks answer: {time.monotonic() - started:.1f}s\n")
    try:
        yield SYSTEM
    finally:
        logs = kube.run(
            "logs", "-l", f"app.kubernetes.io/instance={RELEASE}", "--tail=40", "--prefix",
            namespace=SYSTEM, check=False,
        )  # fmt: skip
        sys.stderr.write(logs.stdout[-6000:])
        run_helm(kube, helm, "uninstall", RELEASE, "--namespace", SYSTEM, "--wait", check=False)
        kube.run("delete", "namespace", SYSTEM, "--wait=false", check=False)


def test_what_the_chart_renders_is_valid_for_the_api_server(kube: Kube, helm: Path) -> None:
    """Every object, in each mode the cluster can hold, passes a server-side dry run with strict
    field validation (unknown or duplicate fields fail). cert-manager's and the Prometheus
    Operator's kinds are not installed here; their objects are left out of the dry run."""
    settled_namespace(kube)
    kube.run("create", "namespace", SYSTEM, check=False)
    foreign = {"Certificate", "Issuer", "ServiceMonitor"}
    for values in (
        [],
        ["--set", "webhook.certificates=cert-manager", "--set", "runtimeClass.create=true"],
        ["--set-json", 'operator.namespaces=["a"]', "--set", "operator.workloads=false",
         "--set", "metrics.dashboard.enabled=true", "--set", "audit.store=postgres",
         "--set", "audit.postgres.existingSecret=pg", "--set-json",
         'scanning.cache={"persistentVolumeClaim":{"claimName":"trivy"}}'],
    ):  # fmt: skip
        rendered = run_helm(
            kube, helm, "template", RELEASE, str(CHART), "--namespace", SYSTEM, *values
        ).stdout
        documents = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] not in foreign]
        # a RuntimeClass named like the node's own would be a conflict, not a schema error
        for document in documents:
            if document["kind"] == "RuntimeClass":
                document["metadata"]["name"] = "gvisor-dry-run"
        result = kube.run(
            "apply", "--dry-run=server", "--validate=strict", "--server-side",
            "--force-conflicts", "-f", "-",
            stdin="\n---\n".join(yaml.safe_dump(d) for d in documents),
            check=False,
        )  # fmt: skip
        assert result.returncode == 0, f"{values}: {result.stderr}"
        assert result.stdout.count("(server dry run)") == len(documents), result.stdout


def leader(kube: Kube) -> str:
    lease = kube.get("lease", RELEASE, SYSTEM)
    return str(lease["spec"].get("holderIdentity") or "")


def operator_pods(kube: Kube) -> list[dict[str, Any]]:
    found = kube.run(
        "get", "pods", "-l", f"app.kubernetes.io/instance={RELEASE}", "-o", "json",
        namespace=SYSTEM,
    )  # fmt: skip
    return list(json.loads(found.stdout)["items"])


def ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def test_the_installed_operator_governs_and_runs_a_plugin(
    kube: Kube, installed: str, images: dict[str, Any], namespace: str, tmp_path: Path
) -> None:
    # two replicas from the operator image, one of them the leader
    pods = operator_pods(kube)
    assert len(pods) == 2
    assert all(ready(p) for p in pods)
    holder = until("a leader", lambda: leader(kube))
    assert any(holder.startswith(p["metadata"]["name"]) for p in pods), holder
    # the operator filled in the CA of the chart's webhook configurations
    for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration"):
        webhooks = kube.get(kind, RELEASE)["webhooks"]
        assert all(w["clientConfig"].get("caBundle") for w in webhooks), kind

    # a publisher, through the chart's publisher role, publishes; the webhook stamps them
    kube.run(
        "create", "rolebinding", "chart-publisher", f"--clusterrole={RELEASE}-publisher",
        "--user=publisher-1", namespace=namespace,
    )  # fmt: skip
    document = flow.sample_plugin("echo", "echo", images["echo"].repository, images["echo"].digest)
    kube.apply(document, user="publisher-1", namespace=namespace)
    plugin = kube.get("plugin", "echo", namespace)
    stamp = json.loads(plugin["metadata"]["annotations"][REQUESTER_ANNOTATION])
    assert stamp["username"] == "publisher-1"
    # scanned by trivy inside the operator pod, against the offline database
    status = phase_becomes(kube, namespace, "echo", "AwaitingApproval", timeout=120)
    assert status["observedGeneration"] == plugin["metadata"]["generation"]
    assert flow.condition(status, "Scanned")["reason"] == "ScanPassed"
    report = kube.get("scanreport", images["echo"].digest.replace(":", "-"), namespace)
    assert report["status"]["runs"] == 1

    # the publisher may not approve (RBAC); the approver of rbac.approvers may
    denied = approval(kube, namespace, "echo", "publisher-1")
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()
    assert approval(kube, namespace, "echo", "approver-1").returncode == 0
    phase_becomes(kube, namespace, "echo", "Ready", timeout=180)
    answer = execute(kube, namespace, "echo", {"text": "through the chart"})
    assert answer["output"]["text"] == "THROUGH THE CHART!"  # the echo sample shouts

    # the leader goes; the standby takes over and carries out the next decision
    doomed = next(p["metadata"]["name"] for p in pods if holder.startswith(p["metadata"]["name"]))
    kube.run("delete", "pod", doomed, "--wait=false", namespace=SYSTEM)
    until(
        "a new leader",
        lambda: (new := leader(kube)) and not new.startswith(doomed),
        timeout=60,
    )
    assert approval(kube, namespace, "echo", "approver-1", "Revoke").returncode == 0
    revoked = phase_becomes(kube, namespace, "echo", "Revoked", timeout=60)
    assert revoked["phase"] == "Revoked"
    until("the plugin's pods gone", lambda: not pods_of(kube, namespace, "echo"), timeout=90)

    # the audit log, written by both leaders, verifies and names the people
    exported = [json.loads(line) for line in wayang_audit(kube, "export").stdout.splitlines()]
    ours = [r["entry"] for r in exported if r["entry"].get("tenantId") == namespace]
    actors = [(e["eventType"], e["actor"]["id"]) for e in ours]
    assert actors[:3] == [
        ("PLUGIN_REGISTERED", "publisher-1"),
        ("PLUGIN_SCANNED", "wayang-operator"),
        ("PLUGIN_APPROVED", "approver-1"),
    ]
    assert ("PLUGIN_REVOKED", "approver-1") in actors
    kinds = [kind for kind, _ in actors]
    assert kinds.index("PLUGIN_LOADED") < kinds.index("PLUGIN_REVOKED")
    assert kinds.index("PLUGIN_REVOKED") < kinds.index("PLUGIN_UNLOADED")
    verified = wayang_audit(kube, "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def priority_level_of(kube: Kube, *request: str) -> str:
    """The uid of the priority level the API server put a request of the operator's
    ServiceAccount in: its answer names it in X-Kubernetes-PF-PriorityLevel-UID (kubectl -v=8
    prints the headers; the impersonated user is what API Priority and Fairness classifies)."""
    account = f"system:serviceaccount:{SYSTEM}:{RELEASE}"
    answer = kube.run(*request, f"--as={account}", "-v=8", "-o", "name", namespace=SYSTEM)
    uids: list[str] = re.findall(r"X-Kubernetes-Pf-Prioritylevel-Uid: (\S+)", answer.stderr)
    (uid,) = uids
    return uid


def test_the_api_server_queues_the_operator_in_its_own_priority_level(
    kube: Kube, installed: str
) -> None:
    """Under load the operator's status writes wait behind each other, not behind tenants'
    kubectl, and its Lease renewals do not wait behind its own backlog."""
    own = kube.get("prioritylevelconfiguration", RELEASE)["metadata"]["uid"]
    election = kube.get("prioritylevelconfiguration", "leader-election")["metadata"]["uid"]
    assert priority_level_of(kube, "get", "plugins") == own
    assert priority_level_of(kube, "get", "lease", RELEASE) == election
    admin = kube.run("get", "plugins", "-v=8", "-o", "name", namespace=SYSTEM)
    assert own not in admin.stderr, "anyone else's requests stay in the levels they had"


def wayang_audit(kube: Kube, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "wayang"), "audit", *args, "-n", SYSTEM],
        capture_output=True, text=True, check=False,
        env={"KUBECONFIG": str(kube.kubeconfig), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


def test_uninstall_keeps_the_crds_and_removes_the_webhooks(
    kube: Kube, helm: Path, installed: str
) -> None:
    run_helm(kube, helm, "uninstall", RELEASE, "--namespace", SYSTEM, "--wait")
    for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration"):
        gone = kube.run("get", kind, RELEASE, check=False)
        assert gone.returncode != 0
        assert "NotFound" in gone.stderr
    for path in sorted(CRDS.glob("*.yaml")):
        kube.run("get", "crd", yaml.safe_load(path.read_text())["metadata"]["name"])
    until("the operator pods gone", lambda: not operator_pods(kube), timeout=90)
