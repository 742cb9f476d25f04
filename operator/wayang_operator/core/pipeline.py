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
from ..api.resources import ConditionType, PluginPhase, ReviewStatus, Withdrawal
from ..api.scan import ScanSummary
from ..manifests.validate import format_path, parse_model
from . import contract, signing
from .approval import (
    ApprovalOutcome,
    ApprovalRecord,
    ApprovalState,
    Artifact,
    Context,
    Publishers,
    decide,
)
from .dependencies import Candidate, resolve
from .gates import Gate, Reason
from .grants import NotGranted, grant
from .policy import NamedPolicy, registry_allowed
from .reasons import REASONS, phase_of, review_status
from .running import SERVING, Plan, WorkloadFacts
from .running import decide as decide_workload
from .transitions import Transition, transitions
from .workload import NotRunnable, descriptor_hash, runnable


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
    publishers: Publishers
    """Who created the Plugin or changed its approved surface (admission identities)."""
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
    now: str = ""
    """The moment of the facts (RFC 3339), the one clock every decision reads."""
    phase: str | None = None
    """The phase the status shows now (None: never evaluated), for the Events of a change."""
    approvers: tuple[str, ...] = ()
    """The approvers the status shows now: a new one is announced while more are needed."""
    withdrawals: tuple[Withdrawal, ...] = ()
    """The rejections and revocations the status remembers."""
    approved_surface: str | None = None
    """The approved surface's digest the status shows now (a carry-over is audited once)."""


@dataclass(frozen=True)
class Evaluation:
    conditions: list[Condition]
    phase: PluginPhase
    review_status: ReviewStatus
    last_error: ErrorPayload | None
    approval: ApprovalOutcome | None
    decisions: list[AuditDecision]
    """Audit events for what changed since `Facts.previous`."""
    workload: Plan | None = None
    transitions: list[Transition] = field(default_factory=list)
    """The Kubernetes Events that announce what changed since `Facts.previous`."""
    signature: signing.Verdict | None = None
    """The signature that verified (for the audit's signed_by), if any."""


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


def signature_verdict(
    spec: PluginDescriptor, policies: list[NamedPolicy]
) -> signing.Verdict | None:
    """The plugin's signature checked against every key any policy trusts: who signed it, for
    the audit (signed_by) and the GitOps publisher, whether or not a policy requires it."""
    keys = [key for policy in policies for key in policy.signing.trusted_keys or []]
    if not spec.signature or not keys:
        return None
    verdict = signing.verify(spec, keys)
    return verdict if verdict.verified else None


def _signature(spec: PluginDescriptor, policies: list[NamedPolicy]) -> Gate:
    """The registry rule, then the signature rule, of every policy: nothing is fetched or
    scanned for a plugin that fails them (the Scanned gate waits for this one)."""
    kind = ConditionType.SIGNATURE_VERIFIED
    verified: list[str] = []
    for policy in policies:
        refused = registry_allowed(policy, spec)
        if refused:
            return Gate(kind, False, Reason.REGISTRY_NOT_ALLOWED, refused, ErrorType.SECURITY_ERROR)
        if not policy.signing.required:
            continue
        verdict = signing.verify(
            spec,
            policy.signing.trusted_keys or [],
            require_surface=policy.signing.require_surface,
        )
        if not verdict.verified:
            message = f"policy {policy.name!r} requires a signature: {verdict.reason}"
            return Gate(kind, False, Reason.SIGNATURE_INVALID, message, ErrorType.SECURITY_ERROR)
        covers = "the approved surface" if verdict.payload_version == 2 else "the artifact (v1)"
        verified.append(f"{verdict.reason}, over {covers} ({policy.name})")
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


def _approved(
    facts: Facts, spec: PluginDescriptor, signed: signing.Verdict | None, now: str
) -> tuple[Gate, ApprovalOutcome]:
    artifact = Artifact(facts.name, spec.id, spec.version, spec.implementation.digest)
    publishers = facts.publishers
    if signed is not None and signed.owner:
        publishers = Publishers(publishers.users, signed.owner)
    context = Context(
        namespace=facts.namespace,
        spec=spec,
        publishers=publishers,
        policies=facts.policies,
        scan=facts.scan.summary if facts.scan else None,
        withdrawals=facts.withdrawals,
        now=now,
    )
    outcome = decide(artifact, facts.approvals, context)
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


