"""Sample plugin `flaky`: fails its first `failures` calls, then succeeds.

Calls are counted in the file named by the `counterFile` property (locked, so every worker and
every host process sharing the file count together), else per worker process. A failure raises
FlakyError, whose `retryable` attribute (the `retryable` property) the host reports on the
ToolError it makes of it. Inputs: `text`, echoed back with the call's number.
"""

from __future__ import annotations

import fcntl
import os
from typing import Any

_calls = 0


class FlakyError(RuntimeError):
    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def _count(path: str) -> int:
    global _calls  # noqa: PLW0603 - a worker's own counter without a file
    if not path:
        _calls += 1
        return _calls
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        text = os.read(descriptor, 64).decode().strip()
        calls = (int(text) if text else 0) + 1
        os.lseek(descriptor, 0, os.SEEK_SET)
        os.ftruncate(descriptor, 0)
        os.write(descriptor, str(calls).encode())
        return calls
    finally:
        os.close(descriptor)  # releases the lock


def execute(inputs: dict[str, Any], properties: dict[str, Any]) -> dict[str, Any]:
    call = _count(str(properties.get("counterFile") or ""))
    failures = int(properties.get("failures") or 0)
    if call <= failures:
        raise FlakyError(
            f"flaky on purpose: call {call} of {failures} failing",
            retryable=bool(properties.get("retryable", True)),
        )
    return {"text": inputs.get("text", ""), "call": call}
