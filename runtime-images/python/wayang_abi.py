"""What the runtime host's non-Python executors share: the plugin ABI's answer, memory
quantities, and the frames a child executor (the JVM host) is spoken to with. A `wasm` module
(wayang_wasm.py) and a `jar`/`maven` plugin (wayang_jvm.py) are both given the UTF-8 JSON
`{"inputs": {...}, "properties": {...}}` and both answer `{"output": <the success port's value>}`
or `{"error": {"type", "message", "retryable", "suggestedAction", "details"}}`
(docs/artifacts.md), so one function reads both answers and the engine cannot tell the executors
apart by their errors.

It runs in the host's workers, with the plugin API (lib/wayang_plugin.py) on the path.
"""

from __future__ import annotations

import json
import re
from typing import Any, BinaryIO

import wayang_plugin

_UNITS = {"": 1, "k": 1000, "M": 1000**2, "G": 1000**3, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}


def memory_bytes(quantity: str, setting: str) -> int:
    """A Kubernetes memory quantity (`64Mi`, `1G`, `500000`) in bytes; `setting` names where it
    came from in the error."""
    found = re.fullmatch(r"([0-9]+)(|k|M|G|Ki|Mi|Gi)", quantity.strip())
    if found is None:
        raise ValueError(f"{setting}={quantity!r} is not a memory quantity")
    return int(found.group(1)) * _UNITS[found.group(2)]


def _typed(error: Any, who: str) -> Exception:
    """An answer's `{"error": ...}` as the plugin API's typed error."""
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return wayang_plugin.ToolError(f"{who}'s error is not an ErrorPayload: {error!r}")
    raised = wayang_plugin.PluginError(
        error["message"],
        retryable=error.get("retryable") if isinstance(error.get("retryable"), bool) else None,
        suggested_action=error.get("suggestedAction"),
        details=error.get("details") if isinstance(error.get("details"), dict) else None,
    )
    raised.error_type = str(error.get("type") or "ToolError")
    return raised


def output(answer: bytes | str, who: str) -> Any:
    """The success port's value of an answer, or its error raised; an answer that is not JSON,
    or has neither, is a ToolError. `who` names the plugin in the messages ("the wasm module")."""
    try:
        document = json.loads(answer)
    except ValueError as error:
        raise wayang_plugin.ToolError(f"{who}'s answer is not JSON: {error}") from None
    if isinstance(document, dict) and "error" in document:
        raise _typed(document["error"], who)
    if not isinstance(document, dict) or "output" not in document:
        raise wayang_plugin.ToolError(f'{who}\'s answer has no "output" or "error"')
    return document["output"]


MAX_DIGITS = 10
"""A frame's length line longer than this is not a frame (the Java host's Frames.MAX_DIGITS)."""


class FrameError(ValueError):
    """A stream that does not carry frames: the other side is broken, not the plugin's answer."""


def write_frame(stream: BinaryIO, data: bytes) -> None:
    """A frame to a child executor (the JVM host): the length in bytes as a decimal line, then
    the bytes. A length, not a delimiter, because the plugin's JSON may hold newlines."""
    stream.write(b"%d\n" % len(data) + data)
    stream.flush()


def read_frame(stream: BinaryIO) -> bytes | None:
    """The next frame's bytes, or None when the stream ended between frames (the child exited)."""
    line = stream.readline(MAX_DIGITS + 1)
    if not line:
        return None
    digits = line.removesuffix(b"\n")
    if not line.endswith(b"\n") or not digits.isdigit():
        raise FrameError(f"not a frame's length line: {line[:40]!r}")
    data = stream.read(int(digits))
    if len(data) != int(digits):
        raise FrameError(f"the stream ended {len(data)} bytes into a frame of {int(digits)}")
    return data