def _review_status(gates: list[Gate]) -> ReviewStatus:
    return review_status({gate.reason for gate in gates})


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


@dataclass(frozen=True)
class AuditDecision:
    """One audit entry to append: what was decided, and by whom when it was not the operator."""

    kind: AuditEventType
    message: str
    actor: str | None = None
    """A user the decision belongs to, beyond the defaults of `reconcile.actor_of`."""
    details: dict[str, Any] = field(default_factory=dict)
    error: ErrorPayload | None = None
    """The seed's error payload, for PLUGIN_ERROR."""


def _error_payload(gate: Gate, facts: Facts, now: str) -> ErrorPayload:
    details = {"plugin": f"{facts.namespace}/{facts.name}", "reason": gate.reason.value}
    if gate.cause:
        details["cause"] = gate.cause
    return ErrorPayload(
        type=gate.error or ErrorType.UNKNOWN_ERROR,
        message=f"{gate.type.value}: {gate.message}"[:4096],
        retryable=gate.retryable,
        origin_node="wayang-operator",
        timestamp=now,
        suggested_action=SuggestedAction.RETRY if gate.retryable else SuggestedAction.HUMAN_REVIEW,
        details=details,
    )


def _approval_decisions(outcome: ApprovalOutcome | None, facts: Facts) -> list[AuditDecision]:
    """A deleted rejection or revocation, and approvals carried over to a smaller surface."""
    if outcome is None:
        return []
    decisions = [
        AuditDecision(
            AuditEventType.DECISION_WITHDRAWN,
            f"{withdrawal.decision.value} by {withdrawal.by} (PluginApproval "
            f"{withdrawal.approval}) deleted by {withdrawal.lifted_by}; approvals made before it "
            "stay void",
            actor=withdrawal.lifted_by,
            details={"approval": withdrawal.approval, "decidedBy": withdrawal.by},
        )
        for withdrawal in outcome.lifted
    ]
    carried = (
        outcome.state is ApprovalState.APPROVED
        and outcome.carried_over
        and facts.approved_surface not in (None, outcome.surface_digest)
    )
    if carried:
        decisions.append(
            AuditDecision(
                AuditEventType.APPROVAL_CARRIED_OVER,
                f"approvals of surface {facts.approved_surface} carried over to "
                f"{outcome.surface_digest}: fewer powers ({'; '.join(outcome.carried_over)})",
                details={
                    "from": facts.approved_surface,
                    "to": outcome.surface_digest,
                    "gave_up": list(outcome.carried_over),
                },
            )
        )
    return decisions


def _decisions(
    gates: list[Gate], facts: Facts, outcome: ApprovalOutcome | None, now: str
) -> list[AuditDecision]:
    before = {c.type: c.reason for c in facts.previous}
    decisions = []
    if not facts.previous:
        message = f"generation {facts.generation} registered"
        decisions.append(AuditDecision(AuditEventType.REGISTERED, message))
    elif all(c.observed_generation != facts.generation for c in facts.previous):
        message = f"generation {facts.generation} registered"
        decisions.append(AuditDecision(AuditEventType.UPDATED, message))
    decisions += _approval_decisions(outcome, facts)
    for gate in gates:
        was = before.get(gate.type.value)
        if was == gate.reason.value:
            continue
        stopped = gate.reason not in SERVING and was in {reason.value for reason in SERVING}
        if gate.type is ConditionType.WORKLOAD_AVAILABLE and stopped:
            decisions.append(AuditDecision(AuditEventType.UNLOADED, gate.message))
        audited = REASONS[gate.reason].audit
        if audited is not None:
            decisions.append(AuditDecision(audited, gate.message))
        elif gate.error is not None:
            decisions.append(
                AuditDecision(
                    AuditEventType.ERROR,
                    f"{gate.type.value}: {gate.message}",
                    error=_error_payload(gate, facts, now),
                )
            )
    return decisions


GOVERNANCE = (
    ConditionType.SIGNATURE_VERIFIED,
    ConditionType.POWERS_GRANTED,
    ConditionType.SCANNED,
    ConditionType.APPROVED,
    ConditionType.DEPENDENCIES_RESOLVED,
)


