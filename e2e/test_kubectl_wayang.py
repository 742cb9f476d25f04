"""`kubectl wayang` against the real API server and a real operator process, run the way people
run it: as a subprocess with a user's kubeconfig context (approver-1, publisher-1), and once
through kubectl's own plugin discovery (`kubectl wayang ...` with `kubectl-wayang` on PATH).

The operator runs governance only (no node needed): Ready means every gate passed, so approve
and revoke show their effect within a second or two. What is proven here and not in the unit
tests: the identity is stamped by the webhook (the CLI sends none), RBAC and the self-approval
webhook refuse with a message that names the verb and resource or the rule, the digest-swap
guard creates nothing, `--wait` follows the operator's reaction, and errors for a missing
plugin or an unreachable server are one line, not a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.conftest import Kube
from e2e.flow import phase_becomes, plugin, tenant_of
from e2e.localcluster.cluster import free_port
from e2e.operator_process import Operator, with_audit_log

BIN = Path(sys.executable).parent
CLI = BIN / "kubectl-wayang"
AUDIT_NAMESPACE = "wayang-e2e-kubectl-audit"


@pytest.fixture(scope="module")
def operator(kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    with with_audit_log(kube, tmp_path_factory.mktemp("operator"), AUDIT_NAMESPACE) as running:
        yield running


@pytest.fixture
def tenant(kube: Kube, namespace: str, operator: Operator) -> Iterator[str]:
    with tenant_of(kube, namespace) as name:
        yield name


def wayang(
    kube: Kube, *args: str, user: str = "approver-1", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The CLI as a person runs it: their context of the kubeconfig, given by flags."""
    command = [str(CLI), *args, f"--kubeconfig={kube.kubeconfig}"]
    context = kube.user_contexts.get(user)
    if context:
        command.append(f"--context={context}")
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
        env={**os.environ, **(env or {})},
    )


def row(table: str, namespace: str, name: str) -> list[str]:
    lines = table.splitlines()
    header = lines[0].split()
    for line in lines[1:]:
        cells = line.split()
        if cells[:2] == [namespace, name]:
            return cells
    raise AssertionError(f"no row for {namespace}/{name} (columns {header}) in:\n{table}")


def publish(
    kube: Kube, namespace: str, user: str = "publisher-1", name: str = "pii-redactor"
) -> str:
    kube.apply(plugin(name), user=user, namespace=namespace)
    phase_becomes(kube, namespace, name, "AwaitingApproval")
    digest: str = kube.get("plugin", name, namespace)["spec"]["implementation"]["digest"]
    return digest


def approvals(kube: Kube, namespace: str) -> list[dict[str, Any]]:
    listed = kube.run("get", "pluginapprovals", "-o", "json", namespace=namespace).stdout
    items: list[dict[str, Any]] = json.loads(listed)["items"]
    return items


def test_get_explain_approve_revoke(kube: Kube, tenant: str) -> None:
    digest = publish(kube, tenant)

    listed = wayang(kube, "get", "-A")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split("\n", 1)[0].split() == [
        "NAMESPACE", "NAME", "ID", "VERSION", "PHASE", "READY", "REASON", "DIGEST", "AGE",
    ]  # fmt: skip
    cells = row(listed.stdout, tenant, "pii-redactor")
    assert cells[4:8] == ["AwaitingApproval", "False", "AwaitingApproval", digest[:19] + "…"]
    assert "\033[" not in listed.stdout, "no colour when stdout is not a terminal"

    why = wayang(kube, "explain", "pii-redactor", "-n", tenant)
    assert why.returncode == 0, why.stderr
    assert f"Awaiting approval: no approval in force for digest {digest[:19]}…" in why.stdout
    assert f"kubectl wayang approve pii-redactor -n {tenant} --reason '...'" in why.stdout
    steps = json.loads(wayang(kube, "explain", "pii-redactor", "-n", tenant, "-o", "json").stdout)
    blocked = [s["gate"] for s in steps["steps"] if s["state"] == "Blocked"]
    assert blocked == ["Approved"], steps

    approved = wayang(
        kube, "approve", "pii-redactor", "-n", tenant, "--reason", "reviewed", "--wait"
    )
    assert approved.returncode == 0, approved.stderr
    assert "done: Ready" in approved.stderr, "progress goes to stderr"
    assert "pluginapproval.wayang.io/pii-redactor-approve-" in approved.stdout
    status = kube.get("plugin", "pii-redactor", tenant)["status"]
    assert status["phase"] == "Ready"
    assert status["approvers"] == ["approver-1"], "the webhook stamped who ran the command"
    (record,) = approvals(kube, tenant)
    assert record["spec"]["digest"] == digest
    assert record["spec"]["reason"] == "reviewed"
    assert record["spec"]["approver"]["username"] == "approver-1"

    document = yaml.safe_load(wayang(kube, "get", "-n", tenant, "-o", "yaml").stdout)
    assert document["kind"] == "List"
    assert [item["status"]["phase"] for item in document["items"]] == ["Ready"]

    revoked = wayang(
        kube, "revoke", "pii-redactor", "-n", tenant, "--reason", "key leaked", "--wait"
    )
    assert revoked.returncode == 0, revoked.stderr
    status = kube.get("plugin", "pii-redactor", tenant)["status"]
    assert status["phase"] == "Revoked"
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False"
    revocation = next(a for a in approvals(kube, tenant) if a["spec"]["decision"] == "Revoke")
    name = revocation["metadata"]["name"]

    why = wayang(kube, "explain", "pii-redactor", "-n", tenant)
    assert why.returncode == 0, why.stderr
    assert why.stdout.startswith(f"{tenant}/pii-redactor is revoked")
    assert f"Revoked by approver-1 (PluginApproval {name}): 'key leaked'" in why.stdout
    assert f"kubectl delete pluginapproval {name} -n {tenant}" in why.stdout


