"""What was approved is what runs, tried as the attacker would, on the real control plane with
the operator as its own process (governance only: the workload attacks are in
test_attacks_workloads.py).

- publisher-1, after approval, grows each power of the plugin, one at a time, keeping id, version
  and digest: every growth needs fresh approvals, explain names it and who approved the old
  surface; fewer powers carry the approval over, audited; a v2 signature breaks on any growth;
- a container whose repository and coordinate disagree is refused by the API server; a plugin
  naming a registry the policy refuses makes the operator contact nothing (a listener counts);
- approver-1 deletes approver-2's revocation: nothing is revived, the deletion is audited with
  approver-1's name, and approver-1 cannot lift it alone;
- an approver who edits someone else's Plugin is its publisher and cannot approve it;
- typed identities on create and update, a typed surface, a stale surface digest;
- a ScanReport forged with a clean result for a vulnerable digest;
- a sensitive value written inline;
- Argo CD's ServiceAccount syncing an approval from Git without an approver's signature.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e import scanfixtures
from e2e.conftest import Kube
from e2e.flow import (
    approval,
    condition,
    phase_becomes,
    plugin,
    set_policy,
    tenant_of,
    until,
    wayang,
)
from e2e.operator_process import Operator, audit_export, with_audit_log
from wayang_operator.api.descriptor import PluginDescriptor
from wayang_operator.api.resources import KeyAlgorithm
from wayang_operator.core import signing
from wayang_operator.images.oci import Image

AUDIT_NAMESPACE = "wayang-e2e-attacks-audit"
BIN = Path(sys.executable).parent
ARGOCD = "system:serviceaccount:argocd:argocd-application-controller"
CANARY = "sk-canary-4f9e21d7"


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Image]:
    return scanfixtures.images(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def operator(
    kube: Kube, images: dict[str, Image], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    folder = tmp_path_factory.mktemp("operator")
    env = {**scanfixtures.offline_scanning(images.values(), folder), "WAYANG_SCAN_RETRY": "2"}
    with with_audit_log(kube, folder, AUDIT_NAMESPACE, env) as running:
        yield running


@pytest.fixture
def tenant(kube: Kube, namespace: str, operator: Operator) -> Iterator[str]:
    with tenant_of(kube, namespace) as name:
        yield name


def audit_entries(kube: Kube, tenant: str) -> list[dict[str, Any]]:
    return [e for e in audit_export(kube, AUDIT_NAMESPACE) if e.get("tenantId") == tenant]


def edited(base: dict[str, Any], **spec: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(json.dumps(base))
    document["spec"].update(spec)
    return document


# ------------------------------------------------------------------------------------------------
# The approved surface


GROWTHS: list[tuple[str, dict[str, Any], str]] = [
    ("sandbox", {"sandboxLevel": "trusted"}, "sandboxLevel untrusted → trusted"),
    (
        "network",
        {"sandboxLevel": "semi-trusted", "capabilities": ["network"]},
        "capability network added",
    ),
    ("secret", {"requiredSecrets": ["db/readonly"]}, "requiredSecrets db/readonly added"),
    ("memory", {"resourceProfile": {"memory": "2Gi"}}, "resourceProfile.memory 64Mi → 2Gi"),
    ("provides", {"provides": ["payments.charge"]}, "provides payments.charge added"),
    ("entrypoint", {"implementation": "entrypoint"}, "implementation.entrypoint changed"),
]


@pytest.mark.parametrize(("power", "change", "named"), GROWTHS, ids=[g[0] for g in GROWTHS])
def test_a_power_grown_after_approval_needs_new_approvals(
    kube: Kube, tenant: str, power: str, change: dict[str, Any], named: str
) -> None:
    set_policy(kube, tenant, {"secrets": {"allowed": ["db-*"]}})
    base = plugin()
    kube.apply(base, user="publisher-1", namespace=tenant)
    assert approval(kube, tenant, "pii-redactor", "approver-1").returncode == 0
    phase_becomes(kube, tenant, "pii-redactor", "Ready")
    if change.get("implementation") == "entrypoint":
        implementation = {**base["spec"]["implementation"], "entrypoint": "evil:run"}
        change = {"implementation": implementation}
    kube.apply(edited(base, **change), user="publisher-1", namespace=tenant)
    waiting = phase_becomes(kube, tenant, "pii-redactor", "AwaitingApproval")
    assert named in condition(waiting, "Approved")["message"]
    stale = kube.get("pluginapproval", "pii-redactor-approver-1-approve", tenant)
    assert stale["status"]["phase"] == "Stale"
    assert named in stale["status"]["message"]
    explained = wayang(kube, "explain", "pii-redactor", "-n", tenant)
    assert "powers grew since approver-1 approved it" in explained.stdout, explained.stdout
    assert named in explained.stdout
    updates = [e for e in audit_entries(kube, tenant) if e["eventType"] == "PLUGIN_UPDATED"]
    assert updates, "the spec change is audited"
    assert updates[-1]["actor"]["id"] == "publisher-1", "by who changed it, not the operator"
    # approver-2 reviews the grown powers: a fresh approval for them
    assert approval(kube, tenant, "pii-redactor", "approver-2").returncode == 0
    phase_becomes(kube, tenant, "pii-redactor", "Ready")


def test_fewer_powers_carry_the_approval_over_audited(kube: Kube, tenant: str) -> None:
    wide = plugin(sandboxLevel="semi-trusted", capabilities=["network"])
    kube.apply(wide, user="publisher-1", namespace=tenant)
    assert approval(kube, tenant, "pii-redactor", "approver-1").returncode == 0
    first = phase_becomes(kube, tenant, "pii-redactor", "Ready")
    narrow = edited(wide, sandboxLevel="untrusted", capabilities=[])
    kube.apply(narrow, user="publisher-1", namespace=tenant)
    until(
        "the new surface approved",
        lambda: (
            kube.get("plugin", "pii-redactor", tenant)["status"].get("approvedSurface")
            not in (None, first["approvedSurface"])
        ),
    )
    carried = phase_becomes(kube, tenant, "pii-redactor", "Ready")
    assert carried["approvals"][0]["carriedOver"] is True
    kinds = [
        e for e in audit_entries(kube, tenant) if e["eventType"] == "PLUGIN_APPROVAL_CARRIED_OVER"
    ]
    assert len(kinds) == 1
    assert "capability network removed" in kinds[0]["details"]["message"]
    assert "sandboxLevel semi-trusted → untrusted" in kinds[0]["details"]["message"]


def test_a_surface_signature_breaks_when_a_power_grows(kube: Kube, tenant: str) -> None:
    key = signing.generate(KeyAlgorithm.ED25519)
    trusted = {
        "name": "release",
        "algorithm": "ed25519",
        "publicKey": signing.public_pem(key).decode(),
    }
    set_policy(
        kube,
        tenant,
        {"signing": {"required": True, "requireSurface": True, "trustedKeys": [trusted]}},
    )
    signed = plugin()
    signed["spec"]["signature"] = signing.sign(
        PluginDescriptor.model_validate(signed["spec"]), key, "release"
    )
    kube.apply(signed, user="publisher-1", namespace=tenant)
    waiting = phase_becomes(kube, tenant, "pii-redactor", "AwaitingApproval")
    assert "over the approved surface" in condition(waiting, "SignatureVerified")["message"]
    kube.apply(edited(signed, sandboxLevel="trusted"), user="publisher-1", namespace=tenant)
    blocked = phase_becomes(kube, tenant, "pii-redactor", "Blocked")
    assert condition(blocked, "SignatureVerified")["reason"] == "SignatureInvalid"
    v1 = plugin()
    v1["spec"]["signature"] = signing.sign_v1(
        PluginDescriptor.model_validate(v1["spec"]), key, "release"
    )
    kube.apply(v1, user="publisher-1", namespace=tenant)
    refused = phase_becomes(kube, tenant, "pii-redactor", "Blocked")
    assert "v1 signature (artifact only)" in condition(refused, "SignatureVerified")["message"]


# ------------------------------------------------------------------------------------------------
# Registries


def container(name: str, coordinate: str, digest: str, **spec: Any) -> dict[str, Any]:
    return plugin(
        name,
        id=f"acme/{name}",
        implementation={"type": "container", "coordinate": coordinate, "digest": digest, **spec},
    )


def test_a_repository_that_is_not_where_the_image_is_pulled_from_is_refused(
    kube: Kube, tenant: str
) -> None:
    digest = "sha256:" + "ab" * 32
    split = container(
        "split", "evil.example.com/echo", digest, repository="oci://registry.example.com/team"
    )
    refused = kube.apply(split, user="publisher-1", namespace=tenant, check=False)
    assert refused.returncode != 0
    assert "spec.implementation.repository" in refused.stderr
    assert "must name the same place" in refused.stderr
    agreeing = container(
        "agreeing", "registry.example.com/team/echo:1.0", digest,
        repository="oci://registry.example.com/team",
    )  # fmt: skip
    assert kube.apply(agreeing, user="publisher-1", namespace=tenant, check=False).returncode == 0


class Listener:
    """A TCP port that counts who connects: the host a refused registry names."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(16)
        self.port = self.socket.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self.connections += 1
            connection.close()

    def close(self) -> None:
        self.socket.close()


