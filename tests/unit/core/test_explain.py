"""`kubectl wayang explain`'s words: every reason the gates write has a message, and every reason
that holds a plugin back has a remedy. The enums are enumerated, so a reason, phase or approval
phase added to the operator without words here fails this module."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest
from tests import documents as d
from tests.unit.core.test_approval import record
from tests.unit.core.test_pipeline import facts

from wayang_operator.api.resources import ApprovalPhase, ConditionType, PluginPhase
from wayang_operator.core.explain import (
    OBSERVED,
    PHASE_WORDS,
    TEXTS,
    StepState,
    explain,
    short_digest,
)
from wayang_operator.core.gates import Reason
from wayang_operator.core.pipeline import Evaluation, evaluate

NOW = "2026-11-22T10:00:00Z"
MOMENT = datetime.datetime(2026, 11, 22, 10, 0, tzinfo=datetime.UTC)
C = ConditionType

WHERE: dict[Reason, tuple[ConditionType, str]] = {
    Reason.VALID: (C.VALIDATED, "True"),
    Reason.INVALID_SPEC: (C.VALIDATED, "False"),
    Reason.CONTRACT_VIOLATION: (C.VALIDATED, "False"),
    Reason.SIGNATURE_VERIFIED: (C.SIGNATURE_VERIFIED, "True"),
    Reason.SIGNATURE_NOT_REQUIRED: (C.SIGNATURE_VERIFIED, "True"),
    Reason.SIGNATURE_INVALID: (C.SIGNATURE_VERIFIED, "False"),
    Reason.REGISTRY_NOT_ALLOWED: (C.SIGNATURE_VERIFIED, "False"),
    Reason.GRANTED: (C.POWERS_GRANTED, "True"),
    Reason.CAPABILITY_NOT_GRANTED: (C.POWERS_GRANTED, "False"),
    Reason.SECRET_NOT_ALLOWED: (C.POWERS_GRANTED, "False"),
    Reason.POLICIES_DISAGREE: (C.POWERS_GRANTED, "False"),
    Reason.SCAN_PASSED: (C.SCANNED, "True"),
    Reason.SCAN_NOT_REQUIRED: (C.SCANNED, "True"),
    Reason.SCAN_PENDING: (C.SCANNED, "False"),
    Reason.SCAN_FAILED: (C.SCANNED, "False"),
    Reason.SCAN_ERROR: (C.SCANNED, "False"),
    Reason.APPROVED: (C.APPROVED, "True"),
    Reason.AUTO_APPROVED: (C.APPROVED, "True"),
    Reason.AWAITING_APPROVAL: (C.APPROVED, "False"),
    Reason.REJECTED: (C.APPROVED, "False"),
    Reason.REVOKED: (C.APPROVED, "False"),
    Reason.RESOLVED: (C.DEPENDENCIES_RESOLVED, "True"),
    Reason.UNRESOLVED: (C.DEPENDENCIES_RESOLVED, "False"),
    Reason.DEPENDENCY_CYCLE: (C.DEPENDENCIES_RESOLVED, "False"),
    Reason.NOT_MANAGED: (C.WORKLOAD_AVAILABLE, "True"),
    Reason.AVAILABLE: (C.WORKLOAD_AVAILABLE, "True"),
    Reason.DEPLOYING: (C.WORKLOAD_AVAILABLE, "False"),
    Reason.ROLLING_OUT: (C.WORKLOAD_AVAILABLE, "True"),
    Reason.SERVING_PREVIOUS: (C.WORKLOAD_AVAILABLE, "True"),
    Reason.UNLOADED: (C.WORKLOAD_AVAILABLE, "False"),
    Reason.NOT_RUNNABLE: (C.WORKLOAD_AVAILABLE, "False"),
    Reason.SECRET_MISSING: (C.WORKLOAD_AVAILABLE, "False"),
    Reason.RENDER_REFUSED: (C.WORKLOAD_AVAILABLE, "False"),
    Reason.FAILING: (C.WORKLOAD_AVAILABLE, "False"),
    Reason.QUARANTINED: (C.WORKLOAD_AVAILABLE, "False"),
    Reason.HALF_OPEN: (C.WORKLOAD_AVAILABLE, "False"),
    Reason.ROLLED_BACK: (C.WORKLOAD_AVAILABLE, "True"),
    Reason.NEW_VERSION_QUARANTINED: (C.WORKLOAD_AVAILABLE, "True"),
    Reason.DISABLED: (C.WORKLOAD_AVAILABLE, "False"),
    Reason.READY: (C.READY, "True"),
    Reason.NOT_READY: (C.READY, "False"),
    Reason.NOT_EVALUATED: (C.SCANNED, "Unknown"),
}
"""Where each reason appears, and with which status (written from pipeline.py and running.py)."""

PASSING = {
    C.VALIDATED: Reason.VALID,
    C.SIGNATURE_VERIFIED: Reason.SIGNATURE_VERIFIED,
    C.POWERS_GRANTED: Reason.GRANTED,
    C.SCANNED: Reason.SCAN_PASSED,
    C.APPROVED: Reason.APPROVED,
    C.DEPENDENCIES_RESOLVED: Reason.RESOLVED,
    C.WORKLOAD_AVAILABLE: Reason.AVAILABLE,
    C.READY: Reason.READY,
}


def condition(kind: ConditionType, reason: Reason | str, status: str, message: str) -> Any:
    return {
        "type": kind.value,
        "status": status,
        "reason": str(reason),
        "message": message,
        "lastTransitionTime": NOW,
        "observedGeneration": 1,
    }


def plugin_with(
    conditions: list[dict[str, Any]], phase: str = "Blocked", **status: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "wayang.io/v1alpha1",
        "kind": "Plugin",
        "metadata": {"name": "data-processor", "namespace": "team-a", "generation": 1},
        "spec": d.descriptor(),
        "status": {"phase": phase, "observedGeneration": 1, "conditions": conditions, **status},
    }


def only(reason: Reason, message: str = "what the operator wrote") -> dict[str, Any]:
    """Every gate passed except where `reason` belongs."""
    kind, status = WHERE[reason]
    conditions = [
        condition(other, PASSING[other], "True", "fine")
        if other is not kind
        else condition(kind, reason, status, message)
        for other in C
    ]
    if status != "True" and kind is not C.READY:
        conditions[-1] = condition(C.READY, Reason.NOT_READY, "False", f"{kind.value}: {message}")
    return plugin_with(conditions)


def test_every_reason_is_placed_and_has_words() -> None:
    assert set(WHERE) == set(Reason), "place the new reason in WHERE (and give it words)"
    assert set(TEXTS) == set(Reason), "core/explain.py TEXTS: the new reason needs its words"
    assert set(PHASE_WORDS) == set(PluginPhase)


@pytest.mark.parametrize("reason", list(Reason))
def test_each_reason_gets_a_message_and_a_remedy_unless_it_passed(reason: Reason) -> None:
    kind, status = WHERE[reason]
    explanation = explain(only(reason), now=MOMENT)
    step = next(s for s in explanation.steps if s.gate == kind.value)
    assert step.reason == reason.value
    assert step.detail == "what the operator wrote"
    assert step.message
    assert step.message != reason.value
    if status == "True":
        assert step.state is StepState.PASSED
        assert step.remedy is None
    else:
        assert step.state is not StepState.PASSED
        assert step.remedy, f"{reason} holds the plugin back: say what would unblock it"
        if step.state is not StepState.FOLLOWS:
            assert step in explanation.blocking
            assert step.message in explanation.summary or kind is C.READY


def test_gates_are_walked_in_the_pipelines_order() -> None:
    plugin = only(Reason.AWAITING_APPROVAL)
    plugin["status"]["conditions"].reverse()
    gates = [step.gate for step in explain(plugin, now=MOMENT).steps]
    assert gates == [OBSERVED, *(kind.value for kind in C)]


def dumped(evaluation: Evaluation) -> list[dict[str, Any]]:
    return [
        c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in evaluation.conditions
    ]


def test_a_real_evaluation_awaiting_approval_names_the_digest_and_the_command() -> None:
    evaluation = evaluate(facts(), NOW)
    plugin = plugin_with(
        [
            c.model_dump(mode="json", by_alias=True, exclude_none=True)
            for c in evaluation.conditions
        ],
        evaluation.phase.value,
    )
    explanation = explain(plugin, now=MOMENT)
    assert not explanation.ready
    assert explanation.summary.startswith("team-a/data-processor is awaiting approval: ")
    (approved,) = explanation.blocking
    assert approved.gate == "Approved"
    assert approved.message.startswith(
        "Awaiting approval: no approval in force for digest "
        f"{short_digest(d.SHA256)} (version 1.2.0)"
    )
    assert approved.remedy == (
        "An approver runs: kubectl wayang approve data-processor -n team-a --reason '...'"
    )
    workload = next(s for s in explanation.steps if s.gate == "Ready")
    assert workload.state is StepState.FOLLOWS


def approval_object(name: str, decision: str, phase: ApprovalPhase, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "team-a"},
        "spec": {
            "plugin": "data-processor",
            "pluginId": "com.example/data-processor",
            "version": "1.2.0",
            "digest": d.SHA256,
            "decision": decision,
            "approver": {"username": "approver-2"},
            **spec,
        },
        "status": {"phase": phase.value, "message": f"{decision} by approver-2"},
    }


def test_a_revocation_names_who_why_and_how_to_lift_it() -> None:
    records = [record("ok", "approver-1"), record("stop", "approver-2", "Revoke")]
    evaluation = evaluate(facts(approvals=records), NOW)
    plugin = plugin_with(
        [
            c.model_dump(mode="json", by_alias=True, exclude_none=True)
            for c in evaluation.conditions
        ],
        evaluation.phase.value,
    )
    revocation = approval_object("stop", "Revoke", ApprovalPhase.IN_FORCE, reason="key leaked")
    elsewhere = {**revocation, "spec": {**revocation["spec"], "plugin": "other"}}
    explanation = explain(plugin, [revocation, elsewhere], now=MOMENT)
    assert explanation.phase == "Revoked"
    step = next(s for s in explanation.steps if s.gate == "Approved")
    assert step.message.startswith("Revoked by approver-2 (PluginApproval stop): 'key leaked'")
    assert step.remedy is not None
    assert "kubectl delete pluginapproval stop -n team-a" in step.remedy


def test_stale_and_ignored_approvals_are_named() -> None:
    stale = approval_object("old", "Approve", ApprovalPhase.STALE, digest="sha256:" + "1" * 64)
    stale["status"]["message"] = "stale: for digest sha256:111…, but the plugin now has sha256:…"
    mine = approval_object("mine", "Approve", ApprovalPhase.IGNORED)
    mine["status"]["message"] = "self-approval by the publisher 'publisher-1' is not allowed"
    explanation = explain(only(Reason.AWAITING_APPROVAL), [stale, mine], now=MOMENT)
    step = explanation.blocking[0]
    assert "PluginApproval old (Approve) is Stale: stale: for digest" in step.message
    assert "PluginApproval mine (Approve) is Ignored: self-approval" in step.message


def test_one_approval_of_two_asks_for_another_approver() -> None:
    counted = approval_object("first", "Approve", ApprovalPhase.IN_FORCE)
    explanation = explain(only(Reason.AWAITING_APPROVAL), [counted], now=MOMENT)
    step = explanation.blocking[0]
    assert "approved by approver-2 so far, not enough" in step.message
    assert step.remedy is not None
    assert "distinct user" in step.remedy


def test_quarantine_says_the_last_failure_and_when_it_half_opens() -> None:
    plugin = only(Reason.QUARANTINED)
    plugin["status"]["workload"] = {
        "breaker": {
            "state": "Open",
            "failures": 5,
            "trips": 2,
            "openedAt": "2026-11-22T09:59:00Z",
            "halfOpenAfterSeconds": 100.0,
            "lastFailure": {
                "reason": "CrashLoopBackOff",
                "severity": "ERROR",
                "message": "back-off restarting",
            },
        }
    }
    step = explain(plugin, now=MOMENT).blocking[0]
    assert "breaker Open, 5 failure(s), tripped 2 time(s)" in step.message
    assert "last failure CrashLoopBackOff (ERROR): back-off restarting" in step.message
    assert "half-opens (one replica on trial) at 2026-11-22T10:00:40Z, in 40s" in step.message
    plugin["status"]["workload"]["breaker"]["needsReview"] = True
    step = explain(plugin, now=MOMENT).blocking[0]
    assert "until the plugin is approved again" in step.message
    assert step.remedy is not None
    assert "kubectl wayang approve data-processor -n team-a" in step.remedy


def test_scan_failure_lists_the_worst_findings() -> None:
    scan = {
        "status": {
            "report": {
                "vulnerabilities": [
                    {
                        "cve": "CVE-2018-18074",
                        "severity": "HIGH",
                        "package": "requests",
                        "version": "2.19.0",
                        "fixedVersion": "2.20.0",
                    }
                ]
            }
        }
    }
    step = explain(only(Reason.SCAN_FAILED), scan=scan, now=MOMENT).blocking[0]
    assert step.message.startswith("Blocked by scan: what the operator wrote.")
    assert "CVE-2018-18074 HIGH in requests 2.19.0, fixed in 2.20.0" in step.message
    assert step.remedy is not None
    assert "policy exception" in step.remedy


def test_a_generation_the_operator_has_not_seen_is_said_first() -> None:
    plugin = only(Reason.AWAITING_APPROVAL)
    plugin["metadata"]["generation"] = 3
    explanation = explain(plugin, now=MOMENT)
    first = explanation.steps[0]
    assert first.state is StepState.WAITING
    assert first.message.startswith("The operator has not seen generation 3 yet")
    assert "has not seen generation 3" in explanation.summary
    unseen = plugin_with([])
    del unseen["status"]
    assert (
        explain(unseen, now=MOMENT)
        .steps[0]
        .message.startswith("The operator has not evaluated this plugin yet")
    )


def test_a_reason_from_a_newer_operator_keeps_its_message() -> None:
    plugin = only(Reason.AWAITING_APPROVAL)
    conditions = plugin["status"]["conditions"]
    at = next(i for i, c in enumerate(conditions) if c["type"] == C.APPROVED.value)
    conditions[at] = condition(C.APPROVED, "QuorumLost", "False", "who knows")
    step = next(s for s in explain(plugin, now=MOMENT).steps if s.gate == "Approved")
    assert step.message == "QuorumLost: who knows"
    assert step.state is StepState.BLOCKED
    assert step.remedy is not None


def test_ready_and_json_shape() -> None:
    conditions = [condition(kind, PASSING[kind], "True", "fine") for kind in C]
    explanation = explain(plugin_with(conditions, "Ready"), now=MOMENT)
    assert explanation.ready
    assert explanation.blocking == ()
    assert explanation.summary == "team-a/data-processor is ready: fine."
    document = explanation.to_dict()
    assert document["ready"] is True
    assert {s["ok"] for s in document["steps"]} == {True}
    assert dataclasses.asdict(explanation)["steps"][0]["gate"] == OBSERVED
