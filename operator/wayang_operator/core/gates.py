"""The vocabulary of a Plugin's conditions: each gate's outcome and its machine-readable reason.

Shared by the governance gates (pipeline.py) and the workload gate (running.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ..api.errors import ErrorType
from ..api.resources import ConditionType


class Reason(StrEnum):
    """Machine-readable condition reasons (CamelCase, as the API conventions ask)."""

    VALID = "Valid"
    INVALID_SPEC = "InvalidSpec"
    CONTRACT_VIOLATION = "ContractViolation"
    SIGNATURE_VERIFIED = "SignatureVerified"
    SIGNATURE_NOT_REQUIRED = "SignatureNotRequired"
    SIGNATURE_INVALID = "SignatureInvalid"
    REGISTRY_NOT_ALLOWED = "RegistryNotAllowed"
    GRANTED = "Granted"
    CAPABILITY_NOT_GRANTED = "CapabilityNotGranted"
    SECRET_NOT_ALLOWED = "SecretNotAllowed"  # noqa: S105 - a reason, not a secret
    POLICIES_DISAGREE = "PoliciesDisagree"
    SCAN_PASSED = "ScanPassed"
    SCAN_NOT_REQUIRED = "ScanNotRequired"
    SCAN_PENDING = "ScanPending"
    SCAN_FAILED = "ScanFailed"
    SCAN_ERROR = "ScanError"
    APPROVED = "Approved"
    AUTO_APPROVED = "AutoApproved"
    AWAITING_APPROVAL = "AwaitingApproval"
    REJECTED = "Rejected"
    REVOKED = "Revoked"
    RESOLVED = "Resolved"
    UNRESOLVED = "Unresolved"
    DEPENDENCY_CYCLE = "DependencyCycle"
    NOT_MANAGED = "NotManaged"
    AVAILABLE = "Available"
    DEPLOYING = "Deploying"
    ROLLING_OUT = "RollingOut"
    SERVING_PREVIOUS = "ServingPreviousVersion"
    UNLOADED = "Unloaded"
    NOT_RUNNABLE = "NotRunnable"
    SECRET_MISSING = "SecretMissing"  # noqa: S105 - a reason, not a secret
    RENDER_REFUSED = "RenderRefused"
    FAILING = "WorkloadFailing"
    QUARANTINED = "Quarantined"
    HALF_OPEN = "HalfOpen"
    ROLLED_BACK = "RolledBack"
    NEW_VERSION_QUARANTINED = "NewVersionQuarantined"
    READY = "AllGatesPassed"
    DISABLED = "Disabled"
    NOT_READY = "GateNotPassed"
    NOT_EVALUATED = "NotEvaluated"


@dataclass(frozen=True)
class Gate:
    type: ConditionType
    passed: bool | None
    reason: Reason
    message: str
    error: ErrorType | None = None
    retryable: bool = False
    """The error clears by itself (a half-open trial), rather than by a human."""
    cause: str | None = None
    """What failed underneath (CrashLoopBackOff, OOMKilled, ...), for the ErrorPayload."""
