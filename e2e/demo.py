"""`make demo`: the whole story on a fresh local cluster, in one command.

1. a local control plane and node (runc and gVisor), built from upstream sources on first use
   and started from a clean slate every time (a second demo must not meet the first one's
   plugins), merged into your kubeconfig as context `wayang-local`;
2. the images (the operator's own, the echo sample) imported into the node, trivy's offline
   database, the plugin archives;
3. the guides in docs/ played as their people, in the order a real installation happens
   (e2e/docs.py's STORY): the admin `helm install`s the chart, publisher-1 validates, signs and
   publishes, approver-1 explains and approves, `kubectl wayang get` shows the plugin Ready, an
   execute call runs it in its sandbox, a vulnerable version is blocked with its finding named,
   the audit log verifies; every command is shown with its verdict.

The release is left installed (the guides' final uninstall is skipped) so you can look around;
`make cluster-down` stops everything. Exit 0 only if every command did what its page says.

The state it leaves (each Plugin's phase) is written to `.cluster/demo/left.json`, and `--check`
(`make demo-check`) waits until the cluster shows that state again: CI runs it after `make e2e`,
which borrows the host's one node and must give the demo its cluster back as it was.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from e2e import docs
from e2e.localcluster import __main__ as localcluster
from e2e.localcluster import cluster as local
from e2e.localcluster import node as localnode

ROOT = Path(__file__).resolve().parents[1]
LEFT_OUT = ("admin.md", "Uninstall")
"""The guides' last step, skipped so the demo leaves a working installation behind."""
SYSTEM = "wayang-system"
"""Where the guides install the chart."""
CHECK_TIMEOUT = 300.0
"""How long `--check` waits for the node, the operator and the plugins to be back."""


def say(message: str) -> None:
    sys.stderr.write(f"{message}\n")
    sys.stderr.flush()


def demo_steps() -> list[docs.Step]:
    page, section = LEFT_OUT
    steps = []
    for step in docs.STORY:
        if step.page == page and section in step.sections:
            kept = tuple(s for s in step.sections if s != section)
            if kept:
                steps.append(docs.Step(step.page, step.persona, kept))
            continue
        steps.append(step)
    return steps


def demo_folder(cluster: local.Cluster) -> Path:
    return cluster.layout.root / "demo"


def kubectl_json(cluster: local.Cluster, *args: str) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(cluster.run_kubectl(*args, "-o", "json"))
    return answer


def left_state(cluster: local.Cluster) -> dict[str, str]:
    """Each Plugin's phase, by `namespace/name`."""
    plugins = kubectl_json(cluster, "get", "plugins", "--all-namespaces")["items"]
    return {
        f"{p['metadata']['namespace']}/{p['metadata']['name']}": (p.get("status") or {}).get(
            "phase", ""
        )
        for p in plugins
    }


DIAGNOSIS = (
    ("the plugins", ("get", "plugins", "--all-namespaces", "-o", "wide")),
    (
        "each plugin's gates",
        (
            "get", "plugins", "--all-namespaces", "-o",
            "jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name} {.status.phase}"
            "{range .status.conditions[*]}{'\\n  '}{.type}={.status} {.reason}: {.message}{end}"
            "{'\\n'}{end}",
        ),
    ),
    ("the plugins' pods", ("get", "pods", "-A", "-l", "wayang.io/plugin", "-o", "wide")),
    ("the last events", ("get", "events", "--all-namespaces", "--sort-by=.lastTimestamp")),
    ("the operator's log", ("logs", "-n", SYSTEM, "-l", "app.kubernetes.io/name=wayang-operator",
                            "--tail=3000", "--prefix", "--all-containers")),
)  # fmt: skip
"""What `make demo` prints when a step fails: enough to tell a wrong page from a stuck plugin
when the run was on a machine nobody can log into (CI)."""


NOISE = ('"urllib3.connectionpool"', '"aiohttp.access"')
"""Log lines the diagnosis leaves out: every Lease renewal and probe of the operator."""


def diagnose(cluster: local.Cluster) -> None:
    for title, args in DIAGNOSIS:
        say(f"\n--- {title}: kubectl {' '.join(args[:3])} ...")
        try:
            output = cluster.run_kubectl(*args)
        except RuntimeError as error:
            output = str(error)
        lines = [line for line in output.splitlines() if not any(n in line for n in NOISE)]
        say("\n".join(lines[-80:]))


