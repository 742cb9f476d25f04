"""The Argo CD health checks (argocd/wayang.io/*/health.lua), run in gopher-lua with Argo CD's
sandbox, against the statuses the operator really writes: each is made by the pure core
(`evaluate`, the scanner) and serialised by the operator's own code (`status_of`, the merge
patch that drops nulls), never typed by hand. The enum tests make a new phase, reason or
report status fail until health.lua and docs/argocd.md say what Argo CD shows for it.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e.argocd import (
    HEALTH_STATUSES,
    KINDS,
    configmap_data,
    configmap_key,
    health,
    health_of,
    run,
)
from e2e.conftest import ROOT
from tests import documents as d
from tests.documents import mutated
from tests.unit.core.test_approval import record
from tests.unit.core.test_pipeline import facts
from tests.unit.core.test_running import CRASHED, T0, approved_facts, deployment, pod, stamp
from tests.unit.core.test_running import facts as workload_facts

from wayang_operator.api.errors import ErrorType
from wayang_operator.api.resources import (
    ApprovalPhase,
    PluginApprovalStatus,
    PluginPhase,
    PluginPolicySpec,
    PluginStatus,
    ScanReportSpec,
    ScanReportStatus,
)
from wayang_operator.api.scan import ScanStatus
from wayang_operator.controller import scans
from wayang_operator.controller.reconcile import status_of
from wayang_operator.core.attestation import Attestor
from wayang_operator.core.gates import Reason
from wayang_operator.core.pipeline import Facts, ScanFacts, evaluate
from wayang_operator.core.policy import NamedPolicy
from wayang_operator.core.reasons import PHASE_HEALTH as PHASES
from wayang_operator.core.reasons import REASONS
from wayang_operator.scanning import trivy
from wayang_operator.schemagen import argocd as generated
from wayang_operator.settings import OperatorSettings

NOW = "2026-11-22T10:00:00Z"

# ------------------------------------------------------------------------------------------------
# The mapping, as docs/argocd.md states it; health.lua must agree (the enum tests check it).

REASON_HEALTH = {reason: about.health.value for reason, about in REASONS.items()}
PHASE_HEALTH = {phase: health.value for phase, health in PHASES.items()}
"""From the one reasons table (core/reasons.py), which health.lua's tables are generated from;
the tests below run the Lua and check that it answers what the table says."""
REFINED = {Reason.DEPENDENCY_CYCLE}
"""Reasons whose health differs from their phase's: a cycle never resolves by waiting, while
the phase Unresolved mostly means a dependency that is on its way (Progressing)."""
APPROVAL_HEALTH = {
    ApprovalPhase.PENDING: "Progressing",
    ApprovalPhase.IN_FORCE: "Healthy",
    ApprovalPhase.STALE: "Suspended",
    ApprovalPhase.IGNORED: "Degraded",
}
REPORT_HEALTH = {
    ScanStatus.PASSED: "Healthy",
    ScanStatus.WARNING: "Healthy",
    ScanStatus.FAILED: "Healthy",
    ScanStatus.ERROR: "Degraded",
}

# ------------------------------------------------------------------------------------------------
# Objects as the operator writes them


def plugin_object(evaluation_facts: Facts, generation: int | None = None) -> dict[str, Any]:
    """The Plugin as stored after the operator's first status write for these facts.

    The status is `status_of` (what reconcile patches) with nulls dropped (a merge patch deletes
    them), checked against the PluginStatus model, and round-tripped through JSON."""
    evaluation = evaluate(evaluation_facts, NOW)
    digest = evaluation_facts.spec["implementation"]["digest"]
    written = {k: v for k, v in status_of(evaluation, digest).items() if v is not None}
    PluginStatus.model_validate(written)
    document = {
        "apiVersion": "wayang.io/v1alpha1",
        "kind": "Plugin",
        "metadata": {
            "name": evaluation_facts.name,
            "namespace": evaluation_facts.namespace,
            "generation": generation or evaluation_facts.generation,
        },
        "spec": evaluation_facts.spec,
        "status": written,
    }
    loaded: dict[str, Any] = json.loads(json.dumps(document))
    return loaded


def approval_object(evaluation_facts: Facts, name: str) -> dict[str, Any]:
    """A PluginApproval with the status reconcile writes for it ({phase, message})."""
    outcome = evaluate(evaluation_facts, NOW).approval
    assert outcome is not None
    verdict = outcome.records[name]
    written = {"phase": verdict.phase.value, "message": verdict.message}
    PluginApprovalStatus.model_validate(written)
    return {
        "apiVersion": "wayang.io/v1alpha1",
        "kind": "PluginApproval",
        "metadata": {"name": name, "namespace": "team-a", "generation": 1},
        "spec": d.approval()["spec"],
        "status": written,
    }


SCANNING = NamedPolicy("scan", PluginPolicySpec.model_validate({"signing": {"required": False}}))


def plugin_health(evaluation_facts: Facts, generation: int | None = None) -> dict[str, str]:
    return health_of("Plugin", plugin_object(evaluation_facts, generation))


# ------------------------------------------------------------------------------------------------
# Plugin: each situation the operator reports


def test_a_plugin_without_status_is_progressing() -> None:
    verdict = health_of("Plugin", {**d.plugin(), "metadata": {"name": "p", "generation": 1}})
    assert verdict == {
        "status": "Progressing",
        "message": "waiting for the operator to evaluate the plugin",
    }


def test_awaiting_approval_is_suspended_and_says_whose_approval_is_missing() -> None:
    verdict = plugin_health(facts())
    assert verdict["status"] == "Suspended"
    assert verdict["message"].startswith("AwaitingApproval: Approved: policy 'relaxed' needs 1")


def test_approved_and_ready_is_healthy() -> None:
    verdict = plugin_health(facts(approvals=[record("a", "approver-1")]))
    assert verdict == {
        "status": "Healthy",
        "message": "Ready: verified, scanned, approved and resolved",
    }


def test_ready_with_its_pods_serving_is_healthy_and_deploying_is_progressing() -> None:
    deploying = plugin_health(approved_facts(workload_facts(None)))
    assert deploying["status"] == "Progressing"
    assert deploying["message"].startswith("Deploying: WorkloadAvailable:")
    serving = plugin_health(approved_facts(workload_facts(deployment(ready=1), [pod(ready=True)])))
    assert serving["status"] == "Healthy"


def test_a_new_version_awaiting_approval_is_suspended_while_the_old_one_serves() -> None:
    old = approved_facts(workload_facts(deployment(ready=1), [pod(ready=True)]))
    spec = mutated(old.spec, "version", "1.1.0")
    spec = mutated(spec, "implementation.digest", "sha256:" + "77" * 32)
    upgrade = Facts(**{**old.__dict__, "spec": spec, "generation": 2})
    evaluation = evaluate(upgrade, stamp(T0))
    serving = next(c for c in evaluation.conditions if c.type == "WorkloadAvailable")
    assert serving.reason == Reason.SERVING_PREVIOUS.value
    assert plugin_health(upgrade)["status"] == "Suspended"


def test_rejected_and_revoked_are_degraded() -> None:
    rejected = plugin_health(facts(approvals=[record("n", "approver-2", "Reject")]))
    assert rejected["status"] == "Degraded"
    assert rejected["message"].startswith("Rejected: Approved:")
    revoked = plugin_health(
        facts(approvals=[record("a", "approver-1"), record("r", "approver-2", "Revoke")])
    )
    assert revoked["status"] == "Degraded"
    assert "revoked by approver-2" in revoked["message"]


def test_blocked_by_its_scan_is_degraded_and_names_the_finding() -> None:
    finding = "CVE-2018-18074 (HIGH) in requests 2.19.0; policy allows up to MEDIUM"
    verdict = plugin_health(facts(policies=[SCANNING], scan=ScanFacts(False, finding)))
    assert verdict == {"status": "Degraded", "message": f"Blocked: Scanned: {finding}"}
    broken = ScanFacts(False, "trivy timed out", error=ErrorType.TIMEOUT, failed=True)
    assert plugin_health(facts(policies=[SCANNING], scan=broken))["status"] == "Degraded"


def test_waiting_for_its_scan_is_progressing() -> None:
    verdict = plugin_health(facts(policies=[SCANNING], approvals=[record("a", "approver-1")]))
    assert verdict["status"] == "Progressing"
    assert verdict["message"].startswith("Scanning: Scanned: waiting for a scan")


def test_quarantined_is_degraded() -> None:
    crashed = [pod(restarts=5, waiting="CrashLoopBackOff", last=CRASHED)]
    quarantined = approved_facts(workload_facts(deployment(), crashed))
    assert evaluate(quarantined, stamp(T0)).phase is PluginPhase.QUARANTINED
    verdict = plugin_health(quarantined)
    assert verdict["status"] == "Degraded"
    assert verdict["message"].startswith("Quarantined: WorkloadAvailable: quarantined")


def test_disabled_is_suspended() -> None:
    spec = mutated(d.descriptor(), "enabled", False)
    verdict = plugin_health(facts(spec, approvals=[record("a", "approver-1")]))
    assert verdict == {"status": "Suspended", "message": "Disabled: spec.enabled is false"}
    running = approved_facts(workload_facts(deployment(ready=1), [pod(ready=True)]))
    off = Facts(**{**running.__dict__, "spec": {**running.spec, "enabled": False}})
    assert plugin_health(off)["status"] == "Suspended"


def test_invalid_and_unresolved() -> None:
    invalid = mutated(d.descriptor(), "inputs", [{"name": "x", "schema": 5}])
    assert plugin_health(facts(invalid))["status"] == "Degraded"
    needs = mutated(d.descriptor(), "requires", ["security.jwt"])
    waiting = plugin_health(facts(needs, approvals=[record("a", "approver-1")]))
    assert waiting["status"] == "Progressing"
    assert waiting["message"].startswith("Unresolved:")


def test_a_status_of_an_older_generation_is_progressing_whatever_it_says() -> None:
    ready = facts(approvals=[record("a", "approver-1")])
    assert plugin_health(ready)["status"] == "Healthy"
    verdict = plugin_health(ready, generation=2)
    assert verdict == {
        "status": "Progressing",
        "message": "waiting for the operator to evaluate generation 2 "
        "(the status is of generation 1)",
    }


# ------------------------------------------------------------------------------------------------
# PluginApproval and ScanReport


def test_approval_phases_from_the_approval_decision() -> None:
    in_force = approval_object(facts(approvals=[record("a", "approver-1")]), "a")
    stale_facts = facts(
        mutated(d.descriptor(), "implementation.digest", "sha256:" + "77" * 32),
        approvals=[record("a", "approver-1")],
    )
    stale = approval_object(stale_facts, "a")
    unstamped = approval_object(facts(approvals=[record("x", None)]), "x")
    verdicts = health("PluginApproval", [in_force, stale, unstamped])
    assert verdicts[0] == {"status": "Healthy", "message": "InForce: Approve by approver-1"}
    assert verdicts[1]["status"] == "Suspended"
    assert verdicts[1]["message"].startswith("Stale: stale: for digest sha256:abab")
    assert verdicts[2]["status"] == "Degraded"
    assert "no identity stamped" in verdicts[2]["message"]
    fresh = {**in_force, "status": None}
    assert health_of("PluginApproval", fresh)["status"] == "Progressing"


class RecordingApi:
    """Stands in for KubeApi: keeps the status the scanner patches."""

    def __init__(self) -> None:
        self.status: dict[str, Any] = {}

    async def patch_status(
        self, plural: str, namespace: str, name: str, status: dict[str, Any]
    ) -> None:
        self.status = {k: v for k, v in status.items() if v is not None}


def scanned_report(monkeypatch: pytest.MonkeyPatch, outcome: dict[str, Any] | Exception) -> Any:
    """The ScanReport after the operator's scanner ran once, trivy replaced by `outcome`."""

    async def scan(options: trivy.TrivyOptions, target: trivy.Target) -> dict[str, Any]:
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def version(options: trivy.TrivyOptions) -> str:
        return "0.67.2"

    monkeypatch.setattr(trivy, "scan", scan)
    monkeypatch.setattr(trivy, "version", version)
    monkeypatch.setattr(trivy, "database", lambda _: trivy.Database(2, NOW, NOW))
    spec = {
        "artifact": {"coordinate": "registry.example/acme/echo", "digest": d.SHA256},
        "pluginId": "acme/echo",
        "version": "1.0.0",
    }
    api = RecordingApi()
    scanner = scans.Scanner(OperatorSettings(), api, Attestor.generate())  # type: ignore[arg-type]
    record = scans.ScanRecord("sha256-ab", ScanReportSpec.model_validate(spec), None)
    asyncio.run(scanner.scan("team-a", record, datetime.timedelta(hours=24)))
    ScanReportStatus.model_validate(api.status)
    return {
        "apiVersion": "wayang.io/v1alpha1",
        "kind": "ScanReport",
        "metadata": {"name": "sha256-ab", "namespace": "team-a", "generation": 1},
        "spec": spec,
        "status": json.loads(json.dumps(api.status)),
    }


