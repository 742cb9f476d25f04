"""Argo CD's view of the governance flow: the live objects of the real control plane, read with
`kubectl get -o json` at each step, go through the health checks of argocd/wayang.io in
gopher-lua with Argo CD's sandbox (e2e/argocd.py), with the operator as its own process.

Also what Argo CD's diff relies on: the operator never writes a Plugin's spec. If it did, the
generation would move and managedFields would name the operator under `f:spec`, and Argo CD
would show the Application OutOfSync after every evaluation (or self-heal fight the operator).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest

from e2e.argocd import health_of, managers_of_spec
from e2e.conftest import WEBHOOK_CONFIGURATION, Kube
from e2e.flow import approval, phase_becomes, plugin, tenant_of
from e2e.operator_process import Operator
from e2e.operator_process import running as running_operators

APPLIER = "kubectl-client-side-apply"
"""The field manager of `kubectl apply` (client-side), the way the tests publish: the user's."""


@pytest.fixture(scope="module")
def operator(kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    running = Operator(kube, tmp_path_factory.mktemp("operator"), env={"WAYANG_AUDIT_STORE": "log"})
    with running_operators(kube, running):
        yield running


@pytest.fixture
def tenant(kube: Kube, namespace: str, operator: Operator) -> Iterator[str]:
    with tenant_of(kube, namespace) as name:
        yield name


def live(kube: Kube, kind: str, name: str, namespace: str) -> dict[str, Any]:
    """The object as Argo CD's controller holds it: all of it, managedFields included."""
    out = kube.run("get", kind, name, "-o", "json", "--show-managed-fields", namespace=namespace)
    document: dict[str, Any] = json.loads(out.stdout)
    return document


def observed(kube: Kube, namespace: str, name: str, generation: int) -> dict[str, Any]:
    """The Plugin once the operator has evaluated `generation` (phase_becomes waits for a phase,
    which an edit that keeps the phase does not change)."""
    for _ in range(100):
        document = live(kube, "plugin", name, namespace)
        if (document.get("status") or {}).get("observedGeneration") == generation:
            return document
        phase_becomes(kube, namespace, name, document["status"]["phase"], timeout=0.3)
    raise AssertionError(f"generation {generation} of {name} was never observed")


def test_the_flow_as_argocd_sees_it_and_the_spec_stays_the_users(kube: Kube, tenant: str) -> None:
    document = plugin()
    # What the API server would store, through both admission webhooks, before the operator has
    # seen it: the only way to catch a live Plugin without status, as the operator is quick.
    created = kube.run(
        "apply", "--dry-run=server", "-o", "json", "-f", "-",
        stdin=json.dumps(document), user="publisher-1", namespace=tenant,
    )  # fmt: skip
    unseen = json.loads(created.stdout)
    assert "wayang.io/requested-by" in unseen["metadata"]["annotations"], "admitted"
    assert "status" not in unseen
    assert health_of("Plugin", unseen)["status"] == "Progressing"
    kube.apply(document, user="publisher-1", namespace=tenant)

    waiting = phase_becomes(kube, tenant, "pii-redactor", "AwaitingApproval")
    assert waiting["observedGeneration"] == 1
    verdict = health_of("Plugin", live(kube, "plugin", "pii-redactor", tenant))
    assert verdict["status"] == "Suspended"
    assert "needs 1 distinct approver(s), has 0" in verdict["message"]

    assert approval(kube, tenant, "pii-redactor", "approver-1").returncode == 0
    phase_becomes(kube, tenant, "pii-redactor", "Ready")
    ready = live(kube, "plugin", "pii-redactor", tenant)
    assert health_of("Plugin", ready) == {
        "status": "Healthy",
        "message": "Ready: verified, scanned, approved and resolved",
    }
    record = live(kube, "pluginapproval", "pii-redactor-approver-1-approve", tenant)
    assert health_of("PluginApproval", record) == {
        "status": "Healthy",
        "message": "InForce: Approve by approver-1",
    }

    # The user edits the spec (not the artifact): generation 2, observed, still Healthy.
    edited = plugin(description="Redacts PII, now documented better.")
    kube.apply(edited, user="publisher-1", namespace=tenant)
    applied = live(kube, "plugin", "pii-redactor", tenant)["metadata"]["generation"]
    assert applied == 2
    after_edit = observed(kube, tenant, "pii-redactor", applied)
    assert health_of("Plugin", after_edit)["status"] == "Healthy"

    # A revoke: Degraded, and the revoking approval is itself in force (Healthy).
    assert approval(kube, tenant, "pii-redactor", "approver-1", "Revoke").returncode == 0
    phase_becomes(kube, tenant, "pii-redactor", "Revoked")
    revoked = live(kube, "plugin", "pii-redactor", tenant)
    verdict = health_of("Plugin", revoked)
    assert verdict["status"] == "Degraded"
    assert "revoked by approver-1" in verdict["message"]
    revoke = live(kube, "pluginapproval", "pii-redactor-approver-1-revoke", tenant)
    assert health_of("PluginApproval", revoke)["status"] == "Healthy"

    # The operator wrote status several times, never spec.
    assert revoked["metadata"]["generation"] == applied
    assert revoked["status"]["observedGeneration"] == applied
    assert managers_of_spec(revoked) == {APPLIER}
    entries = revoked["metadata"]["managedFields"]
    writers = {e["manager"] for e in entries if e.get("subresource") == "status"}
    assert writers, "the operator's status writes are recorded (else this check proves nothing)"
    assert APPLIER not in writers


def test_an_approval_synced_before_its_plugin_is_refused(kube: Kube, tenant: str) -> None:
    """Why docs/argocd.md puts a PluginApproval in its Plugin's sync wave, never an earlier one:
    the webhook checks an approval against the Plugin it names, which must exist."""
    document = plugin()
    early = {
        "apiVersion": "wayang.io/v1alpha1",
        "kind": "PluginApproval",
        "metadata": {"name": "too-early"},
        "spec": {
            "plugin": "pii-redactor",
            "pluginId": document["spec"]["id"],
            "version": document["spec"]["version"],
            "digest": document["spec"]["implementation"]["digest"],
            "decision": "Approve",
        },
    }
    refused = kube.apply(early, user="approver-1", namespace=tenant, check=False)
    assert refused.returncode != 0
    assert "no Plugin named 'pii-redactor'" in refused.stderr
    kube.apply(document, user="publisher-1", namespace=tenant)
    assert kube.apply(early, user="approver-1", namespace=tenant, check=False).returncode == 0
    phase_becomes(kube, tenant, "pii-redactor", "Ready")
    verdict = health_of("PluginApproval", live(kube, "pluginapproval", "too-early", tenant))
    assert verdict == {"status": "Healthy", "message": "InForce: Approve by approver-1"}


def test_the_webhook_ca_bundle_is_the_operators_to_write(kube: Kube, operator: Operator) -> None:
    """docs/argocd.md tells Argo CD users to leave caBundle to the operator: every webhook of both
    configurations carries the certificate the operator made for itself at start, which no
    manifest in Git could know."""
    ours = base64.b64encode((operator.cert_dir / "cert.pem").read_bytes()).decode()
    for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
        document = json.loads(kube.run("get", kind, WEBHOOK_CONFIGURATION, "-o", "json").stdout)
        bundles = [w["clientConfig"].get("caBundle") for w in document["webhooks"]]
        assert bundles, kind
        assert set(bundles) == {ours}, f"every webhook of {kind} carries the operator's CA"
