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
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from e2e import docs
from e2e.localcluster import __main__ as localcluster
from e2e.localcluster import cluster as local
from e2e.localcluster import node as localnode

ROOT = Path(__file__).resolve().parents[1]
LEFT_OUT = ("admin.md", "Uninstall")
"""The guides' last step, skipped so the demo leaves a working installation behind."""


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


def main() -> int:
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
    folder = cluster.layout.root / "demo"
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
        return 1
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