def test_scan_reports_are_healthy_once_scanned_and_degraded_when_the_scan_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    vulnerable = {
        "Results": [
            {
                "Target": "requests",
                "Vulnerabilities": [
                    {
                        "VulnerabilityID": "CVE-2018-18074",
                        "PkgName": "requests",
                        "InstalledVersion": "2.19.0",
                        "FixedVersion": "2.20.0",
                        "Severity": "HIGH",
                    }
                ],
            }
        ]
    }
    failed = scanned_report(monkeypatch, vulnerable)
    assert failed["status"]["report"]["status"] == "FAILED"
    clean = scanned_report(monkeypatch, {"Results": []})
    timeout = scanned_report(
        monkeypatch, trivy.ScanError(ErrorType.TIMEOUT, "trivy ran 300 s", retryable=True)
    )
    waiting = {**clean, "status": None}
    verdicts = health("ScanReport", [failed, clean, timeout, waiting])
    assert verdicts[0]["status"] == "Healthy", "a finding is each policy's business"
    assert verdicts[0]["message"].startswith("FAILED: 0 critical, 1 high, 0 medium, 0 low")
    assert verdicts[1]["status"] == "Healthy"
    assert verdicts[1]["message"].startswith("PASSED: 0 critical")
    assert verdicts[2]["status"] == "Degraded"
    assert verdicts[2]["message"].startswith("Timeout: trivy ran 300 s (retried at ")
    assert verdicts[3] == {"status": "Progressing", "message": "waiting for the scan"}


