"""Benchmark: the runtime host's strategies side by side, in one run, as plain processes.

For the trivial echo plugin of each strategy (a Python module, a wasm module on wasmtime, a jar
on the JVM), host.py runs on this machine as bench_workloads' baseline does: execute p50/p99 of
sequential calls and calls/s from concurrent clients (bench_workloads.measure), and the idle
RSS of the host with its workers (and their JVMs) once it is ready. Ratios are against the
Python module, measured in the same run. Approval to Ready on the node is bench_workloads' part
(the container sample); this one needs neither root nor a cluster, only java for the JVM row.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from tests.runtime_build import BUILD

from e2e.bench_workloads import CLIENTS, ECHO, SECONDS, SEQUENTIAL, Measured, direct_host
from e2e.conftest import ROOT

WASM = ROOT / "runtime-images" / "wasm" / "samples" / "echo"
JVM = ROOT / "runtime-images" / "jvm" / "samples" / "echo"


def tree_rss_mib(pid: int) -> float:
    """RSS of a process and all its descendants (the host, its workers, their JVMs)."""
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        total += next(
            int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")
        )
        pending += [int(child) for child in children]
    return total / 1024


def recorder(into: list[float]) -> Callable[[int], None]:
    """A direct_host `sample` that appends the host's idle RSS to `into`."""
    return lambda pid: into.append(tree_rss_mib(pid))


def hosted(folder: Path, sample: Path, name: str, data: bytes) -> tuple[str, Path]:
    """(descriptor text, plugin folder) of a fetched sample as the pod's fetcher leaves it."""
    plugin = folder / f"{sample.parent.parent.name}-plugin"
    plugin.mkdir()
    (plugin / name).write_bytes(data)
    return (sample / "plugin.json").read_text(), plugin


def main() -> None:
    print(
        f"runtime hosts, echo: p50/p99 of {SEQUENTIAL} sequential calls, calls/s from {CLIENTS} "
        f"clients for {SECONDS:.0f} s, idle RSS of the host and its workers",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="wayang-bench-hosts-") as name:
        folder = Path(name)
        wasm = hosted(folder, WASM, "artifact", BUILD.wasm_module(WASM)[1])
        jvm = hosted(folder, JVM, "artifact.jar", BUILD.jar_sample(JVM)[1])
        host_jar = folder / "wayang-jvm-host.jar"  # where the image has it, the build makes it
        host_jar.write_bytes(BUILD.jvm_host_jar())
        rows: list[tuple[str, str | None, Path, dict[str, str]]] = [
            ("python (baseline)", None, ECHO, {}),
            ("wasm (wasmtime)", *wasm, {}),
            ("jar (JVM)", *jvm, {"WAYANG_JVM_HOST_JAR": str(host_jar)}),
        ]
        base: Measured | None = None
        base_rss = 0.0
        for label, descriptor, plugin, env in rows:
            idle: list[float] = []
            run = folder / label.split()[0]
            run.mkdir()
            measured = direct_host(run, descriptor, plugin, env, sample=recorder(idle))
            base = base or measured
            base_rss = base_rss or idle[0]
            p50, p99, rate, failed = measured
            print(
                f"  {label:18} p50 {p50:6.2f} ms (x{p50 / base[0]:.2f})   p99 {p99:6.2f} ms   "
                f"{rate:6.0f} calls/s (x{rate / base[2]:.2f})   idle RSS {idle[0]:6.1f} MiB "
                f"(x{idle[0] / base_rss:.2f}), {failed} failed",
                flush=True,
            )


if __name__ == "__main__":
    main()
