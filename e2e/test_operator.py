"""The governance flow on the real control plane, with the operator running as its own process and
the test acting as different users: publisher-1 publishes, approver-1 and approver-2 approve.

Each test has its own namespace, its own PluginPolicy (selecting only that namespace by a label),
and RoleBindings that make the test users publishers there. The admission webhooks are reached at
127.0.0.1, which suits the local control plane; for kind, pass `--webhook-host` with an address
the kind node can reach.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.conftest import Kube
from e2e.flow import (
    approval,
    condition,
    phase_becomes,
    plugin,
    reason_becomes,
    set_policy,
    tenant_of,
)
from e2e.operator_process import Operator
from e2e.operator_process import running as running_operators
from wayang_operator.api.descriptor import PluginDescriptor
from wayang_operator.api.resources import KeyAlgorithm
from wayang_operator.auditlog.log import dumps, loads
from wayang_operator.core import signing

AUDIT_NAMESPACE = "wayang-e2e-audit"
"""This module's operator keeps its audit log here (a test tampers with it at the end)."""


@pytest.fixture(scope="module")
def operator(kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    kube.run("delete", "namespace", AUDIT_NAMESPACE, "--ignore-not-found", "--wait=true")
    kube.run("create", "namespace", AUDIT_NAMESPACE)
    running = Operator(
        kube,
        tmp_path_factory.mktemp("operator"),
        env={"WAYANG_AUDIT_NAMESPACE": AUDIT_NAMESPACE},
    )
    with running_operators(kube, running):
        yield running


@pytest.fixture
def tenant(kube: Kube, namespace: str, operator: Operator) -> Iterator[str]:
    with tenant_of(kube, namespace) as name:
        yield name


def test_publish_then_approve_makes_it_ready(kube: Kube, tenant: str) -> None:
    kube.apply(plugin(), user="publisher-1", namespace=tenant)
    waiting = phase_becomes(kube, tenant, "pii-redactor", "AwaitingApproval")
    assert "needs 1 distinct approver(s), has 0" in condition(waiting, "Approved")["message"]
    refused = approval(kube, tenant, "pii-redactor", "publisher-1")
    assert refused.returncode != 0
    assert "forbidden" in refused.stderr, "publishers cannot write approvals"
    assert approval(kube, tenant, "pii-redactor", "approver-1").returncode == 0
    ready = phase_becomes(kube, tenant, "pii-redactor", "Ready")
    assert ready["approvers"] == ["approver-1"]
    assert ready["reviewStatus"] == "approved"
    record = kube.get("pluginapproval", "pii-redactor-approver-1-approve", tenant)
    assert record["status"]["phase"] == "InForce"


def test_identity_is_stamped_not_typed(kube: Kube, tenant: str) -> None:
    forged = plugin()
    forged["metadata"]["annotations"] = {"wayang.io/requested-by": '{"username": "someone-else"}'}
    kube.apply(forged, user="publisher-1", namespace=tenant)
    stamped = kube.get("plugin", "pii-redactor", tenant)["metadata"]["annotations"][
        "wayang.io/requested-by"
    ]
    assert json.loads(stamped)["username"] == "publisher-1"
    assert len(json.loads(stamped)["admissionUid"]) == 36, "the admission request's uid"
    result = approval(
        kube, tenant, "pii-redactor", "approver-1", approver={"username": "cluster-admin"}
    )
    assert result.returncode == 0, result.stderr
    record = kube.get("pluginapproval", "pii-redactor-approver-1-approve", tenant)
    assert record["spec"]["approver"]["username"] == "approver-1"
    assert (
        json.loads(record["metadata"]["annotations"]["wayang.io/requested-by"])["username"]
        == "approver-1"
    )
    edit = kube.run(
        "annotate",
        "plugin",
        "pii-redactor",
        "--overwrite",
        'wayang.io/requested-by={"username": "x"}',
        namespace=tenant,
        check=False,
    )
    assert edit.returncode != 0
    assert "cannot be changed" in edit.stderr


def test_self_approval_is_refused_when_policy_forbids_it(kube: Kube, tenant: str) -> None:
    kube.apply(plugin(), user="approver-1", namespace=tenant)
    refused = approval(kube, tenant, "pii-redactor", "approver-1")
    assert refused.returncode != 0
    assert "may not approve it" in refused.stderr
    set_policy(kube, tenant, {"approval": {"allowSelfApproval": True}})
    assert approval(kube, tenant, "pii-redactor", "approver-1").returncode == 0
    phase_becomes(kube, tenant, "pii-redactor", "Ready")


def test_two_approvers_for_a_sensitive_capability(kube: Kube, tenant: str) -> None:
    set_policy(
        kube, tenant, {"approval": {"requirements": [{"capability": "network", "approvers": 2}]}}
    )
    networked = plugin(sandboxLevel="semi-trusted", capabilities=["network"])
    kube.apply(networked, user="publisher-1", namespace=tenant)
    phase_becomes(kube, tenant, "pii-redactor", "AwaitingApproval")
    approval(kube, tenant, "pii-redactor", "approver-1")
    status = phase_becomes(kube, tenant, "pii-redactor", "AwaitingApproval")
    assert "needs 2 distinct approver(s), has 1" in condition(status, "Approved")["message"]
    approval(kube, tenant, "pii-redactor", "approver-2")
    assert phase_becomes(kube, tenant, "pii-redactor", "Ready")["approvers"] == [
        "approver-1",
        "approver-2",
    ]


def test_digest_change_after_approval_and_revoke(kube: Kube, tenant: str) -> None:
    kube.apply(plugin(), user="publisher-1", namespace=tenant)
    wrong = approval(
        kube, tenant, "pii-redactor", "approver-1", suffix="-wrong", digest="sha256:" + "00" * 32
    )
    assert wrong.returncode != 0
    assert "exact artifact" in wrong.stderr
    approval(kube, tenant, "pii-redactor", "approver-1")
    phase_becomes(kube, tenant, "pii-redactor", "Ready")
    swapped = plugin()
    swapped["spec"]["implementation"]["digest"] = "sha256:" + "ab" * 32
    kube.apply(swapped, user="publisher-1", namespace=tenant)
    phase_becomes(kube, tenant, "pii-redactor", "AwaitingApproval")
    assert (
        kube.get("pluginapproval", "pii-redactor-approver-1-approve", tenant)["status"]["phase"]
        == "Stale"
    )
    approval(kube, tenant, "pii-redactor", "approver-2")
    phase_becomes(kube, tenant, "pii-redactor", "Ready")
    approval(kube, tenant, "pii-redactor", "approver-1", "Revoke")
    revoked = phase_becomes(kube, tenant, "pii-redactor", "Revoked")
    assert revoked["reviewStatus"] == "revoked"
    assert "revoked by approver-1" in condition(revoked, "Approved")["message"]


def test_missing_dependency_waits_and_cycles_are_reported(kube: Kube, tenant: str) -> None:
    kube.apply(
        plugin("consumer", id="acme/consumer", requires=["text.redact"]),
        user="publisher-1",
        namespace=tenant,
    )
    approval(kube, tenant, "consumer", "approver-1")
    waiting = phase_becomes(kube, tenant, "consumer", "Unresolved")
    assert (
        "requires text.redact: no active plugin"
        in condition(waiting, "DependenciesResolved")["message"]
    )
    kube.apply(
        plugin("provider", id="acme/provider", provides=["text.redact"]),
        user="publisher-1",
        namespace=tenant,
    )
    approval(kube, tenant, "provider", "approver-1")
    phase_becomes(kube, tenant, "provider", "Ready")
    phase_becomes(kube, tenant, "consumer", "Ready")
    kube.apply(
        plugin("a", id="acme/a", provides=["cap.a"], requires=["cap.b"]),
        user="publisher-1",
        namespace=tenant,
    )
    kube.apply(
        plugin("b", id="acme/b", provides=["cap.b"], requires=["cap.a"]),
        user="publisher-1",
        namespace=tenant,
    )
    cycle = reason_becomes(kube, tenant, "a", "DependenciesResolved", "DependencyCycle")
    assert "a -> b -> a" in cycle["message"]


def test_bad_signature_and_unlisted_registry_are_refused(kube: Kube, tenant: str) -> None:
    key = signing.generate(KeyAlgorithm.ED25519)
    trusted = {
        "name": "release",
        "algorithm": "ed25519",
        "publicKey": signing.public_pem(key).decode(),
    }
    set_policy(kube, tenant, {"signing": {"required": True, "trustedKeys": [trusted]}})
    other = signing.generate(KeyAlgorithm.ED25519)
    forged = plugin()
    forged["spec"]["signature"] = signing.sign(
        PluginDescriptor.model_validate(forged["spec"]), other, "release"
    )
    kube.apply(forged, user="publisher-1", namespace=tenant)
    blocked = phase_becomes(kube, tenant, "pii-redactor", "Blocked")
    assert condition(blocked, "SignatureVerified")["reason"] == "SignatureInvalid"
    assert blocked["lastError"]["type"] == "SecurityError"
    deadline = time.monotonic() + 15
    while "SignatureInvalid" not in (events := kube.run("get", "events", namespace=tenant).stdout):
        assert time.monotonic() < deadline, events
        time.sleep(0.5)
    assert "Blocked" in events
    good = plugin()
    good["spec"]["signature"] = signing.sign(
        PluginDescriptor.model_validate(good["spec"]), key, "release"
    )
    kube.apply(good, user="publisher-1", namespace=tenant)
    phase_becomes(kube, tenant, "pii-redactor", "AwaitingApproval")
    set_policy(
        kube,
        tenant,
        {
            "signing": {"required": True, "trustedKeys": [trusted]},
            "allowedRegistries": ["localhost/"],
        },
    )
    registry = phase_becomes(kube, tenant, "pii-redactor", "Blocked")
    assert condition(registry, "SignatureVerified")["reason"] == "RegistryNotAllowed"
    assert "localhost/" in condition(registry, "SignatureVerified")["message"]


def test_operator_restart_converges_without_duplicate_decisions(
    kube: Kube, tenant: str, operator: Operator
) -> None:
    kube.apply(plugin(), user="publisher-1", namespace=tenant)
    phase_becomes(kube, tenant, "pii-redactor", "AwaitingApproval")
    operator.kill()
    try:
        # the operator is down: the webhook refuses (failurePolicy Fail) rather than admit unstamped
        down = approval(kube, tenant, "pii-redactor", "approver-1")
        assert down.returncode != 0
    finally:
        operator.start()
    assert approval(kube, tenant, "pii-redactor", "approver-1").returncode == 0
    phase_becomes(kube, tenant, "pii-redactor", "Ready")
    operator.kill()
    operator.start()
    time.sleep(3)  # the restarted operator re-reads everything and must decide nothing new
    assert kube.get("plugin", "pii-redactor", tenant)["status"]["phase"] == "Ready"
    approvals = [
        e
        for e in operator.audit()
        if e["eventType"] == "PLUGIN_APPROVED" and e["tenantId"] == tenant
    ]
    assert len(approvals) == 1, approvals


def test_a_late_status_write_by_someone_else_is_decided_over(
    kube: Kube, tenant: str, operator: Operator
) -> None:
    """A deposed leader that wakes up mid-write (SIGSTOP past its Lease: `make chaos` found it)
    writes a stale status after the leader's own. The leader must not trust its memory of what
    it wrote over what the cluster shows: it decides again and puts the truth back, deciding
    nothing twice. (It used to compare its decision with its own last write, find nothing to
    do, and leave the approved plugin AwaitingApproval for good.)"""
    kube.apply(plugin(), user="publisher-1", namespace=tenant)
    phase_becomes(kube, tenant, "pii-redactor", "AwaitingApproval")
    assert approval(kube, tenant, "pii-redactor", "approver-1").returncode == 0
    phase_becomes(kube, tenant, "pii-redactor", "Ready")
    time.sleep(2)  # the leader's own write is back in its index
    stale = {"status": {"phase": "AwaitingApproval"}}
    kube.run(
        "patch", "plugin", "pii-redactor", "--subresource=status", "--type=merge",
        "-p", json.dumps(stale), namespace=tenant,
    )  # fmt: skip
    phase_becomes(kube, tenant, "pii-redactor", "Ready", timeout=30)
    approvals = [
        e
        for e in operator.audit()
        if e["eventType"] == "PLUGIN_APPROVED" and e["tenantId"] == tenant
    ]
    assert len(approvals) == 1, approvals


def test_a_broken_plugin_is_invalid_and_the_operator_carries_on(kube: Kube, tenant: str) -> None:
    # schema-valid for the API server (it cannot type a port's schema), broken for the contract
    inputs = [{"name": "text", "schema": 5}, {"name": "text", "schema": {}}]
    broken = plugin("broken", inputs=inputs)
    kube.apply(broken, user="publisher-1", namespace=tenant)
    invalid = phase_becomes(kube, tenant, "broken", "Invalid")
    assert invalid["lastError"]["type"] == "ValidationError"
    assert "spec.inputs[0].schema" in condition(invalid, "Validated")["message"]
    kube.apply(plugin(), user="publisher-1", namespace=tenant)
    phase_becomes(kube, tenant, "pii-redactor", "AwaitingApproval")


def test_metrics_and_liveness_are_served(kube: Kube, tenant: str, operator: Operator) -> None:
    kube.apply(plugin(), user="publisher-1", namespace=tenant)
    phase_becomes(kube, tenant, "pii-redactor", "AwaitingApproval")
    url = f"http://127.0.0.1:{operator.ports['METRICS']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    for series in (
        'wayang_plugins{phase="AwaitingApproval"}',
        'wayang_reconcile_duration_seconds_count{outcome="written"}',
        "wayang_decisions_total",
        "wayang_leader 1.0",
    ):
        assert series in text, series
    # one series for this plugin (labels in whatever order the client writes them)
    ours = [
        line
        for line in text.splitlines()
        if line.startswith("wayang_plugin_phase{")
        and f'namespace="{tenant}"' in line
        and 'plugin="pii-redactor"' in line
    ]
    assert len(ours) == 1, ours
    assert 'phase="AwaitingApproval"' in ours[0]
    assert ours[0].endswith(" 1.0")
    admitted = [line for line in text.splitlines() if line.startswith("wayang_admission_reviews")]
    assert any('resource="plugins"' in a and 'result="allowed"' in a for a in admitted), admitted
    named = [line for line in text.splitlines() if tenant in line]
    assert all(line.startswith("wayang_plugin_phase{") for line in named), (
        "namespace and plugin names label only the per-plugin phase series"
    )
    assert operator._alive()


