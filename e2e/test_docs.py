"""The user documentation, executed: every `$` command of docs/admin.md, publisher.md,
approver.md, policy.md and troubleshooting.md runs against the real local cluster and node, as
the person the page is for, in the order of a real installation (e2e/docs.py STORY): the admin
installs the Helm chart from the operator image, the publisher signs and publishes a plugin,
two approvers approve it, it runs under gVisor, a vulnerable build is blocked by a real trivy
scan, and so on to the uninstall. A command that fails where the page says it works, works where
the page says it is refused, or prints something else than the page shows, fails this test with
the page and line: the documentation cannot rot unnoticed.

The chart is uninstalled at the end whatever happens (other e2e modules run their own operator
processes and must not meet a second one), with what the pages created.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e import docs
from e2e.conftest import Kube
from e2e.localcluster import node as localnode
from e2e.localcluster.build import ensure_built

RELEASE = "wayang-operator"
SYSTEM = "wayang-system"
TENANTS = ("team-a", "team-b")


def _progress(event: docs.Progress) -> None:
    sys.stderr.write(docs.describe(event) + "\n")
    sys.stderr.flush()


def _kubectl_admin(kube: Kube, *args: str) -> subprocess.CompletedProcess[str]:
    return kube.run(*args, check=False)


def _clean_up(kube: Kube, *, wait: bool = False) -> None:
    """Undo what the pages did, also after a failure half-way: plugins first (the operator must
    see them go, or their finalizer holds them), then the release and the rest. Also run before
    the story (waiting for the namespaces to go), against what a crashed run left."""
    helm = ensure_built(["helm"])["helm"]
    for namespace in TENANTS:
        _kubectl_admin(kube, "delete", "plugins", "--all", "-n", namespace, "--timeout=60s")
    context = [f"--kube-context={kube.admin_context}"] if kube.admin_context else []
    subprocess.run(
        [str(helm), f"--kubeconfig={kube.kubeconfig}", *context, "uninstall", RELEASE,
         "--namespace", SYSTEM, "--wait", "--ignore-not-found"],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    for namespace in TENANTS:  # a plugin the operator could not unload keeps its finalizer
        names = _kubectl_admin(kube, "get", "plugins", "-n", namespace, "-o", "name").stdout
        for name in names.split():
            _kubectl_admin(
                kube, "patch", name, "-n", namespace, "--type=merge",
                "-p", '{"metadata":{"finalizers":null}}',
            )  # fmt: skip
    for kind in ("pluginapprovals", "scanreports"):
        _kubectl_admin(kube, "delete", kind, "--all", "-n", "team-a", "--wait=false")
    _kubectl_admin(kube, "delete", "pluginpolicy", "team-a", "--ignore-not-found")
    _kubectl_admin(kube, "label", "namespace", "team-a", "wayang.io/policy-")
    _kubectl_admin(kube, "delete", "rolebinding", "wayang-publishers", "-n", "team-a",
                   "--ignore-not-found")  # fmt: skip
    for namespace in ("team-b", SYSTEM):
        _kubectl_admin(
            kube, "delete", "namespace", namespace, f"--wait={str(wait).lower()}",
            "--ignore-not-found", "--timeout=180s",
        )  # fmt: skip


@pytest.fixture(scope="module")
def environment(
    kube: Kube, node: localnode.Node, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[docs.Environment]:
    folder = tmp_path_factory.mktemp("docs")
    # the node is only ever the local cluster's, whose admin has a context of its own
    assert kube.admin_context, "the pages run the admin's commands in a named context"
    contexts = {**kube.user_contexts, docs.ADMIN: kube.admin_context}
    prepared = docs.prepare_environment(
        folder, kubeconfig=kube.kubeconfig, contexts=contexts, kubectl=Path(kube.kubectl), node=node
    )
    _clean_up(kube, wait=True)
    try:
        yield prepared
    finally:
        _clean_up(kube)


def test_the_documentation_works_as_written(environment: docs.Environment) -> None:
    """Runs the whole story and stops at the first command that does not do what its page says:
    later commands depend on earlier ones (a failed install would leave every later `kubectl
    wait` to time out, minutes each), so what follows a failure tells nothing."""
    try:
        results = docs.run_pages(docs.STORY, environment, progress=_progress)
    except docs.DocsError as error:
        pytest.fail(str(error), pytrace=False)
    ran = {result.command.page for result in results}
    assert ran == set(docs.story_pages()), ran
    assert all(result.problem is None for result in results)
