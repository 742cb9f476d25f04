"""Sample plugin `crasher`: ends its worker process with os._exit(3) (the host reports an
UnknownError and starts another worker); with `crash: false` it answers normally."""

from __future__ import annotations

import os
from typing import Any


def execute(inputs: dict[str, Any], properties: dict[str, Any]) -> dict[str, Any]:
    if inputs.get("crash", True):
        os._exit(3)
    return {"survived": True}