def _governance(
    facts: Facts, spec: PluginDescriptor, signed: signing.Verdict | None, now: str
) -> tuple[list[Gate], ApprovalOutcome]:
    """The governance gates of a valid spec. The Scanned gate waits for SignatureVerified (the
    registry and signature rules): no artifact a policy refuses is ever fetched or scanned."""
    signature = _signature(spec, facts.policies)
    if signature.passed:
        scanned = _scanned(facts)
    else:
        scanned = Gate(
            ConditionType.SCANNED,
            None,
            Reason.NOT_EVALUATED,
            f"not scanned: SignatureVerified has not passed ({signature.reason.value}); nothing "
            "is fetched from an artifact location a policy refuses",
        )
    approved, outcome = _approved(facts, spec, signed, now)
    return [
        signature,
        _granted(spec, facts.policies),
        scanned,
        approved,
        _dependencies(facts, spec),
    ], outcome


def _granted(spec: PluginDescriptor, policies: list[NamedPolicy]) -> Gate:
    kind = ConditionType.POWERS_GRANTED
    try:
        powers = grant(spec, policies)
    except NotGranted as refused:
        return Gate(kind, False, refused.reason, str(refused), ErrorType.SECURITY_ERROR)
    parts = [f"runtime {powers.runtime_class or 'runc (the node default)'}"]
    parts.append(
        "capabilities " + ", ".join(c.value for c in spec.capabilities or [])
        if spec.capabilities
        else "no capabilities"
    )
    if powers.secrets:
        parts.append("Secrets " + ", ".join(volume.secret for volume in powers.secrets))
    return Gate(kind, True, Reason.GRANTED, "; ".join(parts))


def _known_good(facts: Facts, spec: PluginDescriptor, now: str) -> PluginDescriptor | None:
    """The workload's known-good record, when it may still run in place of `spec`: another
    descriptor of this plugin whose artifact passes the same rules it passed (its signature and
    registry under today's policies, its powers still granted, its artifact still approved: a
    revocation, a rejection or a withdrawn approval of it voids the record). Its scan is the one
    it passed when it ran; a tenant who forges the record gains nothing it was not approved
    for."""
    workload = facts.workload
    known = workload.known_good if workload else None
    if workload is None or known is None or known.id != spec.id:
        return None
    if descriptor_hash(known) == descriptor_hash(spec):
        return None
    if not _signature(known, facts.policies).passed:
        return None
    try:
        grant(known, facts.policies)
        runnable(known, facts.policies, workload.runtimes, workload.pull_secret)
    except (NotGranted, NotRunnable):
        return None
    approved, _ = _approved(facts, known, signature_verdict(known, facts.policies), now)
    return known if approved.passed else None


def evaluate(facts: Facts, now: str) -> Evaluation:
    """Every gate for this generation of the plugin, and the status that follows."""
    validated, spec = _validated(facts)
    gates = [validated]
    outcome: ApprovalOutcome | None = None
    signed: signing.Verdict | None = None
    if spec is None or validated.passed is False:
        for kind in GOVERNANCE:
            gates.append(Gate(kind, None, Reason.NOT_EVALUATED, "the spec did not pass validation"))
    else:
        signed = signature_verdict(spec, facts.policies)
        governance, outcome = _governance(facts, spec, signed, now)
        gates += governance
    failing = next((gate for gate in gates if gate.passed is not True), None)
    enabled = spec is not None and spec.enabled
    moment = datetime.datetime.fromisoformat(now.replace("Z", "+00:00"))
    valid = spec if validated.passed else None
    earlier = outcome.earlier_surfaces if outcome is not None else frozenset()
    fallback = _known_good(facts, spec, now) if spec is not None and failing is None else None
    workload, plan = decide_workload(
        facts.workload,
        valid,
        failing,
        enabled,
        moment,
        earlier_surfaces=earlier,
        fallback=fallback,
    )
    gates.append(workload)
    if failing is not None:
        phase = phase_of(failing.reason)
        ready = Gate(
            ConditionType.READY, False, Reason.NOT_READY, f"{failing.type.value}: {failing.message}"
        )
    elif not enabled:
        phase = PluginPhase.DISABLED
        ready = Gate(ConditionType.READY, False, Reason.DISABLED, "spec.enabled is false")
    elif workload.reason not in (Reason.AVAILABLE, Reason.NOT_MANAGED):
        phase = phase_of(workload.reason)
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
    last_error = _error_payload(error_gate, facts, now) if error_gate is not None else None
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
        decisions=_decisions(gates, facts, outcome, now),
        workload=plan,
        transitions=announced,
        signature=signed,
    )