def test_a_registry_the_policy_refuses_is_never_contacted(kube: Kube, tenant: str) -> None:
    listener = Listener()
    try:
        set_policy(
            kube, tenant,
            {"scan": {"required": True}, "allowedRegistries": ["registry.example.com/"]},
        )  # fmt: skip
        digest = "sha256:" + "cd" * 32
        evil = container("evil", f"127.0.0.1:{listener.port}/evil/echo", digest)
        kube.apply(evil, user="publisher-1", namespace=tenant)
        blocked = phase_becomes(kube, tenant, "evil", "Blocked")
        assert condition(blocked, "SignatureVerified")["reason"] == "RegistryNotAllowed"
        assert condition(blocked, "Scanned")["reason"] == "NotEvaluated"
        time.sleep(5)
        assert listener.connections == 0, "the operator connected to a refused registry"
        gone = kube.run(
            "get", "scanreport", digest.replace(":", "-"), namespace=tenant, check=False
        )
        assert gone.returncode != 0, "no scan was even requested"
        # the same plugin under a policy that allows the host: now the scanner does connect,
        # so the count above could have been more than zero
        set_policy(kube, tenant, {"scan": {"required": True}})
        until("the scanner to connect", lambda: listener.connections > 0, timeout=60)
    finally:
        listener.close()


