"""Benchmark of the local control plane (`make bench`), with ratios against same-run baselines.

- warm `cluster-up` (binaries cached) against its floor: the time the API server alone took to
  become ready within the same start;
- resident memory of the running control plane, per component, against the API server's;
- with `--cold`, the build from an empty Go module cache, Go build cache and binary cache (in a
  temporary folder, so the real caches stay warm), against the warm, fully cached build check.
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


def cold() -> None:
    cached = time.monotonic()
    build.ensure_built(build.CONTROL_PLANE)
    cached = time.monotonic() - cached
    with tempfile.TemporaryDirectory(prefix="wayang-cold-") as folder:
        for variable in ("GOMODCACHE", "GOCACHE", "WAYANG_CACHE"):
            os.environ[variable] = str(Path(folder) / variable.lower())
        started = time.monotonic()
        build.ensure_built(build.CONTROL_PLANE)
        took = time.monotonic() - started
        # Go makes its module cache read-only; the temporary folder must be removable
        subprocess.run(["chmod", "-R", "u+w", folder], check=True)
    print(f"cold build of {', '.join(build.CONTROL_PLANE)}")
    print(f"  warm (all cached)      {cached:8.2f} s   x1")
    print(f"  cold (empty caches)    {took:8.2f} s   x{took / cached:.0f}")


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
