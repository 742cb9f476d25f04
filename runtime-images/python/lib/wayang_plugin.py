"""The plugin side of the runtime host's contract: errors a plugin raises on purpose, and the
trace context of the call it serves.

A plugin that raises one of these gets an ErrorPayload of that type on its error port, with the
`retryable`, `suggestedAction` and `details` it chose, instead of the ToolError every other
exception becomes. The engine routes on exactly those fields (retry, fallback, human review), so a
plugin that knows its LLM provider throttled it says `LLMError(..., retryable=True)` rather than
leaving the caller to guess from a stack trace.

The host reads the attributes, not the class: any exception with an `error_type` attribute naming
an ErrorPayload type counts, so a plugin can define its own without importing this module (and
its tests run without the host). The runtime image puts this module on the workers' `sys.path`.
"""

from __future__ import annotations

import contextvars
from typing import Any

CALL_TRACEPARENT: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "wayang_traceparent", default=None
)
"""Set by the host's worker for each call (see traceparent())."""


def traceparent() -> str | None:
    """The W3C traceparent of the call being served: the host's span around the plugin when the
    host traces, else the caller's as it came; None without one. Send it on (as the
    `traceparent` header of the plugin's own requests) or give it to OpenTelemetry
    (`TraceContextTextMapPropagator().extract({"traceparent": ...})`) to make the plugin's
    spans children of the call."""
    return CALL_TRACEPARENT.get()


CALL_TIMEOUT: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "wayang_timeout", default=None
)
"""Set by the host's worker for each call (see timeout())."""


def timeout() -> float | None:
    """Seconds this call may take in all (the plugin's resourceProfile.timeout): the host kills
    the worker after that, so a plugin that can stop early (the wasm executor interrupts its
    module) answers with its own error instead."""
    return CALL_TIMEOUT.get()


class PluginError(Exception):
    """An error with an ErrorPayload type: subclasses fix the type, defaults say how to react."""

    error_type = "ToolError"
    retryable = False
    suggested_action: str | None = None

    def __init__(
        self,
        message: str,
        *,
        retryable: bool | None = None,
        suggested_action: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable
        if suggested_action is not None:
            self.suggested_action = suggested_action
        self.details = dict(details or {})


class ToolError(PluginError):
    """The tool itself failed (the default for any exception)."""


class LLMError(PluginError):
    """A model call failed: refused, throttled, malformed answer."""

    error_type = "LLMError"
    retryable = True
    suggested_action = "retry"


class NetworkError(PluginError):
    """A remote the plugin depends on could not be reached."""

    error_type = "NetworkError"
    retryable = True
    suggested_action = "retry"


class ValidationError(PluginError):
    """The request is wrong in a way the schemas cannot say (the caller's fault: not counted
    against the plugin's health)."""

    error_type = "ValidationError"
    suggested_action = "abort"


class SecurityError(PluginError):
    """The plugin refused the request for a security reason."""

    error_type = "SecurityError"
    suggested_action = "escalate"