# ------------------------------------------------------------------------------------------------
# Decisions that cannot be quietly undone


def test_deleting_another_approvers_revocation_revives_nothing(kube: Kube, tenant: str) -> None:
    kube.apply(plugin(), user="publisher-1", namespace=tenant)
    assert approval(kube, tenant, "pii-redactor", "approver-1").returncode == 0
    phase_becomes(kube, tenant, "pii-redactor", "Ready")
    revoke = approval(kube, tenant, "pii-redactor", "approver-2", "Revoke", reason="key leaked")
    assert revoke.returncode == 0
    revoked = phase_becomes(kube, tenant, "pii-redactor", "Revoked")
    assert revoked["approvals"][0]["reason"] == "key leaked", "the reason is in the status"
    name = "pii-redactor-approver-2-revoke"
    assert (
        "wayang.io/decision" in kube.get("pluginapproval", name, tenant)["metadata"]["finalizers"]
    )
    stripped = kube.run(
        "patch", "pluginapproval", name, "--type=json",
        "-p", '[{"op": "remove", "path": "/metadata/finalizers"}]',
        namespace=tenant, user="approver-1", check=False,
    )  # fmt: skip
    assert stripped.returncode != 0, "nobody but the operator lets a decision go"
    # approver-1 deletes approver-2's revocation
    kube.run("delete", "pluginapproval", name, namespace=tenant, user="approver-1")
    kube.wait_gone("pluginapproval", name, tenant)
    lifted = phase_becomes(kube, tenant, "pii-redactor", "AwaitingApproval")
    (withdrawal,) = lifted["withdrawals"]
    assert (withdrawal["by"], withdrawal["liftedBy"]) == ("approver-2", "approver-1")
    assert (
        "made before the revoke by approver-2"
        in (
            kube.get("pluginapproval", "pii-redactor-approver-1-approve", tenant)["status"][
                "message"
            ]
        )
    )
    entries = audit_entries(kube, tenant)
    withdrawn = [e for e in entries if e["eventType"] == "PLUGIN_DECISION_WITHDRAWN"]
    assert [e["actor"]["id"] for e in withdrawn] == ["approver-1"]
    revocations = [e for e in entries if e["eventType"] == "PLUGIN_REVOKED"]
    assert revocations[-1]["details"]["decisions"][0]["reason"] == "key leaked"
    # approver-1 approves again: it does not count, they lifted someone else's revocation
    assert approval(kube, tenant, "pii-redactor", "approver-1", suffix="-again").returncode == 0
    until(
        "the new approval judged",
        lambda: (
            "cannot lift it alone"
            in str(
                kube.get("pluginapproval", "pii-redactor-approver-1-approve-again", tenant).get(
                    "status"
                )
            )
        ),
    )
    assert kube.get("plugin", "pii-redactor", tenant)["status"]["phase"] == "AwaitingApproval"
    assert approval(kube, tenant, "pii-redactor", "approver-2", suffix="-anew").returncode == 0
    phase_becomes(kube, tenant, "pii-redactor", "Ready")


