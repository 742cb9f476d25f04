"""The wasm strategy of the runtime host: a `wasm` plugin's module runs on wasmtime inside the
host's worker process, so it gets the same node contract as a Python plugin (execute, health,
readiness, metrics, ErrorPayloads, timeouts, the call breaker) and the engine never sees the type.

Deny by default. The module gets WASI with no arguments, no environment, no stdin and no
preopened directory; stdout and stderr go to the host's stderr. With the `filesystem` grant the
operator sets WAYANG_WASM_PREOPEN to the granted writable directory (`/data`), preopened as
`/data`. There is no socket API in WASI preview 1: the only way out is the host function
`wayang.http` (below), which makes the request only when the operator set WAYANG_WASM_NETWORK
(the plugin holds a capability that opens the network: `network`, `database`, `llm_access`...),
and then only where the pod's NetworkPolicy lets the host go; otherwise it answers a
SecurityError without touching the network. Memory is limited by
WAYANG_WASM_MEMORY (the plugin's resourceProfile.memory): a `memory.grow` past it fails. The
call's deadline (the plugin's timeout, `wayang_plugin.timeout()`) interrupts the module through
wasmtime's epochs just before the host's own timeout would kill the worker.

The plugin ABI (docs/artifacts.md): the module exports `memory`, `alloc(size: i32) -> i32` and
the function `implementation.entrypoint` names (default `execute`), `(ptr: i32, len: i32) ->
i64`. The host writes the UTF-8 JSON `{"inputs": {...}, "properties": {...}}` at `alloc(len)`,
calls the function, and reads the JSON the returned `(ptr << 32) | len` points at:
`{"output": <the success port's value>}`, or `{"error": {"type", "message", "retryable",
"suggestedAction", "details"}}` for a typed ErrorPayload.

Outbound HTTP: a module may import `wayang.http(ptr: i32, len: i32) -> i64`. It writes the JSON
`{"method": "GET", "url": "https://...", "headers": {...}, "body": "..."}` (method, headers and
body optional) and gets back, packed like its own answer and allocated with its `alloc`,
`{"status": 200, "headers": {...}, "body": "<text>"}` or `{"error": {"type", "message"}}`
(SecurityError without the grant, NetworkError when the request fails). Bodies are text, at
most HTTP_LIMIT bytes; the request shares the call's deadline.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import wasmtime
import wayang_abi
import wayang_plugin

MODULE = Path(os.environ.get("WAYANG_PLUGIN_PATH", "/opt/wayang/plugin")) / "artifact"
"""Where the pod's fetcher put the verified module (a single-file artifact)."""
LIMIT = wayang_abi.memory_bytes(os.environ.get("WAYANG_WASM_MEMORY", "128Mi"), "WAYANG_WASM_MEMORY")
EXPORT = os.environ.get("WAYANG_WASM_EXPORT") or "execute"
PREOPEN = os.environ.get("WAYANG_WASM_PREOPEN", "")
NETWORK = os.environ.get("WAYANG_WASM_NETWORK") == "1"
HTTP_LIMIT = 1 << 20
"""The largest response body a module gets through `wayang.http`."""


def _engine() -> wasmtime.Engine:
    config = wasmtime.Config()
    config.epoch_interruption = True
    # explicit bounds checks instead of a 4 GiB reservation with guard pages: the module's
    # address space stays near its limit (gVisor and small cgroups count what is mapped)
    config.memory_reservation = LIMIT
    config.memory_guard_size = 0
    return wasmtime.Engine(config)


ENGINE = _engine()
COMPILED = wasmtime.Module(ENGINE, MODULE.read_bytes())
"""Compiled once per worker, at load: a module that does not compile is a load error."""


class _Deadline:
    """Interrupts the running module shortly before the host's timeout."""

    def __init__(self, seconds: float) -> None:
        self.timer = threading.Timer(seconds, ENGINE.increment_epoch)
        self.timer.daemon = True

    def __enter__(self) -> None:
        self.timer.start()

    def __exit__(self, *_: object) -> None:
        self.timer.cancel()


def _store() -> wasmtime.Store:
    store = wasmtime.Store(ENGINE)
    store.set_limits(memory_size=LIMIT)
    store.set_epoch_deadline(1)
    wasi = wasmtime.WasiConfig()
    wasi.inherit_stdout = False
    wasi.inherit_stderr()
    if PREOPEN:
        wasi.preopen_dir(PREOPEN, "/data")
    store.set_wasi(wasi)
    return store