def test_publishers_cannot_approve_and_nobody_approves_their_own(kube: Kube, tenant: str) -> None:
    publish(kube, tenant)
    refused = wayang(
        kube, "approve", "pii-redactor", "-n", tenant, "--reason", "mine", user="publisher-1"
    )
    assert refused.returncode == 1
    assert f"cannot create pluginapprovals in namespace {tenant}" in refused.stderr
    assert 'User "publisher-1" cannot create resource "pluginapprovals"' in refused.stderr
    assert "Traceback" not in refused.stderr

    publish(kube, tenant, user="approver-1", name="own-work")
    own = wayang(kube, "approve", "own-work", "-n", tenant, "--reason", "looks fine to me")
    assert own.returncode == 1
    assert (
        "approver-1 is a publisher of Plugin own-work (created it or changed its approved "
        "surface) and may not approve it" in own.stderr
    )
    assert approvals(kube, tenant) == []


def test_a_swapped_digest_is_refused_naming_both(kube: Kube, tenant: str) -> None:
    digest = publish(kube, tenant)
    reviewed = "sha256:" + "0" * 64
    refused = wayang(
        kube, "approve", "pii-redactor", "-n", tenant, "--reason", "ok", "--digest", reviewed
    )
    assert refused.returncode == 1
    assert f"you reviewed digest {reviewed} but the Plugin now has digest {digest}" in (
        refused.stderr
    )
    assert approvals(kube, tenant) == [], "nothing was created"
    same = wayang(
        kube, "approve", "pii-redactor", "-n", tenant, "--reason", "ok", "--digest", digest
    )
    assert same.returncode == 0, same.stderr
    phase_becomes(kube, tenant, "pii-redactor", "Ready")


def test_clear_errors(kube: Kube, tenant: str, tmp_path: Path) -> None:
    missing = wayang(kube, "explain", "no-such-plugin", "-n", tenant)
    assert missing.returncode == 1
    assert missing.stderr.strip() == (
        f'kubectl wayang: error: Plugin "no-such-plugin" not found in namespace {tenant}'
    )
    forbidden = wayang(kube, "get", "-A", user="publisher-1")
    assert forbidden.returncode == 1
    assert "cannot list plugins in any namespace" in forbidden.stderr
    assert "at the cluster scope" in forbidden.stderr

    config = yaml.safe_load(kube.kubeconfig.read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{free_port()}"
    dead = tmp_path / "dead.kubeconfig"
    dead.write_text(yaml.safe_dump(config))
    unreachable = subprocess.run(
        [str(CLI), "get", "--context", kube.user_contexts["approver-1"]],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, "KUBECONFIG": str(dead)},
    )
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith("kubectl wayang: error: no cluster reachable at https://")
    assert "Traceback" not in unreachable.stderr


def test_through_kubectl_plugin_discovery(kube: Kube, tenant: str) -> None:
    publish(kube, tenant)
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "KUBECONFIG": str(kube.kubeconfig),
    }
    context = kube.user_contexts["approver-1"]
    listed = subprocess.run(
        [kube.kubectl, "wayang", "get", "-n", tenant, "--context", context],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=env,
    )
    assert listed.returncode == 0, listed.stderr
    header, line = listed.stdout.splitlines()
    assert header.split()[:3] == ["NAME", "ID", "VERSION"], "no NAMESPACE column without -A"
    assert line.split()[0] == "pii-redactor"
    assert "AwaitingApproval" in line.split()
    helped = subprocess.run(
        [kube.kubectl, "wayang", "--help"], capture_output=True, text=True, check=False, env=env
    )
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: kubectl wayang")
    for command in ("get", "explain", "approve", "reject", "revoke", "validate", "audit"):
        assert f"\n  {command} " in helped.stdout
