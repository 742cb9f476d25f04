"""One Plugin generation through every gate: Validated, SignatureVerified, Scanned, Approved,
DependenciesResolved (governance), WorkloadAvailable (running.py), and Ready as their sum.

`evaluate` is a pure function of the facts a handler gathered. It returns the full status (the
conditions with reasons and messages, the phase for `kubectl get`, the seed's review status, the
last error as an ErrorPayload) and the audit decisions that changed since the previous status, so
a restart that re-evaluates an unchanged plugin decides nothing twice.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from ..api.audit import AuditEventType
from ..api.descriptor import PluginDescriptor
from ..api.errors import ErrorPayload, ErrorType, SuggestedAction
from ..api.meta import Condition, ConditionStatus
from ..api.resources import ConditionType, PluginPhase, ReviewStatus
from ..api.scan import ScanSummary
from ..manifests.validate import format_path, parse_model
from . import contract, signing
from .approval import ApprovalOutcome, ApprovalRecord, ApprovalState, Artifact, Requester, decide
from .dependencies import Candidate, resolve
from .gates import Gate, Reason
from .policy import NamedPolicy, registry_allowed
from .running import SERVING, Plan, WorkloadFacts
from .running import decide as decide_workload
from .transitions import Transition, transitions


@dataclass(frozen=True)
class ScanFacts:
    """What the Scanned gate needs; filled by the scanning component."""

    passed: bool
    reason: str
    summary: ScanSummary | None = None
    error: ErrorType = ErrorType.SECURITY_ERROR
    """The ErrorPayload type when the gate fails: a finding is a security error, a scan that
    could not run keeps its own type (Timeout, ToolError, ...)."""
    failed: bool = False
    """The scan itself failed (no report), as opposed to a report that fails the policy."""


@dataclass(frozen=True)
class Facts:
    """Everything `evaluate` decides from, gathered by the handler."""

    name: str
    namespace: str
    generation: int
    spec: dict[str, Any]
    publisher: Requester | None
    policies: list[NamedPolicy]
    approvals: list[ApprovalRecord] = field(default_factory=list)
    active: list[Candidate] = field(default_factory=list)
    """Plugins of the namespace that are approved, enabled and resolved."""
    namespace_plugins: list[Candidate] = field(default_factory=list)
    """All plugins of the namespace (for cycle detection)."""
    scan: ScanFacts | None = None
    """None while no scan result exists for the artifact."""
    wayang_version: str | None = None
    previous: list[Condition] = field(default_factory=list)
    workload: WorkloadFacts | None = None
    """None when this operator does not run workloads (governance only)."""
    phase: str | None = None
    """The phase the status shows now (None: never evaluated), for the Events of a change."""
    approvers: tuple[str, ...] = ()
    """The approvers the status shows now: a new one is announced while more are needed."""


@dataclass(frozen=True)
class Evaluation:
    conditions: list[Condition]
    phase: PluginPhase
    review_status: ReviewStatus
    last_error: ErrorPayload | None
    approval: ApprovalOutcome | None
    decisions: list[tuple[AuditEventType, str]]
    """Audit events for what changed since `Facts.previous`."""
    workload: Plan | None = None
    transitions: list[Transition] = field(default_factory=list)
    """The Kubernetes Events that announce what changed since `Facts.previous`."""


def _validated(facts: Facts) -> tuple[Gate, PluginDescriptor | None]:
    spec, problems = parse_model(PluginDescriptor, facts.spec)
    if spec is None:
        text = "; ".join(f"spec.{format_path(path)}: {message}" for path, message in problems)
        return Gate(
            ConditionType.VALIDATED, False, Reason.INVALID_SPEC, text, ErrorType.VALIDATION_ERROR
        ), None
    broken = contract.check(spec)
    if broken:
        text = "; ".join(str(problem) for problem in broken)
        gate = Gate(
            ConditionType.VALIDATED,
            False,
            Reason.CONTRACT_VIOLATION,
            text,
            ErrorType.VALIDATION_ERROR,
        )
        return gate, spec
    return Gate(
        ConditionType.VALIDATED, True, Reason.VALID, "the descriptor and its contract are valid"
    ), spec


def _signature(spec: PluginDescriptor, policies: list[NamedPolicy]) -> Gate:
    kind = ConditionType.SIGNATURE_VERIFIED
    verified: list[str] = []
    for policy in policies:
        refused = registry_allowed(policy, spec)
        if refused:
            return Gate(kind, False, Reason.REGISTRY_NOT_ALLOWED, refused, ErrorType.SECURITY_ERROR)
        if not policy.signing.required:
            continue
        verdict = signing.verify(spec, policy.signing.trusted_keys or [])
        if not verdict.verified:
            message = f"policy {policy.name!r} requires a signature: {verdict.reason}"
            return Gate(kind, False, Reason.SIGNATURE_INVALID, message, ErrorType.SECURITY_ERROR)
        verified.append(f"{verdict.reason} ({policy.name})")
    pinned = f"artifact pinned by {spec.implementation.digest}"
    if verified:
        return Gate(kind, True, Reason.SIGNATURE_VERIFIED, f"{pinned}; " + "; ".join(verified))
    return Gate(
        kind, True, Reason.SIGNATURE_NOT_REQUIRED, f"{pinned}; no policy requires a signature"
    )


def _scanned(facts: Facts) -> Gate:
    kind = ConditionType.SCANNED
    required = [p.name for p in facts.policies if p.scan.required]
    if not required:
        return Gate(kind, True, Reason.SCAN_NOT_REQUIRED, "no policy requires a scan")
    if facts.scan is None:
        message = f"waiting for a scan of the artifact (required by {', '.join(required)})"
        return Gate(kind, False, Reason.SCAN_PENDING, message)
    if not facts.scan.passed:
        reason = Reason.SCAN_ERROR if facts.scan.failed else Reason.SCAN_FAILED
        return Gate(kind, False, reason, facts.scan.reason, facts.scan.error)
    return Gate(kind, True, Reason.SCAN_PASSED, facts.scan.reason)


_APPROVAL_GATES = {
    ApprovalState.APPROVED: (True, Reason.APPROVED),
    ApprovalState.AWAITING: (False, Reason.AWAITING_APPROVAL),
    ApprovalState.REJECTED: (False, Reason.REJECTED),
    ApprovalState.REVOKED: (False, Reason.REVOKED),
}


def _approved(facts: Facts, spec: PluginDescriptor) -> tuple[Gate, ApprovalOutcome]:
    artifact = Artifact(facts.name, spec.id, spec.version, spec.implementation.digest)
    outcome = decide(
        artifact,
        spec=spec,
        publisher=facts.publisher,
        records=facts.approvals,
        policies=facts.policies,
        scan=facts.scan.summary if facts.scan else None,
    )
    passed, reason = _APPROVAL_GATES[outcome.state]
    if outcome.auto_approved_by and not outcome.approvers:
        reason = Reason.AUTO_APPROVED
    return Gate(ConditionType.APPROVED, passed, reason, outcome.message), outcome


def _dependencies(facts: Facts, spec: PluginDescriptor) -> Gate:
    outcome = resolve(
        facts.name,
        spec,
        active=facts.active,
        namespace=facts.namespace_plugins,
        wayang_version=facts.wayang_version,
    )
    kind = ConditionType.DEPENDENCIES_RESOLVED
    if outcome.resolved:
        return Gate(kind, True, Reason.RESOLVED, outcome.message)
    if outcome.cycle:
        return Gate(
            kind, False, Reason.DEPENDENCY_CYCLE, outcome.message, ErrorType.PLUGIN_LOAD_ERROR
        )
    return Gate(kind, False, Reason.UNRESOLVED, outcome.message)


_PHASE_OF_REASON = {
    Reason.INVALID_SPEC: PluginPhase.INVALID,
    Reason.CONTRACT_VIOLATION: PluginPhase.INVALID,
    Reason.SIGNATURE_INVALID: PluginPhase.BLOCKED,
    Reason.REGISTRY_NOT_ALLOWED: PluginPhase.BLOCKED,
    Reason.SCAN_PENDING: PluginPhase.SCANNING,
    Reason.SCAN_FAILED: PluginPhase.BLOCKED,
    Reason.SCAN_ERROR: PluginPhase.BLOCKED,
    Reason.AWAITING_APPROVAL: PluginPhase.AWAITING_APPROVAL,
    Reason.REJECTED: PluginPhase.REJECTED,
    Reason.REVOKED: PluginPhase.REVOKED,
    Reason.UNRESOLVED: PluginPhase.UNRESOLVED,
    Reason.DEPENDENCY_CYCLE: PluginPhase.UNRESOLVED,
    Reason.DEPLOYING: PluginPhase.DEPLOYING,
    Reason.ROLLING_OUT: PluginPhase.DEPLOYING,
    Reason.FAILING: PluginPhase.DEGRADED,
    Reason.HALF_OPEN: PluginPhase.DEGRADED,
    Reason.QUARANTINED: PluginPhase.QUARANTINED,
    Reason.NOT_RUNNABLE: PluginPhase.BLOCKED,
}


def _review_status(gates: list[Gate]) -> ReviewStatus:
    reasons = {gate.reason for gate in gates}
    if Reason.REVOKED in reasons:
        return ReviewStatus.REVOKED
    if reasons & {
        Reason.REJECTED,
        Reason.INVALID_SPEC,
        Reason.CONTRACT_VIOLATION,
        Reason.SIGNATURE_INVALID,
        Reason.REGISTRY_NOT_ALLOWED,
        Reason.SCAN_FAILED,
    }:
        return ReviewStatus.REJECTED
    if Reason.SCAN_PENDING in reasons:
        return ReviewStatus.SCANNING
    if reasons & {Reason.APPROVED, Reason.AUTO_APPROVED}:
        return ReviewStatus.APPROVED
    return ReviewStatus.PENDING


def _condition(gate: Gate, facts: Facts, now: str) -> Condition:
    status = ConditionStatus.UNKNOWN if gate.passed is None else ConditionStatus(str(gate.passed))
    before = next((c for c in facts.previous if c.type == gate.type.value), None)
    unchanged = (
        before is not None and before.status == status and before.reason == gate.reason.value
    )
    return Condition(
        type=gate.type.value,
        status=status,
        reason=gate.reason.value,
        message=gate.message[:32768],
        last_transition_time=before.last_transition_time if before and unchanged else now,
        observed_generation=facts.generation,
    )


_AUDITED = {
    Reason.SCAN_PASSED: AuditEventType.SCANNED,
    Reason.SCAN_FAILED: AuditEventType.SCANNED,
    Reason.APPROVED: AuditEventType.APPROVED,
    Reason.AUTO_APPROVED: AuditEventType.APPROVED,
    Reason.REJECTED: AuditEventType.REJECTED,
    Reason.REVOKED: AuditEventType.REVOKED,
    Reason.AVAILABLE: AuditEventType.LOADED,
}


def _decisions(gates: list[Gate], facts: Facts) -> list[tuple[AuditEventType, str]]:
    before = {c.type: c.reason for c in facts.previous}
    decisions = []
    if not facts.previous:
        decisions.append((AuditEventType.REGISTERED, f"generation {facts.generation} registered"))
    elif all(c.observed_generation != facts.generation for c in facts.previous):
        decisions.append((AuditEventType.UPDATED, f"generation {facts.generation} registered"))
    for gate in gates:
        was = before.get(gate.type.value)
        if was == gate.reason.value:
            continue
        stopped = gate.reason not in SERVING and was in {reason.value for reason in SERVING}
        if gate.type is ConditionType.WORKLOAD_AVAILABLE and stopped:
            decisions.append((AuditEventType.UNLOADED, gate.message))
        if gate.reason in _AUDITED:
            decisions.append((_AUDITED[gate.reason], gate.message))
        elif gate.error is not None:
            decisions.append((AuditEventType.ERROR, f"{gate.type.value}: {gate.message}"))
    return decisions


GOVERNANCE = (
    ConditionType.SIGNATURE_VERIFIED,
    ConditionType.SCANNED,
    ConditionType.APPROVED,
    ConditionType.DEPENDENCIES_RESOLVED,
)


def evaluate(facts: Facts, now: str) -> Evaluation:
    """Every gate for this generation of the plugin, and the status that follows."""
    validated, spec = _validated(facts)
    gates = [validated]
    outcome: ApprovalOutcome | None = None
    if spec is None or validated.passed is False:
        for kind in GOVERNANCE:
            gates.append(Gate(kind, None, Reason.NOT_EVALUATED, "the spec did not pass validation"))
    else:
        approved, outcome = _approved(facts, spec)
        gates += [
            _signature(spec, facts.policies),
            _scanned(facts),
            approved,
            _dependencies(facts, spec),
        ]
    failing = next((gate for gate in gates if gate.passed is not True), None)
    enabled = spec is not None and spec.enabled
    moment = datetime.datetime.fromisoformat(now.replace("Z", "+00:00"))
    runnable = spec if validated.passed else None
    workload, plan = decide_workload(facts.workload, runnable, failing, enabled, moment)
    gates.append(workload)
    if failing is not None:
        phase = _PHASE_OF_REASON.get(failing.reason, PluginPhase.PENDING)
        ready = Gate(
            ConditionType.READY, False, Reason.NOT_READY, f"{failing.type.value}: {failing.message}"
        )
    elif not enabled:
        phase = PluginPhase.DISABLED
        ready = Gate(ConditionType.READY, False, Reason.DISABLED, "spec.enabled is false")
    elif workload.reason not in (Reason.AVAILABLE, Reason.NOT_MANAGED):
        phase = _PHASE_OF_REASON[workload.reason]
        waiting = f"{workload.type.value}: {workload.message}"
        ready = Gate(ConditionType.READY, False, Reason.NOT_READY, waiting)
    else:
        phase = PluginPhase.READY
        ready = Gate(
            ConditionType.READY, True, Reason.READY, "verified, scanned, approved and resolved"
        )
    gates.append(ready)
    error_gate = next(
        (gate for gate in gates if gate.error is not None and gate.passed is False), None
    )
    last_error = None
    if error_gate is not None:
        details = {"plugin": f"{facts.namespace}/{facts.name}", "reason": error_gate.reason.value}
        if error_gate.cause:
            details["cause"] = error_gate.cause
        last_error = ErrorPayload(
            type=error_gate.error or ErrorType.UNKNOWN_ERROR,
            message=f"{error_gate.type.value}: {error_gate.message}"[:4096],
            retryable=error_gate.retryable,
            origin_node="wayang-operator",
            timestamp=now,
            suggested_action=(
                SuggestedAction.RETRY if error_gate.retryable else SuggestedAction.HUMAN_REVIEW
            ),
            details=details,
        )
    awaiting = outcome is not None and outcome.state is ApprovalState.AWAITING
    announced = transitions(
        gates,
        facts.previous,
        phase,
        facts.phase,
        new_approvers=[a for a in outcome.approvers if a not in facts.approvers] if outcome else [],
        awaiting=outcome.message if outcome is not None and awaiting else None,
        failed=last_error is not None,
    )
    return Evaluation(
        conditions=[_condition(gate, facts, now) for gate in gates],
        phase=phase,
        review_status=_review_status(gates),
        last_error=last_error,
        approval=outcome,
        decisions=_decisions(gates, facts),
        workload=plan,
        transitions=announced,
    )
