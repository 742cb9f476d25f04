"""The seed's PluginAuditEvent: one immutable entry of the tamper-evident audit log."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from .base import LAX, ApiModel, Blake3Hash, DateTime, LongText, ShortText, Uuid
from .errors import ErrorPayload


class AuditEventType(StrEnum):
    REGISTERED = "PLUGIN_REGISTERED"
    SCANNED = "PLUGIN_SCANNED"
    APPROVED = "PLUGIN_APPROVED"
    REJECTED = "PLUGIN_REJECTED"
    LOADED = "PLUGIN_LOADED"
    UNLOADED = "PLUGIN_UNLOADED"
    REVOKED = "PLUGIN_REVOKED"
    ERROR = "PLUGIN_ERROR"
    UPDATED = "PLUGIN_UPDATED"
    DECISION_WITHDRAWN = "PLUGIN_DECISION_WITHDRAWN"
    """A Reject or Revoke was deleted (by whom); the approvals it overruled stay void."""
    APPROVAL_CARRIED_OVER = "PLUGIN_APPROVAL_CARRIED_OVER"
    """The Plugin's approved surface changed to fewer powers and its approvals carried over."""
    ROLLED_BACK = "PLUGIN_ROLLED_BACK"
    """A new descriptor tripped its breaker and autoHealEnabled put the last known-good back."""


class ActorType(StrEnum):
    SYSTEM = "system"
    USER = "user"
    CI = "ci"
    AUTOMATED = "automated"


class Actor(ApiModel):
    """Who caused the event: taken from admission userInfo or the operator itself, never typed."""

    type: Annotated[ActorType, LAX]
    id: ShortText
    name: ShortText | None = None


class PluginAuditEvent(ApiModel):
    """Immutable audit log entry."""

    audit_id: Uuid
    event_type: Annotated[AuditEventType, LAX]
    plugin_id: ShortText
    version: ShortText | None = None
    tenant_id: ShortText | None = None
    """The namespace (tenant) of the plugin."""
    actor: Actor
    timestamp: DateTime
    details: dict[str, Any] | None = None
    """Provenance: artifact hash, signed by, approved by, loaded by, action, ..."""
    error: ErrorPayload | None = None
    hash: Blake3Hash | None = None
    """Content hash for tamper detection."""
    signature: LongText | None = None
    """Digital signature for non-repudiation."""
