"""Sample plugin `failing`: always raises.

Without the `errorType` property it raises ValueError, which the host reports as a ToolError.
With it, it raises the typed error of that name from the host's plugin API (wayang_plugin:
LLMError, NetworkError, ...), with the `retryable` and `suggestedAction` properties and its
`reason` in the details; a name the API does not have is raised as a plain exception carrying
that `error_type`, which the host refuses (a ToolError that says so).
"""

from __future__ import annotations

from typing import Any

import wayang_plugin


class _ClaimedError(Exception):
    def __init__(self, message: str, error_type: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def execute(inputs: dict[str, Any], properties: dict[str, Any]) -> dict[str, Any]:
    reason = inputs.get("reason", "no reason given")
    wanted = str(properties.get("errorType") or "")
    if not wanted:
        raise ValueError(f"failing on purpose: {reason}")
    typed = getattr(wayang_plugin, wanted, None)
    if not (isinstance(typed, type) and issubclass(typed, wayang_plugin.PluginError)):
        raise _ClaimedError(f"failing on purpose as {wanted}: {reason}", wanted)
    raise typed(
        f"failing on purpose as {wanted}: {reason}",
        retryable=properties.get("retryable"),
        suggested_action=properties.get("suggestedAction") or None,
        details={"reason": reason},
    )
