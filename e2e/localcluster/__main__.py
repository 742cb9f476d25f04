"""`python -m e2e.localcluster up|down|status`: the local control plane for people and for CI.

`up` also merges the cluster into your default kubeconfig (as kind does) and makes `wayang-local`
the current context, so `kubectl get ns` works right away; `down` removes it again.

`up --node` also starts a node that runs pods under runc and gVisor (node.py; root only);
`down` stops it with the control plane, and also whatever a killed e2e session left of its own
cluster (`.cluster/e2e/`), so that `make cluster-down` always leaves no process behind.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from . import node
from .cluster import (
    CLUSTER_NAME,
    USERS,
    current,
    default_layout,
    down,
    e2e_layout,
    log,
    registry,
    status,
    up,
)


def _default_kubeconfig() -> Path:
    configured = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    return Path(configured) if configured else Path.home() / ".kube" / "config"


def _ours(name: str) -> bool:
    return name == CLUSTER_NAME or name in {user.user for user in USERS}


def _merge(kubeconfig: Path, ours: dict[str, Any] | None) -> None:
    """Replace this cluster's entries in `kubeconfig` by `ours` (None: just remove them)."""
    existing: dict[str, Any] = {}
    if kubeconfig.exists():
        existing = yaml.safe_load(kubeconfig.read_text()) or {}
    merged = {"apiVersion": "v1", "kind": "Config", **existing}
    for section in ("clusters", "users", "contexts"):
        kept = [entry for entry in merged.get(section) or [] if not _ours(entry.get("name", ""))]
        merged[section] = kept + (ours[section] if ours else [])
    if ours:
        merged["current-context"] = CLUSTER_NAME
    elif _ours(str(merged.get("current-context", ""))):
        merged.pop("current-context", None)
    kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    kubeconfig.write_text(yaml.safe_dump(merged, sort_keys=False))
    kubeconfig.chmod(0o600)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.localcluster")
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument(
        "--no-merge", action="store_true", help="leave the default kubeconfig alone"
    )
    parser.add_argument(
        "--node",
        action="store_true",
        help="up: also start a node (containerd with runc and gVisor, kubelet, kube-proxy; root)",
    )
    args = parser.parse_args(argv)
    if args.node and (args.command != "up" or os.geteuid() != 0):
        parser.error("--node goes with `up`, as root (containerd, iptables, cgroups, mounts)")
    layout = default_layout()
    target = _default_kubeconfig()
    if args.command == "up":
        cluster = up(layout)
        if not args.no_merge:
            _merge(target, yaml.safe_load(layout.kubeconfig.read_text()))
            log(f"merged context {CLUSTER_NAME!r} into {target} and made it current")
        users = ", ".join(user.user for user in USERS)
        log(f"kubeconfig: {layout.kubeconfig} (contexts: {CLUSTER_NAME} = admin, {users})")
        log(f"matching kubectl: {layout.bin / 'kubectl'} ({cluster.kubectl.parent.name})")
        oci = registry(layout)
        if oci is not None:
            log(f"OCI registry: https://{oci.address} (CA {oci.ca}; `wayang push --ca-file`)")
        if args.node:
            started = node.up(layout)
            log(
                f"node {started.name}: RuntimeClass {node.RUNTIME_CLASS!r} runs pods under "
                f"gVisor; images: node.import_image(), containerd at {started.layout.socket}"
            )
        return 0
    if args.command == "down":
        node.stop(layout)
        down(layout)
        leftover = e2e_layout()
        if any(alive for _, _, alive in status(leftover)):
            log(f"also stopping an e2e session's cluster left in {leftover.root}")
            down(leftover)
        if not args.no_merge and target.exists():
            _merge(target, None)
        log("control plane stopped")
        return 0
    running = current(layout)
    for name, pid, alive in status(layout):
        print(f"{name:26} pid {pid or '-':>7}  {'running' if alive else 'stopped'}")
    if node.NodeLayout(layout).state.exists():
        for name, pid, alive in node.status(layout):
            print(f"node {name:21} pid {pid or '-':>7}  {'running' if alive else 'stopped'}")
    print(f"api server: {running.server + ' (ready)' if running else 'not answering'}")
    print(f"kubeconfig: {layout.kubeconfig}")
    return 0 if running else 1


if __name__ == "__main__":
    sys.exit(main())