# ------------------------------------------------------------------------------------------------
# Every enum value has a health, and Lua and this table agree


def bare_plugin(status: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "p", "generation": 3}, "status": status}


def test_every_reason_maps_to_its_health() -> None:
    """Each reason on a gate before a passed Ready: a healthy reason leaves the decision to
    Ready (Healthy), any other decides, and a reason the script lacks is Unknown."""
    assert set(REASON_HEALTH) == set(Reason), "a new Reason needs a health here and in Lua"
    reasons = list(Reason)
    passed = {"type": "Ready", "status": "True", "reason": Reason.READY.value}
    objects = [
        bare_plugin(
            {
                "observedGeneration": 3,
                "phase": "Pending",
                "conditions": [{"type": "Gate", "status": "False", "reason": r.value}, passed],
            }
        )
        for r in reasons
    ]
    verdicts = health("Plugin", objects)
    got = {reason: verdict["status"] for reason, verdict in zip(reasons, verdicts, strict=True)}
    assert got == REASON_HEALTH


def test_every_phase_maps_to_its_health() -> None:
    assert set(PHASE_HEALTH) == set(PluginPhase), "a new PluginPhase needs a health"
    phases = list(PluginPhase)
    objects = [bare_plugin({"observedGeneration": 3, "phase": p.value}) for p in phases]
    got = dict(zip(phases, (v["status"] for v in health("Plugin", objects)), strict=True))
    assert got == PHASE_HEALTH


