"""Sample plugin `introspect`: reports what its sandbox looks like from inside, so tests (and a
curious cluster admin) can check the isolation a plugin really gets: the kernel it sees (gVisor
emulates its own), whether a service account token is mounted, whether it can open a connection
to `target`, its memory limit, its user, whether the root filesystem is writable, and the
traceparent its call came with (wayang_plugin.traceparent(): tests follow one trace from the
caller through the host into the plugin)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import wayang_plugin

TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
LIMITS = (
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),  # cgroup v1
    Path("/sys/fs/cgroup/memory.max"),  # cgroup v2
)


def _egress(target: str) -> str:
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return "ok"
    except OSError as error:
        return f"{type(error).__name__}: {error}"


def _memory_limit() -> str | None:
    for path in LIMITS:
        try:
            return path.read_text().strip()
        except OSError:
            continue
    return None


def _root_writable() -> bool:
    try:
        Path("/opt/wayang/.write-test").write_text("x")
    except OSError:
        return False
    return True


def execute(inputs: dict[str, Any], properties: dict[str, Any]) -> dict[str, Any]:
    target = inputs.get("target")
    return {
        "kernel": os.uname().release,
        "procVersion": Path("/proc/version").read_text().strip(),
        "token": TOKEN.exists(),
        "egress": _egress(target) if target else None,
        "memoryLimit": _memory_limit(),
        "uid": os.getuid(),
        "rootWritable": _root_writable(),
        "traceparent": wayang_plugin.traceparent(),
    }
