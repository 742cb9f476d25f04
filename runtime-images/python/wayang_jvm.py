"""The JVM strategy of the runtime host: a `jar` or `maven` plugin runs in a JVM that this module
starts, one per host worker, so the plugin gets the same node contract as a Python or wasm plugin
(host.py keeps serving it: execute, probes, metrics, ErrorPayloads, timeouts, the call breaker).

At import (the worker's load) it starts `java` (WAYANG_JAVA, else from PATH) on the JVM host
(io.wayang.jvm.Host, WAYANG_JVM_HOST_JAR, else jvm/wayang-jvm-host.jar beside this file), which
loads the class WAYANG_JVM_CLASS names from the plugin's jar in a class loader of its own and
says whether that worked: a missing jar, an unknown class, or one that is not a
`java.util.function.Function<String, String>` is the worker's load failure, so the host stays
unready with the reason. The JVM is a child of the worker, in the worker's process group: the
host's timeout, which kills the group, kills the JVM with it.

Each call is the wasm ABI (docs/artifacts.md, read by wayang_abi): the JVM host is sent the
deadline (90 % of the call's timeout) and the request JSON, as frames over its stdin, and answers
one frame on its stdout, the plugin's answer JSON or its own error for the plugin (a Timeout when
the deadline interrupted the call, a ToolError for an exception). When the JVM is gone (the
plugin called System.exit, it crashed) or a call thread ignored its interrupt, the call is an
error and the worker ends, so the host starts another worker and with it another JVM.

Memory: WAYANG_JVM_MEMORY is the plugin's memory limit (resourceProfile.memory, a quantity);
each worker's JVM gets three quarters of its share (the limit over WAYANG_WORKERS) as its heap,
the rest is for the JVM's own memory and the Python worker. Unset, the JVM's default applies.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import wayang_abi
import wayang_plugin

HERE = Path(__file__).resolve().parent
PLUGIN = os.environ.get("WAYANG_PLUGIN_PATH", "/opt/wayang/plugin")
"""Where the pod's fetcher put the verified jar (artifact.jar, or the jar unpacked) and lib/."""
CLASS = os.environ.get("WAYANG_JVM_CLASS", "")
HOST_JAR = Path(os.environ.get("WAYANG_JVM_HOST_JAR") or HERE / "jvm" / "wayang-jvm-host.jar")
JAVA = os.environ.get("WAYANG_JAVA") or "java"
FLAGS = (
    "-XX:+UseSerialGC",  # one small heap, no GC threads per core
    "-XX:TieredStopAtLevel=1",  # C1 only: quick to warm, small code cache
    "-Xss512k",
    "-XX:-UsePerfData",  # no hsperfdata file in /tmp (the root file system is read-only)
    "-Xshare:auto",  # the JDK's class data sharing archive when there is one: faster start
    "-XX:+ExitOnOutOfMemoryError",  # out of memory the JVM ends, and the host replaces it
)
HEAP_SHARE = 0.75
"""Of each worker's share of the plugin's memory, what the JVM's heap may take."""


class JvmLoadError(Exception):
    """The JVM, or the plugin in it, could not be started: the host stays unready with this."""


def heap_flags(environ: Mapping[str, str]) -> list[str]:
    """-Xmx for one worker's JVM from WAYANG_JVM_MEMORY and WAYANG_WORKERS (none if unset)."""
    memory = environ.get("WAYANG_JVM_MEMORY", "")
    if not memory:
        return []
    workers = max(1, int(environ.get("WAYANG_WORKERS") or 2))
    heap = int(wayang_abi.memory_bytes(memory, "WAYANG_JVM_MEMORY") * HEAP_SHARE / workers)
    return [f"-Xmx{max(heap // 1024, 2048)}k"]  # the JVM refuses a heap under 2 MiB


def _exited(code: int) -> str:
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"


def _start() -> subprocess.Popen[bytes]:
    if not HOST_JAR.is_file():
        raise JvmLoadError(f"the JVM host is missing: no {HOST_JAR}")
    command = [JAVA, *FLAGS, *heap_flags(os.environ), "-cp", str(HOST_JAR), "io.wayang.jvm.Host"]
    try:
        jvm = subprocess.Popen(  # noqa: S603 - the host's own java, the descriptor's class
            [*command, CLASS, PLUGIN], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
    except OSError as error:
        raise JvmLoadError(f"cannot start {JAVA}: {error.strerror}") from None
    assert jvm.stdout is not None
    report = wayang_abi.read_frame(jvm.stdout)
    if report is None:
        raise JvmLoadError(f"the JVM exited with {_exited(jvm.wait())} before loading the plugin")
    loaded = json.loads(report)
    if not loaded.get("ready"):
        jvm.wait()
        raise JvmLoadError(str(loaded.get("message")))
    return jvm


JVM = _start()


def _ending(error: wayang_plugin.PluginError) -> wayang_plugin.PluginError:
    """`error`, for a call after which this JVM cannot serve: the JVM is killed and the worker
    ends after answering (host.py reads `ends_worker`), so the next call gets a fresh worker and
    JVM."""
    JVM.kill()
    error.ends_worker = True  # type: ignore[attr-defined]
    return error


def _lost(message: str) -> wayang_plugin.PluginError:
    return _ending(wayang_plugin.ToolError(message, retryable=True, suggested_action="retry"))


def execute(inputs: dict[str, Any], properties: dict[str, Any]) -> Any:
    """One call of the plugin in the JVM."""
    assert JVM.stdin is not None
    assert JVM.stdout is not None
    request = json.dumps({"inputs": inputs, "properties": properties}).encode()
    deadline_ms = max(50, round((wayang_plugin.timeout() or 30.0) * 900))
    try:
        wayang_abi.write_frame(JVM.stdin, str(deadline_ms).encode())
        wayang_abi.write_frame(JVM.stdin, request)
        answer = wayang_abi.read_frame(JVM.stdout)
    except BrokenPipeError:
        answer = None
    except wayang_abi.FrameError as error:
        raise _lost(f"the JVM host broke the protocol: {error}") from None
    if answer is None:
        raise _lost(f"the JVM exited with {_exited(JVM.wait())} during the call") from None
    try:
        return wayang_abi.output(answer, "the JVM plugin")
    except wayang_plugin.PluginError as error:
        if error.error_type == "Timeout" and error.details.get("stopped") is False:
            raise _ending(error) from None  # the call thread runs on in the JVM
        raise