def audit(kube: Kube, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "wayang"), "audit", *args, "-n", AUDIT_NAMESPACE],
        capture_output=True,
        text=True,
        check=False,
        env={"KUBECONFIG": str(kube.kubeconfig), "PATH": "/usr/bin:/bin"},
    )


def test_the_audit_log_records_the_flow_and_detects_tampering(
    kube: Kube, tenant: str, tmp_path: Path
) -> None:
    """Runs last in this module: it tampers with the module's audit log."""
    kube.apply(plugin(), user="publisher-1", namespace=tenant)
    phase_becomes(kube, tenant, "pii-redactor", "AwaitingApproval")
    assert approval(kube, tenant, "pii-redactor", "approver-1").returncode == 0
    phase_becomes(kube, tenant, "pii-redactor", "Ready")
    exported = [json.loads(line) for line in audit(kube, "export").stdout.splitlines()]
    ours = [r for r in exported if r["entry"].get("tenantId") == tenant]
    flow = [(r["entry"]["eventType"], r["entry"]["actor"]["id"]) for r in ours]
    assert flow == [
        ("PLUGIN_REGISTERED", "publisher-1"),
        ("PLUGIN_APPROVED", "approver-1"),
    ], flow
    assert [r["i"] for r in ours] == sorted(r["i"] for r in ours)

    vkey = tmp_path / "audit.vkey"
    vkey.write_text(audit(kube, "pubkey").stdout)
    verified = audit(kube, "verify", "--vkey", str(vkey))
    assert verified.returncode == 0, verified.stdout + verified.stderr

    approved = ours[1]
    name, key = "wayang-audit-head", "tail"
    where = kube.get("configmap", name, AUDIT_NAMESPACE)["data"]
    # this module writes far fewer entries than a segment holds: the entry is in the open tail
    assert approved["entry"]["hash"] in where[key]
    tail = loads(where[key])
    target = next(r for r in tail if r["i"] == approved["i"])
    target["entry"]["actor"]["id"] = "approver-2"  # someone rewrites who approved
    tampered = dumps(tail)
    kube.run(
        "patch", "configmap", name, "--type=merge", "-p", json.dumps({"data": {key: tampered}}),
        namespace=AUDIT_NAMESPACE,
    )  # fmt: skip
    failed = audit(kube, "verify", "--vkey", str(vkey))
    assert failed.returncode == 1
    assert f"FAIL modified at entry {approved['i']}" in failed.stdout
    assert f"first bad index: {approved['i']}" in failed.stdout
