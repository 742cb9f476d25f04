"""One table for every condition reason: what it means everywhere it shows.

For each `Reason` the gates write: the phase it gives the plugin when it is the first gate that
did not pass, the seed's review status it implies, the audit event it records, the Kubernetes
Event that announces it, and its health for Argo CD. The pipeline (phase, review status, audit),
transitions.py (Events), the Argo CD health script (generated into its REASONS table by `make
manifests`, argocd.py) and the tests all read this table, so a new reason is described once and
cannot be forgotten in one of them (a test enumerates the enum against it).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ..api.audit import AuditEventType
from ..api.resources import PluginPhase, ReviewStatus
from .gates import Reason


class Health(StrEnum):
    """Argo CD's health statuses."""

    HEALTHY = "Healthy"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    SUSPENDED = "Suspended"


class EventType(StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


@dataclass(frozen=True)
class About:
    health: Health
    phase: PluginPhase | None = None
    """The plugin's phase when this reason is the first gate that did not pass."""
    review: ReviewStatus | None = None
    """The review status it implies (the most severe among the gates wins)."""
    audit: AuditEventType | None = None
    """The audit event recorded when a gate changes to this reason."""
    event: str | None = None
    """The Event's reason when a gate changes to this reason; None: never announced."""
    warning: bool = False
    """The Event is a Warning (needs attention), else Normal."""
    recovery: bool = False
    """A passing reason that is news only after the same gate had failed."""

    @property
    def event_type(self) -> EventType:
        return EventType.WARNING if self.warning else EventType.NORMAL


_OK, _WAIT = Health.HEALTHY, Health.PROGRESSING
_BAD, _HOLD = Health.DEGRADED, Health.SUSPENDED
_BLOCKED, _REJECTED = PluginPhase.BLOCKED, ReviewStatus.REJECTED

REASONS: dict[Reason, About] = {
    Reason.VALID: About(_OK, event="Validated", recovery=True),
    Reason.INVALID_SPEC: About(
        _BAD, PluginPhase.INVALID, _REJECTED, event="InvalidSpec", warning=True
    ),
    Reason.CONTRACT_VIOLATION: About(
        _BAD, PluginPhase.INVALID, _REJECTED, event="ContractViolation", warning=True
    ),
    Reason.SIGNATURE_VERIFIED: About(_OK, event="SignatureVerified"),
    Reason.SIGNATURE_NOT_REQUIRED: About(_OK, event="SignatureNotRequired", recovery=True),
    Reason.SIGNATURE_INVALID: About(
        _BAD, _BLOCKED, _REJECTED, event="SignatureInvalid", warning=True
    ),
    Reason.REGISTRY_NOT_ALLOWED: About(
        _BAD, _BLOCKED, _REJECTED, event="RegistryNotAllowed", warning=True
    ),
    Reason.GRANTED: About(_OK, event="PowersGranted", recovery=True),
    Reason.CAPABILITY_NOT_GRANTED: About(
        _BAD, _BLOCKED, _REJECTED, event="CapabilityNotGranted", warning=True
    ),
    Reason.SECRET_NOT_ALLOWED: About(
        _BAD, _BLOCKED, _REJECTED, event="SecretNotAllowed", warning=True
    ),
    Reason.POLICIES_DISAGREE: About(
        _BAD, _BLOCKED, _REJECTED, event="PoliciesDisagree", warning=True
    ),
    Reason.SCAN_PASSED: About(_OK, audit=AuditEventType.SCANNED, event="ScanPassed"),
    Reason.SCAN_NOT_REQUIRED: About(_OK, event="ScanNotRequired", recovery=True),
    Reason.SCAN_PENDING: About(
        _WAIT, PluginPhase.SCANNING, ReviewStatus.SCANNING, event="ScanPending"
    ),
    Reason.SCAN_FAILED: About(
        _BAD, _BLOCKED, _REJECTED, AuditEventType.SCANNED, "ScanFailed", warning=True
    ),
    Reason.SCAN_ERROR: About(_BAD, _BLOCKED, event="ScanError", warning=True),
    Reason.APPROVED: About(
        _OK, review=ReviewStatus.APPROVED, audit=AuditEventType.APPROVED, event="Approved"
    ),
    Reason.AUTO_APPROVED: About(
        _OK, review=ReviewStatus.APPROVED, audit=AuditEventType.APPROVED, event="AutoApproved"
    ),
    Reason.AWAITING_APPROVAL: About(_HOLD, PluginPhase.AWAITING_APPROVAL, event="AwaitingApproval"),
    Reason.REJECTED: About(
        _BAD, PluginPhase.REJECTED, _REJECTED, AuditEventType.REJECTED, "Rejected", warning=True
    ),
    Reason.REVOKED: About(
        _BAD,
        PluginPhase.REVOKED,
        ReviewStatus.REVOKED,
        AuditEventType.REVOKED,
        "Revoked",
        warning=True,
    ),
    Reason.RESOLVED: About(_OK, event="DependenciesResolved", recovery=True),
    Reason.UNRESOLVED: About(_WAIT, PluginPhase.UNRESOLVED, event="Unresolved"),
    Reason.DEPENDENCY_CYCLE: About(
        _BAD, PluginPhase.UNRESOLVED, event="DependencyCycle", warning=True
    ),
    Reason.NOT_MANAGED: About(_OK),
    Reason.AVAILABLE: About(_OK, audit=AuditEventType.LOADED, event="Loaded"),
    Reason.DEPLOYING: About(_WAIT, PluginPhase.DEPLOYING, event="Deploying"),
    Reason.ROLLING_OUT: About(_WAIT, PluginPhase.DEPLOYING, event="RollingOut"),
    Reason.SERVING_PREVIOUS: About(_OK, event="ServingPreviousVersion"),
    Reason.UNLOADED: About(_BAD, event="Unloaded"),
    Reason.NOT_RUNNABLE: About(_BAD, _BLOCKED, event="NotRunnable", warning=True),
    Reason.SECRET_MISSING: About(_BAD, _BLOCKED, event="SecretMissing", warning=True),
    Reason.RENDER_REFUSED: About(_BAD, _BLOCKED, event="RenderRefused", warning=True),
    Reason.FAILING: About(_BAD, PluginPhase.DEGRADED, event="WorkloadFailing", warning=True),
    Reason.QUARANTINED: About(_BAD, PluginPhase.QUARANTINED, event="Quarantined", warning=True),
    Reason.HALF_OPEN: About(_BAD, PluginPhase.DEGRADED, event="HalfOpen"),
    Reason.ROLLED_BACK: About(
        _BAD, PluginPhase.DEGRADED, None, AuditEventType.ROLLED_BACK, "RolledBack", warning=True
    ),
    Reason.NEW_VERSION_QUARANTINED: About(
        _BAD, PluginPhase.QUARANTINED, event="NewVersionQuarantined", warning=True
    ),
    Reason.READY: About(_OK, event="Ready"),
    Reason.DISABLED: About(_HOLD, event="Disabled"),
    Reason.NOT_READY: About(_WAIT),
    Reason.NOT_EVALUATED: About(_WAIT),
}

REVIEW_ORDER = (
    ReviewStatus.REVOKED,
    ReviewStatus.REJECTED,
    ReviewStatus.SCANNING,
    ReviewStatus.APPROVED,
)
"""Which implied review status wins when gates imply several (the first found)."""


def review_status(reasons: set[Reason]) -> ReviewStatus:
    implied = {REASONS[reason].review for reason in reasons}
    return next((status for status in REVIEW_ORDER if status in implied), ReviewStatus.PENDING)


def phase_of(reason: Reason) -> PluginPhase:
    return REASONS[reason].phase or PluginPhase.PENDING


PHASE_HEALTH: dict[PluginPhase, Health] = {
    PluginPhase.PENDING: _WAIT,
    PluginPhase.INVALID: _BAD,
    PluginPhase.BLOCKED: _BAD,
    PluginPhase.SCANNING: _WAIT,
    PluginPhase.AWAITING_APPROVAL: _HOLD,
    PluginPhase.REJECTED: _BAD,
    PluginPhase.REVOKED: _BAD,
    PluginPhase.UNRESOLVED: _WAIT,
    PluginPhase.DEPLOYING: _WAIT,
    PluginPhase.READY: _OK,
    PluginPhase.DEGRADED: _BAD,
    PluginPhase.QUARANTINED: _BAD,
    PluginPhase.DISABLED: _HOLD,
}
"""The health of a phase, for a status without conditions."""
