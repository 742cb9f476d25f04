"""Which Kubernetes Events a plugin's evaluation announces: one per gate whose outcome changed,
with a stable CamelCase reason, `Normal` for progress and `Warning` for what needs attention.

Pure, like the gates: the controller posts what this returns, once, when it writes the status
that records the change (so a repeated evaluation of an unchanged plugin announces nothing).
Every condition reason is either announced (ANNOUNCED) or deliberately quiet (QUIET); a test
keeps the two covering the whole vocabulary, so a new reason cannot be forgotten. A phase change
that no announced gate explains is still announced, under the phase's name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from ..api.meta import Condition
from ..api.resources import PluginPhase
from .gates import Gate, Reason


class EventType(StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


APPROVAL_RECORDED = "ApprovalRecorded"
"""An approval counted but is not enough yet (more approvers are needed)."""

ANNOUNCED: dict[Reason, tuple[str, EventType]] = {
    Reason.INVALID_SPEC: ("InvalidSpec", EventType.WARNING),
    Reason.CONTRACT_VIOLATION: ("ContractViolation", EventType.WARNING),
    Reason.SIGNATURE_VERIFIED: ("SignatureVerified", EventType.NORMAL),
    Reason.SIGNATURE_INVALID: ("SignatureInvalid", EventType.WARNING),
    Reason.REGISTRY_NOT_ALLOWED: ("RegistryNotAllowed", EventType.WARNING),
    Reason.SCAN_PENDING: ("ScanPending", EventType.NORMAL),
    Reason.SCAN_PASSED: ("ScanPassed", EventType.NORMAL),
    Reason.SCAN_FAILED: ("ScanFailed", EventType.WARNING),
    Reason.SCAN_ERROR: ("ScanError", EventType.WARNING),
    Reason.AWAITING_APPROVAL: ("AwaitingApproval", EventType.NORMAL),
    Reason.APPROVED: ("Approved", EventType.NORMAL),
    Reason.AUTO_APPROVED: ("AutoApproved", EventType.NORMAL),
    Reason.REJECTED: ("Rejected", EventType.WARNING),
    Reason.REVOKED: ("Revoked", EventType.WARNING),
    Reason.UNRESOLVED: ("Unresolved", EventType.NORMAL),
    Reason.DEPENDENCY_CYCLE: ("DependencyCycle", EventType.WARNING),
    Reason.DEPLOYING: ("Deploying", EventType.NORMAL),
    Reason.ROLLING_OUT: ("RollingOut", EventType.NORMAL),
    Reason.SERVING_PREVIOUS: ("ServingPreviousVersion", EventType.NORMAL),
    Reason.AVAILABLE: ("Loaded", EventType.NORMAL),
    Reason.NOT_RUNNABLE: ("NotRunnable", EventType.WARNING),
    Reason.FAILING: ("WorkloadFailing", EventType.WARNING),
    Reason.QUARANTINED: ("Quarantined", EventType.WARNING),
    Reason.HALF_OPEN: ("HalfOpen", EventType.NORMAL),
    Reason.DISABLED: ("Disabled", EventType.NORMAL),
    Reason.READY: ("Ready", EventType.NORMAL),
    # announced only when they end something: a failure before, or a serving workload
    Reason.VALID: ("Validated", EventType.NORMAL),
    Reason.SIGNATURE_NOT_REQUIRED: ("SignatureNotRequired", EventType.NORMAL),
    Reason.SCAN_NOT_REQUIRED: ("ScanNotRequired", EventType.NORMAL),
    Reason.RESOLVED: ("DependenciesResolved", EventType.NORMAL),
    Reason.UNLOADED: ("Unloaded", EventType.NORMAL),
}
"""Condition reason → (Event reason, Event type)."""

RECOVERIES = frozenset(
    {Reason.VALID, Reason.SIGNATURE_NOT_REQUIRED, Reason.SCAN_NOT_REQUIRED, Reason.RESOLVED}
)
"""Passing reasons that are news only after the same gate had failed: at registration they
would be one Event per gate for nothing that happened."""

QUIET = frozenset({Reason.NOT_MANAGED, Reason.NOT_READY, Reason.NOT_EVALUATED})
"""Reasons never announced: they only echo another gate (the gate that did not pass is)."""

SERVING_REASONS = frozenset(
    {Reason.AVAILABLE.value, Reason.ROLLING_OUT.value, Reason.SERVING_PREVIOUS.value}
)


@dataclass(frozen=True)
class Transition:
    type: EventType
    reason: str
    message: str
    condition: Reason | None = None
    """The condition reason that changed (None for an approval recorded or a bare phase)."""


def _message(phase: PluginPhase, gate_type: str, text: str) -> str:
    return f"{phase.value} ({gate_type}): {text}"[:1024]


def transitions(
    gates: Sequence[Gate],
    previous: Sequence[Condition],
    phase: PluginPhase,
    previous_phase: str | None,
    *,
    new_approvers: Sequence[str] = (),
    awaiting: str | None = None,
    failed: bool = False,
) -> list[Transition]:
    """The Events for this evaluation. `new_approvers` counted since the previous status, and
    `awaiting` is the approval gate's message while more are needed; `failed` says the phase is
    an error (for a phase change no gate explains)."""
    before = {c.type: c for c in previous}
    out: list[Transition] = []
    seen: set[str] = set()
    for gate in gates:
        was = before.get(gate.type.value)
        if was is not None and was.reason == gate.reason.value:
            continue
        if gate.reason in QUIET or gate.reason not in ANNOUNCED:
            continue
        if gate.reason in RECOVERIES and (was is None or was.status.value != "False"):
            continue
        if gate.reason is Reason.UNLOADED and (was is None or was.reason not in SERVING_REASONS):
            continue
        reason, kind = ANNOUNCED[gate.reason]
        if reason in seen:  # Disabled is both the workload's and Ready's reason
            continue
        seen.add(reason)
        out.append(
            Transition(kind, reason, _message(phase, gate.type.value, gate.message), gate.reason)
        )
    if new_approvers and awaiting is not None:
        who = ", ".join(new_approvers)
        text = f"approval by {who} recorded; {awaiting}"
        out.append(
            Transition(EventType.NORMAL, APPROVAL_RECORDED, _message(phase, "Approved", text))
        )
    if not out and previous_phase != phase.value:
        kind = EventType.WARNING if failed else EventType.NORMAL
        decisive = next((g for g in gates if g.passed is not True), gates[-1] if gates else None)
        text = decisive.message if decisive else phase.value
        gate_type = decisive.type.value if decisive else "Ready"
        out.append(Transition(kind, phase.value, _message(phase, gate_type, text)))
    return out