def test_the_scripts_tables_are_generated_from_the_reasons_table() -> None:
    script = (
        Path(__file__).resolve().parents[3] / "argocd/wayang.io/Plugin/health.lua"
    ).read_text()
    assert generated.regenerate(script) == script, "run `make manifests`"


def test_a_reason_and_the_phase_it_produces_agree_unless_refined() -> None:
    phases = {reason: about.phase for reason, about in REASONS.items() if about.phase is not None}
    for reason, phase in phases.items():
        agree = REASON_HEALTH[reason] == PHASE_HEALTH[phase]
        assert agree != (reason in REFINED), (reason, phase)
    assert REASON_HEALTH[Reason.READY] == PHASE_HEALTH[PluginPhase.READY]
    assert REASON_HEALTH[Reason.DISABLED] == PHASE_HEALTH[PluginPhase.DISABLED]


def test_every_approval_phase_and_report_status_maps_to_its_health() -> None:
    assert set(APPROVAL_HEALTH) == set(ApprovalPhase)
    phases = list(ApprovalPhase)
    approvals = [{"metadata": {"generation": 1}, "status": {"phase": p.value}} for p in phases]
    got = dict(zip(phases, (v["status"] for v in health("PluginApproval", approvals)), strict=True))
    assert got == APPROVAL_HEALTH
    assert set(REPORT_HEALTH) == set(ScanStatus)
    statuses = list(ScanStatus)
    reports = [
        {"metadata": {"generation": 1}, "status": {"report": {**d.scan_report(), "status": s}}}
        for s in statuses
    ]
    got_reports = dict(
        zip(statuses, (v["status"] for v in health("ScanReport", reports)), strict=True)
    )
    assert got_reports == REPORT_HEALTH