def test_an_approver_who_edits_someone_elses_plugin_cannot_approve_it(
    kube: Kube, tenant: str
) -> None:
    """approver-1 also has publisher rights here (tenant_of), like an approver with `edit`."""
    kube.apply(plugin(), user="publisher-1", namespace=tenant)
    retarget = plugin()
    retarget["spec"]["implementation"]["digest"] = "sha256:" + "99" * 32
    kube.apply(retarget, user="approver-1", namespace=tenant)
    refused = approval(kube, tenant, "pii-redactor", "approver-1")
    assert refused.returncode != 0
    assert "approver-1 is a publisher of Plugin pii-redactor" in refused.stderr
    publishers = json.loads(
        kube.get("plugin", "pii-redactor", tenant)["metadata"]["annotations"][
            "wayang.io/publishers"
        ]
    )
    assert publishers == ["publisher-1", "approver-1"]
    assert approval(kube, tenant, "pii-redactor", "approver-2").returncode == 0
    phase_becomes(kube, tenant, "pii-redactor", "Ready")


def test_forged_identities_and_surfaces_count_for_nothing(kube: Kube, tenant: str) -> None:
    forged = plugin()
    forged["metadata"]["annotations"] = {
        "wayang.io/publishers": '["nobody"]',
        "wayang.io/updated-by": '{"username": "nobody", "generation": 1}',
    }
    kube.apply(forged, user="publisher-1", namespace=tenant)
    meta = kube.get("plugin", "pii-redactor", tenant)["metadata"]
    assert json.loads(meta["annotations"]["wayang.io/publishers"]) == ["publisher-1"]
    assert "wayang.io/updated-by" not in meta["annotations"]
    for key, value in (
        ("wayang.io/publishers", "[]"),
        ("wayang.io/updated-by", '{"username": "approver-2", "generation": 2}'),
    ):
        edit = kube.run(
            "annotate", "plugin", "pii-redactor", "--overwrite", f"{key}={value}",
            namespace=tenant, user="publisher-1", check=False,
        )  # fmt: skip
        assert edit.returncode != 0
        assert "cannot be changed" in edit.stderr
    kube.apply(
        edited(plugin(), description="a new description"), user="publisher-1", namespace=tenant
    )
    updated = json.loads(
        kube.get("plugin", "pii-redactor", tenant)["metadata"]["annotations"][
            "wayang.io/updated-by"
        ]
    )
    assert (updated["username"], updated["generation"]) == ("publisher-1", 2)
    # an approver types the powers they would like to approve: the webhook writes the real ones
    wider = {"implementation": forged["spec"]["implementation"], "sandboxLevel": "trusted",
             "capabilities": ["network"], "resourceProfile": {}}  # fmt: skip
    assert approval(kube, tenant, "pii-redactor", "approver-1", surface=wider).returncode == 0
    stamped = kube.get("pluginapproval", "pii-redactor-approver-1-approve", tenant)["spec"]
    assert stamped["surface"]["sandboxLevel"] == "untrusted"
    assert stamped["surface"]["capabilities"] == []
    phase_becomes(kube, tenant, "pii-redactor", "Ready")
    kube.apply(edited(plugin(), sandboxLevel="trusted"), user="publisher-1", namespace=tenant)
    phase_becomes(kube, tenant, "pii-redactor", "AwaitingApproval")
    stale = approval(
        kube, tenant, "pii-redactor", "approver-2", surfaceDigest=stamped["surfaceDigest"]
    )
    assert stale.returncode != 0, "approving powers you did not see"
    assert "its powers changed since you looked" in stale.stderr


