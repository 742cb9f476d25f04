"""The wasm strategy of the runtime host: a `wasm` plugin's module runs on wasmtime inside the
host's worker process, so it gets the same node contract as a Python plugin (execute, health,
readiness, metrics, ErrorPayloads, timeouts, the call breaker) and the engine never sees the type.

Deny by default. The module gets WASI with no arguments, no environment, no stdin and no
preopened directory; stdout and stderr go to the host's stderr. With the `filesystem` grant the
operator sets WAYANG_WASM_PREOPEN to the granted writable directory (`/data`), preopened as
`/data`. There is no socket API in WASI preview 1 and no network host function, so a module
cannot reach the network whatever its grants (see docs/artifacts.md). Memory is limited by
WAYANG_WASM_MEMORY (the plugin's resourceProfile.memory): a `memory.grow` past it fails. The
call's deadline (the plugin's timeout, `wayang_plugin.timeout()`) interrupts the module through
wasmtime's epochs just before the host's own timeout would kill the worker.

The plugin ABI (docs/artifacts.md): the module exports `memory`, `alloc(size: i32) -> i32` and
the function `implementation.entrypoint` names (default `execute`), `(ptr: i32, len: i32) ->
i64`. The host writes the UTF-8 JSON `{"inputs": {...}, "properties": {...}}` at `alloc(len)`,
calls the function, and reads the JSON the returned `(ptr << 32) | len` points at:
`{"output": <the success port's value>}`, or `{"error": {"type", "message", "retryable",
"suggestedAction", "details"}}` for a typed ErrorPayload.
"""

from __future__ import annotations

import json
import os
import threading
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


def execute(inputs: dict[str, Any], properties: dict[str, Any]) -> Any:
    """One call of the module, in a fresh store (no state survives between calls)."""
    store = _store()
    linker = wasmtime.Linker(ENGINE)
    linker.define_wasi()
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
    limit = wayang_plugin.timeout() or 30.0
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