def test_what_the_scripts_do_not_know_is_unknown_and_named() -> None:
    reason = bare_plugin(
        {
            "observedGeneration": 3,
            "conditions": [{"type": "Scanned", "status": "False", "reason": "Sideways"}],
        }
    )
    phase = bare_plugin({"observedGeneration": 3, "phase": "Sideways"})
    assert health("Plugin", [reason, phase]) == [
        {
            "status": "Unknown",
            "message": "reason Sideways of Scanned is unknown to this health check",
        },
        {"status": "Unknown", "message": "phase Sideways is unknown to this health check"},
    ]
    approval = {"metadata": {}, "status": {"phase": "Sideways"}}
    assert health_of("PluginApproval", approval)["status"] == "Unknown"
    report = {"metadata": {}, "status": {"report": {"status": "Sideways"}}}
    assert health_of("ScanReport", report)["status"] == "Unknown"


def test_the_sandbox_is_argocd_cms(tmp_path: Path) -> None:
    """argocd-cm scripts get the base and table libraries and an os with only time and date;
    string and math exist only with useOpenLibs. Every other test runs the scripts in this
    sandbox, so a script that needs more fails here before it fails for users."""
    probe = tmp_path / "health.lua"
    probe.write_text(
        "return {status = 'Healthy', message = type(string) .. ' ' .. type(math) .. ' '"
        " .. type(os.exit) .. ' ' .. type(os.time()) .. ' ' .. type(table.insert)}"
    )
    assert run(probe, [{}]) == [{"status": "Healthy", "message": "nil nil nil number function"}]
    probe.write_text("return {status = 'Fine'}")
    assert run(probe, [{}]) == [
        {"status": "Unknown", "message": "Lua returned an invalid health status"}
    ]
    probe.write_text("return {status = string.lower('HEALTHY')}")
    with pytest.raises(AssertionError, match="attempt to index a non-table object"):
        run(probe, [{}])


# ------------------------------------------------------------------------------------------------
# docs/argocd.md carries exactly these scripts

DOC = ROOT / "docs" / "argocd.md"


def yaml_blocks(path: Path) -> list[Any]:
    text = path.read_text()
    return [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", text, re.S)]


def test_the_documented_argocd_cm_holds_exactly_the_scripts() -> None:
    configmaps = [
        block
        for block in yaml_blocks(DOC)
        if isinstance(block, dict) and block.get("metadata", {}).get("name") == "argocd-cm"
    ]
    assert len(configmaps) == 1, "docs/argocd.md shows the argocd-cm snippet once"
    data = configmaps[0]["data"]
    wanted = configmap_data()
    shown = {key: value for key, value in data.items() if key.startswith("resource.custom")}
    assert shown == wanted, (
        "docs/argocd.md drifted from argocd/wayang.io/*/health.lua; regenerate the snippet with "
        "`.venv/bin/python -m e2e.argocd`"
    )
    assert set(wanted) == {configmap_key(kind) for kind in KINDS}


def test_the_documented_mapping_is_the_tested_one() -> None:
    """Every row of the doc's tables is the health this module asserts and the Lua returns."""
    rows = re.findall(r"^\| `(\w+)` \| [^|]*\| (\w+) \|$", DOC.read_text(), re.M)
    documented: dict[str, set[str]] = {}
    for name, shown in rows:
        documented.setdefault(name, set()).add(shown)
    tables: list[dict[Any, str]] = [REASON_HEALTH, PHASE_HEALTH, APPROVAL_HEALTH, REPORT_HEALTH]
    for table in tables:
        for value, wanted in table.items():
            assert documented.get(value.value) == {wanted}, (value, documented.get(value.value))
    assert set().union(*documented.values()) <= HEALTH_STATUSES