# ------------------------------------------------------------------------------------------------
# Records the operator alone writes, values nobody writes down


def test_a_forged_clean_scan_report_is_not_trusted(
    kube: Kube, tenant: str, images: dict[str, Image]
) -> None:
    set_policy(kube, tenant, {"scan": {"required": True}})
    vulnerable = images["vulnerable"]
    name = vulnerable.digest.replace(":", "-")
    kube.apply(
        {
            "apiVersion": "wayang.io/v1alpha1",
            "kind": "ScanReport",
            "metadata": {"name": name},
            "spec": {
                "artifact": {
                    "coordinate": vulnerable.name.rsplit(":", 1)[0],
                    "digest": vulnerable.digest,
                },
                "pluginId": "acme/vulnerable",
                "version": "1.2.0",
                "attestation": "Zm9yZ2VkIGJ5IGhhbmQ=",
            },
        },
        namespace=tenant,
    )
    nothing = {"criticalCount": 0, "highCount": 0, "mediumCount": 0, "lowCount": 0}
    clean = {
        "report": {"scanId": "3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f", "pluginId": "acme/vulnerable",
                   "version": "1.2.0", "status": "PASSED", "timestamp": "2026-12-01T00:00:00Z",
                   "summary": nothing},
        "runs": 1, "nextScanAt": "2099-01-01T00:00:00Z", "attestation": "Zm9yZ2Vk",
    }  # fmt: skip
    kube.run(
        "patch", "scanreport", name, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": clean}), namespace=tenant,
    )  # fmt: skip
    repository = vulnerable.name.rsplit(":", 1)[0]
    kube.apply(
        container("vulnerable", repository, vulnerable.digest), user="publisher-1", namespace=tenant
    )
    blocked = phase_becomes(kube, tenant, "vulnerable", "Blocked", timeout=90)
    assert condition(blocked, "Scanned")["reason"] == "ScanFailed", "scanned for real"
    report = kube.get("scanreport", name, tenant)
    assert report["status"]["report"]["status"] == "FAILED"
    assert report["spec"]["attestation"] != "Zm9yZ2VkIGJ5IGhhbmQ=", "taken over by the operator"


