"""The Events a plugin's evaluation announces: one per gate decision that changed, Normal for
progress, Warning for failures, stable CamelCase reasons, nothing for an unchanged plugin."""

from __future__ import annotations

import itertools
import re
from typing import Any

from tests.unit.core.test_approval import record
from tests.unit.core.test_pipeline import LATER, NOW, RELAXED, facts

from wayang_operator.api.meta import Condition, ConditionStatus
from wayang_operator.api.resources import ConditionType, PluginPhase, PluginPolicySpec
from wayang_operator.core.gates import Gate, Reason
from wayang_operator.core.pipeline import Evaluation, evaluate
from wayang_operator.core.policy import NamedPolicy
from wayang_operator.core.reasons import REASONS, EventType
from wayang_operator.core.transitions import (
    APPROVAL_RECORDED,
    transitions,
)

TWO_APPROVERS = NamedPolicy(
    "two",
    PluginPolicySpec.model_validate(
        {
            "signing": {"required": False},
            "scan": {"required": False},
            "approval": {"requirements": [{"approvers": 2}]},
        }
    ),
)


def announced(evaluation: Evaluation) -> list[tuple[str, str]]:
    return [(t.type.value, t.reason) for t in evaluation.transitions]


def after(evaluation: Evaluation) -> dict[str, Any]:
    """What the next evaluation's facts hold of this one's status."""
    approvers = evaluation.approval.approvers if evaluation.approval else ()
    return {
        "previous": evaluation.conditions,
        "phase": evaluation.phase.value,
        "approvers": approvers,
    }


def test_every_condition_reason_is_described_once() -> None:
    """A reason added to the vocabulary without its entry in the reasons table fails here."""
    assert set(REASONS) == set(Reason)
    quiet = {r for r, about in REASONS.items() if about.event is None}
    assert quiet == {Reason.NOT_MANAGED, Reason.NOT_READY, Reason.NOT_EVALUATED}
    reasons = [about.event for about in REASONS.values() if about.event] + [APPROVAL_RECORDED]
    assert all(re.fullmatch(r"[A-Z][a-zA-Z]+", r) for r in reasons), reasons
    assert len(set(reasons)) == len(reasons), "one Event reason per condition reason"


def test_pending_then_an_approval_recorded_then_approved_and_ready() -> None:
    policies = [TWO_APPROVERS]
    first = evaluate(facts(policies=policies), NOW)
    assert announced(first) == [("Normal", "AwaitingApproval")]
    assert first.transitions[0].message.startswith("AwaitingApproval (Approved): policy 'two'")
    one = [record("a", "approver-1")]
    recorded = evaluate(facts(policies=policies, approvals=one, **after(first)), LATER)
    assert recorded.phase is PluginPhase.AWAITING_APPROVAL
    assert announced(recorded) == [("Normal", APPROVAL_RECORDED)]
    assert "approval by approver-1 recorded" in recorded.transitions[0].message
    two = [*one, record("b", "approver-2")]
    approved = evaluate(facts(policies=policies, approvals=two, **after(recorded)), LATER)
    assert approved.phase is PluginPhase.READY
    assert announced(approved) == [("Normal", "Approved"), ("Normal", "Ready")]
    again = evaluate(facts(policies=policies, approvals=two, **after(approved)), LATER)
    assert again.transitions == [], "an unchanged plugin announces nothing"


def test_a_rejection_is_a_warning() -> None:
    first = evaluate(facts(policies=[RELAXED]), NOW)
    rejected = evaluate(
        facts(approvals=[record("n", "approver-2", "Reject")], **after(first)), LATER
    )
    assert rejected.phase is PluginPhase.REJECTED
    assert announced(rejected) == [("Warning", "Rejected")]
    assert "rejected by approver-2" in rejected.transitions[0].message


def test_a_revocation_warns_and_a_serving_workload_is_unloaded() -> None:
    kind = ConditionType.WORKLOAD_AVAILABLE
    serving = [
        condition(kind, "True", Reason.AVAILABLE),
        condition(ConditionType.APPROVED, "True", Reason.APPROVED),
    ]
    gates = [
        Gate(ConditionType.APPROVED, False, Reason.REVOKED, "revoked by approver-2"),
        Gate(kind, False, Reason.UNLOADED, "no workload: Approved has not passed"),
    ]
    out = transitions(gates, serving, PluginPhase.REVOKED, "Ready")
    assert [(t.type, t.reason) for t in out] == [
        (EventType.WARNING, "Revoked"),
        (EventType.NORMAL, "Unloaded"),
    ]
    fresh = transitions(gates[1:], [], PluginPhase.AWAITING_APPROVAL, "AwaitingApproval")
    assert fresh == [], "a workload that never ran is not unloaded"


def condition(kind: ConditionType, status: str, reason: Reason) -> Condition:
    return Condition(
        type=kind.value,
        status=ConditionStatus(status),
        reason=reason.value,
        message="",
        last_transition_time=NOW,
        observed_generation=1,
    )


def test_quarantine_half_open_and_loaded_again() -> None:
    kind = ConditionType.WORKLOAD_AVAILABLE
    steps = [
        (Reason.AVAILABLE, "True", PluginPhase.READY),
        (Reason.QUARANTINED, "False", PluginPhase.QUARANTINED),
        (Reason.HALF_OPEN, "False", PluginPhase.DEGRADED),
        (Reason.AVAILABLE, "True", PluginPhase.READY),
    ]
    seen = []
    for (was, status, phase), (now, now_status, now_phase) in itertools.pairwise(steps):
        gate = Gate(kind, now_status == "True", now, f"{now.value} message")
        (out,) = transitions([gate], [condition(kind, status, was)], now_phase, phase.value)
        seen.append((out.type, out.reason))
    assert seen == [
        (EventType.WARNING, "Quarantined"),
        (EventType.NORMAL, "HalfOpen"),
        (EventType.NORMAL, "Loaded"),
    ]


def test_a_recovery_is_news_only_after_a_failure() -> None:
    kind = ConditionType.DEPENDENCIES_RESOLVED
    resolved = Gate(kind, True, Reason.RESOLVED, "all resolved")
    assert transitions([resolved], [], PluginPhase.READY, "Ready") == []
    (out,) = transitions(
        [resolved], [condition(kind, "False", Reason.UNRESOLVED)], PluginPhase.READY, "Unresolved"
    )
    assert (out.type, out.reason) == (EventType.NORMAL, "DependenciesResolved")


def test_a_phase_change_no_gate_explains_is_still_announced() -> None:
    quiet = Gate(ConditionType.READY, False, Reason.NOT_READY, "waiting")
    (out,) = transitions([quiet], [], PluginPhase.PENDING, None, failed=True)
    assert (out.type, out.reason) == (EventType.WARNING, "Pending")
    assert transitions([quiet], [], PluginPhase.PENDING, "Pending") == []
