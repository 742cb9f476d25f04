"""The seed's ErrorPayload: the one error shape used on plugin error ports, in status and in audit.

The error-as-input pattern makes errors ordinary data that downstream nodes route on, so the shape
must be stable and identical wherever an error appears.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field, StringConstraints

from .base import INTEGRAL, LAX, ApiModel, DateTime, LongText, ShortText, Uuid

ERROR_PAYLOAD_SCHEMA_REF = "/schemas/ErrorPayload.schema.json"
"""The reference every error output port must carry as its schema (seed: ErrorPortDescriptor)."""


class ErrorType(StrEnum):
    TOOL_ERROR = "ToolError"
    LLM_ERROR = "LLMError"
    NETWORK_ERROR = "NetworkError"
    VALIDATION_ERROR = "ValidationError"
    TIMEOUT = "Timeout"
    PLUGIN_LOAD_ERROR = "PluginLoadError"
    SECURITY_ERROR = "SecurityError"
    UNKNOWN_ERROR = "UnknownError"


class SuggestedAction(StrEnum):
    RETRY = "retry"
    FALLBACK = "fallback"
    ESCALATE = "escalate"
    HUMAN_REVIEW = "human_review"
    ABORT = "abort"
    AUTO_FIX = "auto_fix"


class ErrorPayload(ApiModel):
    """Standardized error payload (error-as-input pattern)."""

    type: Annotated[ErrorType, LAX]
    """Error category, used by error handlers to route the error."""
    message: LongText
    """What went wrong, for a human."""
    details: dict[str, Any] | None = None
    """Structured, error-specific details."""
    retryable: bool
    """Whether retrying the same call may succeed."""
    origin_node: ShortText
    """The node (or operator component) where the error happened."""
    origin_run_id: Uuid | None = None
    """The run in which the error happened."""
    attempt: Annotated[int, Field(ge=0), INTEGRAL] | None = None
    """Which attempt failed (0-based)."""
    max_attempts: Annotated[int, Field(ge=0), INTEGRAL] | None = None
    """How many attempts the retry policy allows."""
    timestamp: DateTime
    """When the error happened (RFC 3339)."""
    suggested_action: Annotated[SuggestedAction, LAX] | None = None
    """What the caller should do next."""
    provenance_ref: Uuid | None = None
    """Audit entry (auditId) that records the error."""
    stack_trace: Annotated[str, StringConstraints(max_length=32768)] | None = None
    """Stack trace, when the origin is code."""
