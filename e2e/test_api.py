"""The CRDs in a real kube-apiserver: they install, the examples apply, bad objects are refused
with the OpenAPI/CEL message, status and spec are separate, kubectl shows the columns, and the
controller manager's namespace deletion and garbage collection work on our objects.

Every manifest the API server refuses here is also refused offline by `wayang validate`, so the
two never disagree on what a valid manifest is.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.documents import DELETE, mutated

from e2e.conftest import ROOT, Kube
from wayang_operator.manifests.loader import load_bytes
from wayang_operator.manifests.validate import Outcome, results_for

EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))


def example(name: str) -> dict[str, Any]:
    (path,) = [p for p in EXAMPLES if p.stem == name]
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


def offline_outcome(document: dict[str, Any]) -> Outcome:
    (loaded,) = load_bytes(yaml.safe_dump(document).encode(), "test.yaml")
    (result,) = results_for(loaded)
    return result.outcome


def test_crds_are_established(kube: Kube) -> None:
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        name = yaml.safe_load(path.read_text())["metadata"]["name"]
        conditions = {c["type"]: c["status"] for c in kube.get("crd", name)["status"]["conditions"]}
        assert conditions["Established"] == "True", name
        assert conditions["NamesAccepted"] == "True", name


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.stem)
def test_every_example_applies(kube: Kube, namespace: str, path: Path) -> None:
    result = kube.run("apply", "-f", str(path), namespace=namespace)
    try:
        assert (
            "created" in result.stdout
            or "configured" in result.stdout
            or "unchanged" in result.stdout
        )
    finally:
        # cluster-scoped examples (the policy, the RBAC roles) outlive the namespace: a policy
        # left behind would govern every later test's tenant namespaces too
        kube.run("delete", "-f", str(path), "--ignore-not-found", namespace=namespace, check=False)


def _container_plugin() -> dict[str, Any]:
    return example("text-summarizer-container")


REFUSED = [
    (
        "container-digest-blake3",
        "spec.implementation.digest",
        "blake3:" + "ab" * 32,
        "pinned by an OCI image digest",
    ),
    (
        "container-coordinate-with-digest",
        "spec.implementation.coordinate",
        "registry.example.com/community/text-summarizer@sha256:" + "ab" * 32,
        "belongs in implementation.digest",
    ),
    (
        "missing-digest",
        "spec.implementation.digest",
        None,
        "spec.implementation.digest: Required value",
    ),
    ("missing-error-port", "spec.outputs.error", None, "spec.outputs.error: Required value"),
    ("bad-semver", "spec.version", "1.0", "must be a semantic version"),
    ("leading-zero-semver", "spec.version", "01.2.3", "must be a semantic version"),
    ("bad-range", "spec.wayangVersion", "latest", "must be a semver range"),
    ("bad-plugin-id", "spec.id", "Community/Summarizer", "must be NAMESPACE/NAME"),
    ("wrong-error-schema", "spec.outputs.error.schema", "/schemas/Other.json", "supported values"),
    ("bad-sandbox", "spec.sandboxLevel", "paranoid", "supported values"),
]


@pytest.mark.parametrize(("case", "path", "value", "message"), REFUSED, ids=[c[0] for c in REFUSED])
def test_invalid_plugins_are_refused_with_the_schema_message(
    kube: Kube, namespace: str, case: str, path: str, value: Any, message: str
) -> None:
    document = mutated(_container_plugin(), path, DELETE if value is None else value)
    result = kube.apply(document, namespace=namespace, check=False)
    assert result.returncode != 0, f"{case} was accepted"
    assert message in result.stderr, result.stderr
    assert offline_outcome(document) is Outcome.INVALID, "wayang validate must refuse it too"


def test_approval_spec_is_immutable(kube: Kube, namespace: str) -> None:
    approval = example("approve-data-processor")
    kube.apply(approval, namespace=namespace)
    for change in ({"decision": "Reject"}, {"digest": "sha256:" + "00" * 32}, {"reason": "edited"}):
        edited = copy.deepcopy(approval)
        edited["spec"].update(change)
        result = kube.apply(edited, namespace=namespace, check=False)
        assert result.returncode != 0
        assert "spec is immutable" in result.stderr
    name = approval["metadata"]["name"]
    assert kube.get("pluginapproval", name, namespace)["spec"]["decision"] == "Approve"
    kube.run("delete", "pluginapproval", name, namespace=namespace)


def test_status_and_spec_are_separate(kube: Kube, namespace: str) -> None:
    kube.apply(_container_plugin(), namespace=namespace)
    kube.run(
        "patch",
        "plugin",
        "text-summarizer",
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"phase":"Ready"},"spec":{"version":"9.9.9"}}',
        namespace=namespace,
    )
    plugin = kube.get("plugin", "text-summarizer", namespace)
    assert (plugin["spec"]["version"], plugin["status"]["phase"]) == ("0.4.1", "Ready")
    kube.run(
        "patch",
        "plugin",
        "text-summarizer",
        "--type=merge",
        "-p",
        '{"spec":{"version":"0.4.2"},"status":{"phase":"Invalid"}}',
        namespace=namespace,
    )
    plugin = kube.get("plugin", "text-summarizer", namespace)
    assert (plugin["spec"]["version"], plugin["status"]["phase"]) == ("0.4.2", "Ready")
    assert plugin["metadata"]["generation"] == 2, "a spec change bumps the generation"


def test_defaults_are_applied_by_the_api_server(kube: Kube, namespace: str) -> None:
    kube.apply(example("pii-redactor-wasm"), namespace=namespace)
    spec = kube.get("plugin", "pii-redactor", namespace)["spec"]
    assert spec["category"] == "node"
    assert spec["resourceProfile"]["timeout"] == 30000
    assert spec["inputs"][0]["required"] is True


def test_kubectl_get_wayang_shows_the_printer_columns(kube: Kube, namespace: str) -> None:
    for name in ("text-summarizer-container", "approve-data-processor", "data-processor-maven"):
        kube.apply(example(name), namespace=namespace)
    out = kube.run("get", "wayang", namespace=namespace).stdout
    header = next(
        line for line in out.splitlines() if line.startswith("NAME") and "SANDBOX" in line
    )
    assert header.split() == ["NAME", "VERSION", "SANDBOX", "PHASE", "APPROVED", "READY", "AGE"]
    assert "plugin.wayang.io/text-summarizer" in out
    assert "pluginapproval.wayang.io/data-processor-1.2.0-approve" in out
    wide = kube.run("get", "plugins", "-o", "wide", namespace=namespace).stdout
    assert "PLUGIN-ID" in wide
    assert "community/text-summarizer" in wide
    assert kube.run("get", "wpl", namespace=namespace).stdout.count("\n") == 3


def test_deleting_a_namespace_completes(kube: Kube) -> None:
    kube.run("create", "namespace", "e2e-ns-deletion")
    kube.apply(_container_plugin(), namespace="e2e-ns-deletion")
    kube.apply(example("approve-data-processor"), namespace="e2e-ns-deletion")
    kube.run("delete", "namespace", "e2e-ns-deletion", "--wait=false")
    kube.wait_gone("namespace", "e2e-ns-deletion")


def test_owned_objects_are_garbage_collected(kube: Kube, namespace: str) -> None:
    kube.apply(_container_plugin(), namespace=namespace)
    plugin = kube.get("plugin", "text-summarizer", namespace)
    owner = {
        "apiVersion": "wayang.io/v1alpha1",
        "kind": "Plugin",
        "name": "text-summarizer",
        "uid": plugin["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "text-summarizer-config", "ownerReferences": [owner]},
            "data": {"k": "v"},
        },
        namespace=namespace,
    )
    kube.run("delete", "plugin", "text-summarizer", namespace=namespace)
    kube.wait_gone("configmap", "text-summarizer-config", namespace)


def test_publisher_rights_stop_at_the_tenant_namespace(kube: Kube, namespace: str) -> None:
    plugin = _container_plugin()
    created = kube.apply(plugin, user="publisher-1", namespace="team-a", check=False)
    assert created.returncode == 0, created.stderr
    elsewhere = kube.apply(plugin, user="publisher-1", namespace=namespace, check=False)
    assert elsewhere.returncode != 0
    assert "forbidden" in elsewhere.stderr
    approval = kube.apply(
        example("approve-data-processor"), user="publisher-1", namespace="team-a", check=False
    )
    assert approval.returncode != 0, "a publisher cannot approve"
    kube.run("delete", "plugin", "text-summarizer", namespace="team-a")


@pytest.mark.parametrize("approver", ["approver-1", "approver-2"])
def test_approvers_may_approve_in_any_namespace(kube: Kube, namespace: str, approver: str) -> None:
    result = kube.apply(
        example("approve-data-processor"), user=approver, namespace=namespace, check=False
    )
    assert result.returncode == 0, result.stderr
    denied = kube.apply(_container_plugin(), user=approver, namespace=namespace, check=False)
    assert denied.returncode != 0, "approvers do not publish"
