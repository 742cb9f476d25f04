"""Sample plugin `slow`: sleeps longer than its timeout, so the host kills it (a Timeout)."""

from __future__ import annotations

import time
from typing import Any


def execute(inputs: dict[str, Any], properties: dict[str, Any]) -> dict[str, Any]:
    seconds = float(inputs.get("seconds", 60))
    time.sleep(seconds)
    return {"slept": seconds}
