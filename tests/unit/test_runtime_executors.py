"""The pure parts of the runtime host's strategies: which entrypoint a jar or maven plugin's
workers get (host.py), and what the wasm and JVM executors share (wayang_abi.py): the frames the
JVM host is spoken to with, and the answers both read."""

from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import pytest

PYTHON = Path(__file__).resolve().parents[2] / "runtime-images" / "python"


def _load(name: str, path: Path, **imports: ModuleType) -> ModuleType:
    """A module of the runtime image from its file, with `imports` importable while it loads
    (as the workers' sys.path has them); sys.modules is as it was afterwards."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with mock.patch.dict(sys.modules, {**imports, name: module}):  # dataclasses look it up
        spec.loader.exec_module(module)
    return module


HOST = _load("wayang_host", PYTHON / "host.py")
API = _load("wayang_plugin", PYTHON / "lib" / "wayang_plugin.py")
ABI = _load("wayang_abi", PYTHON / "wayang_abi.py", wayang_plugin=API)


def _implementation(kind: str, entrypoint: Any) -> dict[str, Any]:
    return {"implementation": {"type": kind, "entrypoint": entrypoint}}


@pytest.mark.parametrize("kind", ["jar", "maven"])
@pytest.mark.parametrize(
    "name", ["Echo", "io.wayang.samples.echo.Echo", "com.example.Outer$Inner", "_x.$y", "été.Ça"]
)
def test_a_jvm_plugin_is_run_by_its_class(kind: str, name: str) -> None:
    assert HOST._entrypoint(_implementation(kind, name)) == f"<jvm>:{name}"


@pytest.mark.parametrize("kind", ["jar", "maven"])
@pytest.mark.parametrize(
    "name", [None, "", "a..b", "1abc", "a.1b", "a.b:execute", "a b", ".a", "a.", 7, "a-b"]
)
def test_a_jvm_plugin_needs_a_class_name(kind: str, name: Any) -> None:
    with pytest.raises(HOST.DescriptorError, match=r"implementation\.entrypoint .* class"):
        HOST._entrypoint(_implementation(kind, name))


def test_every_marked_entrypoint_has_an_executor() -> None:
    assert set(HOST.EXECUTORS) == {HOST.WASM, HOST.JVM}
    assert HOST._entrypoint(_implementation("wasm", None)).startswith(HOST.WASM)


@pytest.mark.parametrize("data", [b"", b"{}", b'{"a": "line\nline"}', "ünï\n".encode() * 999])
def test_a_frame_reads_back_as_written(data: bytes) -> None:
    stream = io.BytesIO()
    ABI.write_frame(stream, data)
    ABI.write_frame(stream, b"next")
    assert stream.getvalue().startswith(b"%d\n" % len(data))
    stream.seek(0)
    assert ABI.read_frame(stream) == data
    assert ABI.read_frame(stream) == b"next"
    assert ABI.read_frame(stream) is None, "the stream ended between frames"


@pytest.mark.parametrize(
    ("stream", "problem"),
    [
        (b"5\nabc", "ended 3 bytes into a frame of 5"),
        (b"x\nabc", "not a frame's length line"),
        (b"\n", "not a frame's length line"),
        (b"-1\n", "not a frame's length line"),
        (b"12", "not a frame's length line"),
        (b"12345678901\n", "not a frame's length line"),
    ],
)
def test_a_stream_that_is_not_frames_is_refused(stream: bytes, problem: str) -> None:
    with pytest.raises(ABI.FrameError, match=problem):
        ABI.read_frame(io.BytesIO(stream))


def test_an_answer_is_its_output_or_its_typed_error() -> None:
    assert ABI.output(b'{"output": {"a": [1]}}', "the plugin") == {"a": [1]}
    assert ABI.output('{"output": null}', "the plugin") is None
    error = (
        '{"error": {"type": "LLMError", "message": "m", "retryable": true, "details": {"k": 1}}}'
    )
    with pytest.raises(API.PluginError) as raised:
        ABI.output(error, "the plugin")
    assert (raised.value.error_type, raised.value.retryable) == ("LLMError", True)
    assert (str(raised.value), raised.value.details) == ("m", {"k": 1})


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"nope", "the plugin's answer is not JSON"),
        (b"[1]", 'the plugin\'s answer has no "output" or "error"'),
        (b'{"result": 1}', 'the plugin\'s answer has no "output" or "error"'),
        (b'{"error": "bad"}', "the plugin's error is not an ErrorPayload"),
    ],
)
def test_an_answer_that_is_no_answer_is_a_tool_error(answer: bytes, message: str) -> None:
    with pytest.raises(API.ToolError, match=message):
        ABI.output(answer, "the plugin")


@pytest.mark.parametrize(
    ("quantity", "size"), [("500000", 500000), ("64Mi", 64 << 20), ("1G", 10**9), (" 2Ki ", 2048)]
)
def test_memory_quantities(quantity: str, size: int) -> None:
    assert ABI.memory_bytes(quantity, "X") == size


def test_a_memory_quantity_names_its_setting() -> None:
    with pytest.raises(ValueError, match=r"WAYANG_JVM_MEMORY='1.5Gi' is not a memory quantity"):
        ABI.memory_bytes("1.5Gi", "WAYANG_JVM_MEMORY")
