"""The runtime host's wasm strategy as a real process: wasm samples compiled from their WAT
sources, run on wasmtime in the host's workers, deny by default.

The node contract every strategy shares (success and error ports, schema violations, typed
errors, probes, metrics, the deadline, a module that does not compile) is tested in
test_host_conformance.py, on the wasm samples too. Here is what only wasm has: `memory.grow`
fails past the memory limit, and a module that imports what it is not given cannot run.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from tests.integration.test_runtime_host import running
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


def test_the_wasm_samples_are_the_same_bytes_on_every_build() -> None:
    for folder in sorted(WASM_SAMPLES.iterdir()):
        name, module = BUILD.wasm_module(folder)
        assert name.endswith("-1.0.0.wasm")
        assert BUILD.wasm_module(folder)[1] == module
        wasmtime.Module.validate(wasmtime.Engine(), module)


# --- wasm only -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("memory", "grown"), [("192Mi", False), ("512Mi", True)])
def test_memory_grows_only_up_to_the_limit(tmp_path: Path, memory: str, grown: bool) -> None:
    descriptor, plugin = wasm_plugin(tmp_path, "hog")
    with running(tmp_path, descriptor, plugin, {"WAYANG_WASM_MEMORY": memory}) as host:
        host.wait_ready()
        status, answer = host.execute({"text": "x"})
        assert status == 200
        assert answer["output"] == {"grown": grown}, answer


def test_a_module_that_imports_what_it_is_not_given_cannot_run(tmp_path: Path) -> None:
    """Only WASI and `wayang.http` are linked: a module asking for anything else is refused."""
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


@pytest.fixture
def web() -> Iterator[tuple[str, list[str]]]:
    """A local HTTP server answering every GET with a fixed body, and the paths it was asked."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            self.send_response(200)
            self.send_header("X-Seen", self.path)
            self.end_headers()
            self.wfile.write(b"hello from the network")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


@pytest.mark.parametrize("granted", [True, False])
def test_a_module_reaches_the_network_only_through_the_host_and_only_with_the_grant(
    tmp_path: Path, web: tuple[str, list[str]], granted: bool
) -> None:
    url, seen = web
    descriptor, plugin = wasm_plugin(tmp_path, "fetch")
    env = {"WAYANG_WASM_NETWORK": "1" if granted else ""}
    with running(tmp_path, descriptor, plugin, env) as host:
        host.wait_ready()
        status, answer = host.execute({"url": f"{url}/page"})
        assert status == 200
        assert answer["port"] == "fetched", answer
        if granted:
            assert answer["output"]["status"] == 200
            assert answer["output"]["body"] == "hello from the network"
            assert answer["output"]["headers"]["X-Seen"] == "/page"
            assert seen == ["/page"]
        else:
            assert seen == [], "the request never left the host"
            assert answer["output"] == {
                "error": {
                    "type": "SecurityError",
                    "message": "outbound HTTP needs the network capability",
                }
            }
