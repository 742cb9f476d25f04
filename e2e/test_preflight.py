"""The suite's own preflight on a cluster it did not make (`--kubeconfig`): it names what would
make tests fail in ways that look like product bugs (an installed operator's webhooks, a
PluginPolicy that governs every namespace) and removes only its own leftovers.

Run here against the session's cluster, with the foreign objects made for the test and removed
after it.
"""

from __future__ import annotations

from pathlib import Path

from e2e.conftest import WEBHOOK_CONFIGURATION, Kube, preflight, refusal


def webhook_configuration(name: str, hook: str) -> dict[str, object]:
    """A validating webhook for wayang.io Plugins that nothing serves; failurePolicy Ignore, so
    its presence breaks nothing while it exists."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": hook,
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Ignore",
                "clientConfig": {"url": "https://127.0.0.1:1/never"},
                "rules": [
                    {
                        "apiGroups": ["wayang.io"],
                        "apiVersions": ["v1alpha1"],
                        "operations": ["CREATE"],
                        "resources": ["plugins"],
                    }
                ],
            }
        ],
    }


def test_a_clean_cluster_passes_and_the_suites_leftovers_are_removed(kube: Kube) -> None:
    kube.apply(webhook_configuration(WEBHOOK_CONFIGURATION, "leftover.wayang.io"))
    assert preflight(kube) == []
    gone = kube.run("get", "validatingwebhookconfiguration", WEBHOOK_CONFIGURATION, check=False)
    assert gone.returncode != 0
    assert "NotFound" in gone.stderr


def test_an_installed_operator_and_a_foreign_policy_are_named(kube: Kube) -> None:
    policy = {
        "apiVersion": "wayang.io/v1alpha1",
        "kind": "PluginPolicy",
        "metadata": {"name": "e2e-foreign-default"},
        "spec": {"signing": {"required": True}},
    }
    try:
        kube.apply(webhook_configuration("someones-operator", "check-plugin.wayang.io"))
        kube.apply(policy)
        problems = preflight(kube)
        assert len(problems) == 2, problems
        assert "validatingwebhookconfiguration/someones-operator" in problems[0]
        assert "check-plugin.wayang.io" in problems[0]
        assert "pluginpolicy/e2e-foreign-default would govern the test namespaces" in problems[1]
        message = refusal(Path("/tmp/their.kubeconfig"), problems)
        assert "will not run on the cluster of /tmp/their.kubeconfig" in message
        assert "helm uninstall" in message
        assert "E2E_ARGS=--kind" in message
    finally:
        kube.run("delete", "validatingwebhookconfiguration", "someones-operator", check=False)
        kube.run("delete", "pluginpolicy", "e2e-foreign-default", check=False)
    assert preflight(kube) == []
