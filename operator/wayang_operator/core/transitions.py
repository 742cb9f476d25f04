"""Which Kubernetes Events a plugin's evaluation announces: one per gate whose outcome changed,
with a stable CamelCase reason, `Normal` for progress and `Warning` for what needs attention.

Pure, like the gates: the controller posts what this returns, once, when it writes the status
that records the change (so a repeated evaluation of an unchanged plugin announces nothing).
Which reason is announced, under which Event reason and type, is in the one reasons table
(reasons.py); a passing reason marked `recovery` is news only after the same gate failed. A
phase change that no announced gate explains is still announced, under the phase's name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..api.meta import Condition
from ..api.resources import PluginPhase
from .gates import Gate, Reason
from .reasons import REASONS, EventType

APPROVAL_RECORDED = "ApprovalRecorded"
"""An approval counted but is not enough yet (more approvers are needed)."""

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
        about = REASONS[gate.reason]
        if about.event is None:
            continue
        if about.recovery and (was is None or was.status.value != "False"):
            continue
        if gate.reason is Reason.UNLOADED and (was is None or was.reason not in SERVING_REASONS):
            continue
        reason, kind = about.event, about.event_type
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
