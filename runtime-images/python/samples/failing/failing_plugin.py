"""Sample plugin `failing`: always raises ValueError, which the host reports as a ToolError."""

from __future__ import annotations

from typing import Any


def execute(inputs: dict[str, Any], properties: dict[str, Any]) -> dict[str, Any]:
    raise ValueError(f"failing on purpose: {inputs.get('reason', 'no reason given')}")
