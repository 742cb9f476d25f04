"""Benchmark of the local control plane (`make bench`), with ratios against same-run baselines.

- warm `cluster-up` (binaries cached) against its floor: the time the API server alone took to
  become ready within the same start;
- resident memory of the running control plane, per component, against the API server's;
- with `--cold`, the build from an empty Go module cache, Go build cache and binary cache (in a
  temporary folder, so the real caches stay warm), against a rebuild of the binaries with Go's
  caches warm.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from . import build
from .cluster import ORDER, Layout, _read_pid, down, up

ROUNDS = 3


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def warm(layout: Layout) -> None:
    build.ensure_built(build.CONTROL_PLANE)
    totals, floors, memory = [], [], {}
    for _ in range(ROUNDS):
        started = time.monotonic()
        cluster = up(layout)
        totals.append(time.monotonic() - started)
        floors.append(cluster.ready_seconds["etcd"] + cluster.ready_seconds["kube-apiserver"])
        time.sleep(5)  # let the controllers settle before reading memory
        memory = {name: rss_mib(pid) for name in ORDER if (pid := _read_pid(layout, name))}
        down(layout)
    total, floor = statistics.median(totals), statistics.median(floors)
    print(f"warm cluster-up, median of {ROUNDS}")
    print(f"  etcd + kube-apiserver ready (floor)  {floor:6.2f} s   x1.00")
    print(f"  whole cluster-up (users, RBAC too)   {total:6.2f} s   x{total / floor:.2f}")
    apiserver = memory["kube-apiserver"]
    print("resident memory after 5 s, MiB")
    for name, mib in memory.items():
        print(f"  {name:34} {mib:8.1f}   x{mib / apiserver:.2f} of kube-apiserver")
    print(f"  {'total':34} {sum(memory.values()):8.1f}")


def _timed_build(folder: Path, variables: tuple[str, ...]) -> float:
    saved = {name: os.environ.get(name) for name in variables}
    try:
        for name in variables:
            os.environ[name] = str(folder / name.lower())
        started = time.monotonic()
        build.ensure_built(build.CONTROL_PLANE)
        return time.monotonic() - started
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        # Go makes its module cache read-only; the temporary folder must be removable
        subprocess.run(["chmod", "-R", "u+w", str(folder)], check=True)


def cold() -> None:
    with tempfile.TemporaryDirectory(prefix="wayang-rebuild-") as folder:
        relink = _timed_build(Path(folder), ("WAYANG_CACHE",))
    with tempfile.TemporaryDirectory(prefix="wayang-cold-") as folder:
        took = _timed_build(Path(folder), ("GOMODCACHE", "GOCACHE", "WAYANG_CACHE"))
    print(f"build of {', '.join(build.CONTROL_PLANE)}")
    print(f"  rebuild, Go caches warm (baseline)   {relink:8.1f} s   x1.00")
    print(f"  cold, every cache empty              {took:8.1f} s   x{took / relink:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m e2e.localcluster.bench")
    parser.add_argument("--cold", action="store_true", help="also time a build from empty caches")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wayang-bench-") as folder:
        warm(Layout(Path(folder)))
    if args.cold:
        cold()


if __name__ == "__main__":
    main()