def check() -> int:
    """Wait until the demo's cluster is as the demo left it: its node Ready, the chart's operator
    Ready, every Plugin in the phase it had, and the audit log verifying."""
    cluster = local.current()
    if cluster is None:
        say("no demo cluster answers: run `make demo`")
        return 1
    try:
        expected = json.loads((demo_folder(cluster) / "left.json").read_text())
    except (OSError, ValueError):
        say(
            f"{demo_folder(cluster)}/left.json is missing: the demo did not finish; run `make demo`"
        )
        return 1
    deadline = time.monotonic() + CHECK_TIMEOUT
    missing: list[str] = []
    while time.monotonic() < deadline:
        missing = []
        if localnode.current(cluster.layout) is None:
            missing.append("the node's processes are not running")
        nodes = kubectl_json(cluster, "get", "nodes")["items"]
        if not any(
            c["type"] == "Ready" and c["status"] == "True"
            for n in nodes
            for c in n.get("status", {}).get("conditions", [])
        ):
            missing.append("no Ready node")
        deployment = kubectl_json(cluster, "get", "deployment", "wayang-operator", "-n", SYSTEM)
        wanted = deployment["spec"].get("replicas", 1)
        ready = deployment.get("status", {}).get("readyReplicas", 0)
        if ready != wanted:
            missing.append(f"the operator has {ready} of {wanted} replicas ready")
        now = left_state(cluster)
        missing += [
            f"plugin {key} is {now.get(key) or 'gone'}, the demo left it {phase}"
            for key, phase in expected.items()
            if now.get(key) != phase
        ]
        if not missing:
            break
        time.sleep(2)
    if missing:
        say("the demo's cluster is not as the demo left it:\n  " + "\n  ".join(missing))
        return 1
    verify = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "kubectl-wayang"), "audit", "verify", "-n", SYSTEM,
         f"--kubeconfig={cluster.layout.kubeconfig}", f"--context={local.CLUSTER_NAME}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if verify.returncode != 0:
        say(f"the audit log does not verify:\n{verify.stdout}{verify.stderr}")
        return 1
    phases = ", ".join(f"{key} {phase}" for key, phase in sorted(expected.items()))
    say(f"the demo's cluster is as the demo left it: node and operator Ready; {phases}")
    say(verify.stdout.strip().splitlines()[-1] if verify.stdout.strip() else "audit verified")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.demo")
    parser.add_argument(
        "--check", action="store_true", help="check that the demo's cluster is as it left it"
    )
    if parser.parse_args(argv).check:
        return check()
    started = time.monotonic()
    say("==> [1/3] a fresh local cluster with a node (first run: builds from source, ~20 min)")
    localcluster.main(["down"])
    if localcluster.main(["up", "--node"]) != 0:
        return 1
    cluster = local.current()
    assert cluster is not None
    node = localnode.current(cluster.layout)
    assert node is not None
    contexts = {docs.ADMIN: local.CLUSTER_NAME, **{u.user: u.user for u in local.USERS}}

    say("==> [2/3] images, trivy's offline database, plugin archives")
    folder = demo_folder(cluster)
    shutil.rmtree(folder, ignore_errors=True)  # a previous demo's images and working folder
    environment = docs.prepare_environment(
        folder,
        kubeconfig=cluster.layout.kubeconfig,
        contexts=contexts,
        kubectl=Path(cluster.kubectl),
        node=node,
    )

    # The story starts where the e2e tier's does: CRDs applied by hand before the chart (the
    # admin guide shows how a release adopts them), so both play the same pages.
    subprocess.run(
        [str(cluster.kubectl), f"--kubeconfig={cluster.layout.kubeconfig}", "apply",
         "--server-side", "--force-conflicts", "-f", str(ROOT / "crds")],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip

    say("==> [3/3] the guides, played by their people (docs/)")
    try:
        results = docs.run_pages(
            demo_steps(), environment, progress=lambda event: say(docs.describe(event))
        )
    except docs.DocsError as error:
        say(f"\nFAILED: {error}")
        diagnose(cluster)
        return 1
    (folder / "left.json").write_text(json.dumps(left_state(cluster), indent=2))
    say(
        f"\nThe story ran: {len(results)} commands from docs/, all as documented, in "
        f"{time.monotonic() - started:.0f} s.\n"
        "The operator is still installed (namespace wayang-system) and wayang-local is your\n"
        "current kubectl context (with .venv/bin on PATH for the plugin). Look around:\n"
        "  kubectl get wayang -A\n"
        "  kubectl wayang get -A\n"
        "  kubectl wayang explain echo -n team-a\n"
        "  kubectl wayang audit verify -n wayang-system\n"
        "Stop everything with: make cluster-down"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