def test_an_inline_sensitive_value_is_refused_and_never_echoed(
    kube: Kube, tenant: str, operator: Operator, tmp_path: Path
) -> None:
    leaky = plugin(
        properties=[{"name": "apiKey", "type": "string", "sensitive": True}],
        configuration={"apiKey": CANARY},
    )
    refused = kube.apply(leaky, user="publisher-1", namespace=tenant, check=False)
    assert refused.returncode != 0
    assert "spec.configuration.apiKey: property 'apiKey' is sensitive" in refused.stderr
    assert CANARY not in refused.stderr
    path = tmp_path / "leaky.yaml"
    path.write_text(yaml.safe_dump(leaky))
    offline = subprocess.run(
        [str(BIN / "wayang"), "validate", str(path)], capture_output=True, text=True, check=False
    )
    assert offline.returncode == 1
    assert CANARY not in offline.stdout + offline.stderr
    assert kube.run("get", "plugin", "pii-redactor", namespace=tenant, check=False).returncode != 0
    assert CANARY not in operator.logs()


# ------------------------------------------------------------------------------------------------
# GitOps: Argo CD's ServiceAccount creates everything


def approver_key(owner: str) -> tuple[signing.PrivateKey, dict[str, str]]:
    key = signing.generate(KeyAlgorithm.ED25519)
    return key, {
        "name": f"{owner}-2026",
        "algorithm": "ed25519",
        "publicKey": signing.public_pem(key).decode(),
        "owner": owner,
    }


def test_a_git_synced_approval_counts_only_with_an_approvers_signature(
    kube: Kube, tenant: str, tmp_path: Path
) -> None:
    for role in ("wayang-local:publisher", "wayang-local:approver"):
        kube.run(
            "create", "rolebinding", f"argocd-{role.split(':')[1]}", f"--clusterrole={role}",
            f"--serviceaccount={ARGOCD.split(':')[2]}:{ARGOCD.split(':')[3]}", namespace=tenant,
        )  # fmt: skip
    alice, alice_entry = approver_key("alice")
    bob, bob_entry = approver_key("bob")
    publisher = {**alice_entry, "name": "alice-release"}
    set_policy(
        kube, tenant,
        {"signing": {"required": True, "trustedKeys": [publisher]},
         "approval": {"approverKeys": [alice_entry, bob_entry]}},
    )  # fmt: skip
    synced = plugin()
    synced["spec"]["signature"] = signing.sign(
        PluginDescriptor.model_validate(synced["spec"]), alice, "alice-release"
    )
    as_argocd = ["--as", ARGOCD, "-n", tenant]
    kube.run("apply", "-f", "-", *as_argocd, stdin=yaml.safe_dump(synced))
    phase_becomes(kube, tenant, "pii-redactor", "AwaitingApproval")

    def git_approval(key: signing.PrivateKey, name: str, *, unsigned: bool = False) -> None:
        """What an approver commits (`kubectl wayang approve --sign`), synced by Argo CD."""
        path = tmp_path / f"{name}.key"
        path.write_bytes(signing.private_pem(key))
        args = ["approve", "pii-redactor", "-n", tenant, "--reason", "reviewed in PR 42"]
        made = wayang(kube, *args, "--sign", str(path), "--key-name", f"{name}-2026")
        manifest = yaml.safe_load(made.stdout)
        if unsigned:
            del manifest["spec"]["signature"]
        manifest["metadata"]["name"] = name
        kube.run("apply", "-f", "-", *as_argocd, stdin=yaml.safe_dump(manifest))

    git_approval(bob, "unsigned", unsigned=True)
    until(
        "the unsigned approval judged",
        lambda: (
            "no valid approver signature"
            in str(kube.get("pluginapproval", "unsigned", tenant).get("status"))
        ),
    )
    git_approval(alice, "alice")
    until(
        "alice's approval judged",
        lambda: (
            "self-approval by 'alice'"
            in str(kube.get("pluginapproval", "alice", tenant).get("status"))
        ),
    )
    assert kube.get("plugin", "pii-redactor", tenant)["status"]["phase"] == "AwaitingApproval"
    git_approval(bob, "bob")
    ready = phase_becomes(kube, tenant, "pii-redactor", "Ready")
    assert ready["approvers"] == ["bob"]