def http_answer(request: Any, deadline: float) -> dict[str, Any]:
    """What `wayang.http` answers a module's request (the JSON it wrote)."""
    if not NETWORK:
        return _refused("SecurityError", "outbound HTTP needs the network capability")
    if not isinstance(request, dict) or not str(request.get("url", "")).startswith(
        ("http://", "https://")
    ):
        return _refused("ValidationError", 'the request needs an http(s) "url"')
    body = request.get("body")
    outgoing = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        str(request["url"]),
        data=body.encode() if isinstance(body, str) else None,
        method=str(request.get("method") or "GET"),
        headers={str(k): str(v) for k, v in (request.get("headers") or {}).items()},
    )
    try:
        timeout = max(0.05, deadline - time.monotonic())
        with urllib.request.urlopen(outgoing, timeout=timeout) as response:  # noqa: S310
            status, headers, data = (
                response.status,
                dict(response.headers),
                response.read(HTTP_LIMIT),
            )
    except urllib.error.HTTPError as error:
        status, headers, data = error.code, dict(error.headers), error.read(HTTP_LIMIT)
    except (urllib.error.URLError, OSError, ValueError) as error:
        return _refused("NetworkError", f"{request['url']}: {getattr(error, 'reason', error)}")
    return {"status": status, "headers": headers, "body": data.decode(errors="replace")}


def _refused(kind: str, message: str) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message}}


def _define_http(linker: wasmtime.Linker, deadline: float) -> None:
    def http(caller: wasmtime.Caller, pointer: int, length: int) -> int:
        memory, alloc = caller.get("memory"), caller.get("alloc")
        if not isinstance(memory, wasmtime.Memory) or not isinstance(alloc, wasmtime.Func):
            raise wasmtime.WasmtimeError("wayang.http needs the exports `memory` and `alloc`")
        try:
            request = json.loads(memory.read(caller, pointer, pointer + length))
        except ValueError:
            request = None
        answer = json.dumps(http_answer(request, deadline)).encode()
        at = alloc(caller, len(answer))
        memory.write(caller, answer, at)
        return (at << 32) | len(answer)

    kind = wasmtime.FuncType(
        [wasmtime.ValType.i32(), wasmtime.ValType.i32()], [wasmtime.ValType.i64()]
    )
    linker.define_func("wayang", "http", kind, http, access_caller=True)


def execute(inputs: dict[str, Any], properties: dict[str, Any]) -> Any:
    """One call of the module, in a fresh store (no state survives between calls)."""
    store = _store()
    limit = wayang_plugin.timeout() or 30.0
    linker = wasmtime.Linker(ENGINE)
    linker.define_wasi()
    _define_http(linker, time.monotonic() + limit * 0.9)
    try:
        instance = linker.instantiate(store, COMPILED)
    except wasmtime.WasmtimeError as error:
        raise wayang_plugin.ToolError(f"the wasm module cannot be instantiated: {error}") from None
    exports = instance.exports(store)
    memory, alloc, run = exports.get("memory"), exports.get("alloc"), exports.get(EXPORT)
    if not isinstance(memory, wasmtime.Memory) or not isinstance(alloc, wasmtime.Func):
        raise wayang_plugin.ToolError("the wasm module does not export `memory` and `alloc`")
    if not isinstance(run, wasmtime.Func):
        raise wayang_plugin.ToolError(f"the wasm module does not export the function {EXPORT!r}")
    request = json.dumps({"inputs": inputs, "properties": properties}).encode()
    try:
        with _Deadline(max(0.05, limit * 0.9)):
            pointer = alloc(store, len(request))
            memory.write(store, request, pointer)
            packed = run(store, pointer, len(request))
    except wasmtime.Trap as trap:
        if trap.trap_code == wasmtime.TrapCode.INTERRUPT:
            late = wayang_plugin.PluginError(f"the wasm module ran past its {limit:g}s deadline")
            late.error_type, late.retryable = "Timeout", True
            raise late from None
        raise wayang_plugin.ToolError(f"the wasm module trapped: {trap.message}") from None
    start, length = (packed >> 32) & 0xFFFFFFFF, packed & 0xFFFFFFFF
    return wayang_abi.output(memory.read(store, start, start + length), "the wasm module")
