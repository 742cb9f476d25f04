"""The runtime host's wasm strategy as a real process: wasm samples compiled from their WAT
sources, run on wasmtime in the host's workers, deny by default.

The conformance cases run against both strategies of the host (the Python echo and the wasm
echo): the same node contract (the success port, a schema violation naming its field, unknown
paths, probes, metrics), so the engine never sees the type. Then what only wasm has: the
deadline interrupts a module that never returns, `memory.grow` fails past the memory limit, a
module that imports what it is not given cannot run, one that does not compile keeps the host
unready with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from tests.integration.test_runtime_host import SAMPLES, Host, running, sample
from tests.runtime_build import BUILD

ROOT = Path(__file__).resolve().parents[2]
WASM_SAMPLES = ROOT / "runtime-images" / "wasm" / "samples"


def wasm_plugin(
    folder: Path, name: str, module: bytes | None = None
) -> tuple[dict[str, Any], Path]:
    """The sample's descriptor, and a plugin folder holding its module as the fetcher leaves it."""
    descriptor = json.loads((WASM_SAMPLES / name / "plugin.json").read_text())
    plugin = folder / f"{name}-plugin"
    plugin.mkdir(parents=True)
    (plugin / "artifact").write_bytes(module or BUILD.wasm_module(WASM_SAMPLES / name)[1])
    return descriptor, plugin


@pytest.fixture(scope="module", params=["python", "wasm"])
def echo(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Host]:
    """The echo plugin on the host, as a Python module or as a wasm module."""
    folder = tmp_path_factory.mktemp(request.param)
    if request.param == "python":
        context = running(folder, sample("echo"), SAMPLES / "echo")
    else:
        descriptor, plugin = wasm_plugin(folder, "echo")
        context = running(folder, descriptor, plugin)
    with context as host:
        host.wait_ready()
        yield host


def test_the_wasm_samples_are_the_same_bytes_on_every_build() -> None:
    for folder in sorted(WASM_SAMPLES.iterdir()):
        name, module = BUILD.wasm_module(folder)
        assert name.endswith("-1.0.0.wasm")
        assert BUILD.wasm_module(folder)[1] == module
        wasmtime.Module.validate(wasmtime.Engine(), module)


# --- conformance: the same contract on every strategy ------------------------------------------


def test_an_answer_comes_on_the_success_port(echo: Host) -> None:
    status, answer = echo.execute({"text": "hello"})
    assert status == 200
    assert answer["port"] == "echoed"
    python, wasm = {"text": "HELLO!", "count": 1}, {"inputs": {"text": "hello"}, "properties": {}}
    assert answer["output"] in (python, wasm), answer


def test_a_schema_violation_names_the_field_before_the_plugin_runs(echo: Host) -> None:
    status, answer = echo.execute({"text": "x" * 1001})
    assert status == 200
    assert answer["port"] == "error"
    assert answer["error"]["type"] == "ValidationError"
    assert answer["error"]["details"]["field"] == "inputs.text"


def test_probes_and_unknown_paths(echo: Host) -> None:
    assert echo.get("/healthz")[0] == 200
    assert echo.get("/readyz")[0] == 200
    assert echo.request("GET", "/nowhere")[0] == 404


def test_metrics_count_the_calls(echo: Host) -> None:
    before = echo.metrics()
    echo.execute({"text": "count me"})
    after = echo.metrics()
    key = 'wayang_plugin_executions_total{outcome="success"}'
    assert after[key] == before.get(key, 0) + 1


# --- wasm only -----------------------------------------------------------------------------------


def test_a_module_past_its_deadline_is_interrupted_and_the_host_serves_on(tmp_path: Path) -> None:
    descriptor, plugin = wasm_plugin(tmp_path, "spin")
    with running(tmp_path, descriptor, plugin) as host:
        host.wait_ready()
        status, answer = host.execute({"text": "x"})
        assert status == 200
        assert answer["port"] == "error"
        assert answer["error"]["type"] == "Timeout"
        assert answer["error"]["retryable"] is True
        assert "ran past its 1s deadline" in answer["error"]["message"]
        assert host.get("/readyz")[0] == 200


@pytest.mark.parametrize(("memory", "grown"), [("192Mi", False), ("512Mi", True)])
def test_memory_grows_only_up_to_the_limit(tmp_path: Path, memory: str, grown: bool) -> None:
    descriptor, plugin = wasm_plugin(tmp_path, "hog")
    with running(tmp_path, descriptor, plugin, {"WAYANG_WASM_MEMORY": memory}) as host:
        host.wait_ready()
        status, answer = host.execute({"text": "x"})
        assert status == 200
        assert answer["output"] == {"grown": grown}, answer


def test_a_module_that_imports_what_it_is_not_given_cannot_run(tmp_path: Path) -> None:
    """No network host function exists: a module asking for one is refused, not linked."""
    wants = wasmtime.wat2wasm(
        '(module (import "wayang" "http_get" (func (param i32 i32) (result i32)))'
        ' (memory (export "memory") 1)'
        ' (func (export "alloc") (param i32) (result i32) (i32.const 0))'
        ' (func (export "execute") (param i32 i32) (result i64) (i64.const 0)))'
    )
    descriptor, plugin = wasm_plugin(tmp_path, "echo", bytes(wants))
    with running(tmp_path, descriptor, plugin) as host:
        host.wait_ready()
        _, answer = host.execute({"text": "x"})
        assert answer["port"] == "error"
        assert answer["error"]["type"] == "ToolError"
        assert "cannot be instantiated" in answer["error"]["message"]
        assert "wayang" in answer["error"]["message"]


def test_a_module_that_does_not_compile_keeps_the_host_unready(tmp_path: Path) -> None:
    descriptor, plugin = wasm_plugin(tmp_path, "echo", b"\x00asm\x01\x00\x00\x00\xff")
    with running(tmp_path, descriptor, plugin) as host:
        body = host.wait_ready(503)
        assert host.get("/healthz")[0] == 200
        assert "wasm" in json.dumps(body).lower() or "module" in json.dumps(body).lower(), body
