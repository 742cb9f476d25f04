"""The Helm chart, rendered by the real helm (built from its Go module): lint, the values schema,
and the agreements that keep it from drifting from the code it deploys. Whether the API server
accepts what it renders, and whether the operator works when installed by it, is the e2e tier's
(e2e/test_chart.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e.localcluster.build import ensure_built
from e2e.localcluster.node import GVISOR_OVERHEAD

from wayang_operator.api.resources import PluginPolicy
from wayang_operator.settings import OperatorSettings

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "wayang-operator"
RELEASE, NAMESPACE = "wayang-operator", "wayang-system"


@pytest.fixture(scope="module")
def helm() -> Path:
    return ensure_built(["helm"])["helm"]


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm), *args], capture_output=True, text=True, check=False)


def render(helm: Path, *values: str) -> list[dict[str, Any]]:
    """`helm template` with `--set`/`--set-json` arguments; the documents it renders."""
    result = run_helm(helm, "template", RELEASE, str(CHART), "-n", NAMESPACE, *values)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def one(documents: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        d
        for d in documents
        if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
    return found[0]


def env_of(documents: list[dict[str, Any]]) -> dict[str, str]:
    container = one(documents, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in container["env"] if "value" in e}


def test_helm_lint_is_clean(helm: Path) -> None:
    result = run_helm(helm, "lint", "--strict", str(CHART))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_crds_are_the_repositorys_own(helm: Path) -> None:
    rendered = {
        d["metadata"]["name"]: d for d in render(helm) if d["kind"] == "CustomResourceDefinition"
    }
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        source = yaml.safe_load(path.read_text())
        crd = rendered.pop(source["metadata"]["name"])
        assert crd["spec"] == source["spec"], path.name
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert rendered == {}
    kinds = {d["kind"] for d in render(helm, "--set", "crds.install=false")}
    assert "CustomResourceDefinition" not in kinds


def generated_webhooks(folder: Path) -> str:
    """What `make manifests` writes today, from a separate process: importing the admission
    handlers here would register them in kopf's default registry for the whole test session,
    where the in-process handler tests run without a webhook server."""
    out = folder / "webhooks.yaml"
    subprocess.run(
        [sys.executable, "-m", "wayang_operator.controller.webhooks", str(out)], check=True
    )
    return out.read_text()


def test_the_generated_webhooks_are_current(tmp_path: Path) -> None:
    """files/webhooks.yaml is what the handlers make today (run `make manifests` if not)."""
    assert (CHART / "files" / "webhooks.yaml").read_text() == generated_webhooks(tmp_path)


def test_the_webhooks_call_the_service_and_the_operator_fills_in_their_ca(helm: Path) -> None:
    documents = render(helm)
    generated = yaml.safe_load((CHART / "files" / "webhooks.yaml").read_text())
    for kind in ("Mutating", "Validating"):
        configuration = one(documents, f"{kind}WebhookConfiguration", RELEASE)
        assert "annotations" not in configuration["metadata"]
        expected = generated[kind.lower()]
        assert [w["name"] for w in configuration["webhooks"]] == [w["name"] for w in expected]
        for webhook, source in zip(configuration["webhooks"], expected, strict=True):
            assert webhook["clientConfig"] == {
                "service": {
                    "name": f"{RELEASE}-webhook",
                    "namespace": NAMESPACE,
                    "port": 443,
                    "path": source["clientConfig"]["service"]["path"],
                }
            }
            assert {k: v for k, v in webhook.items() if k != "clientConfig"} == {
                k: v for k, v in source.items() if k != "clientConfig"
            }
    env = env_of(documents)
    assert env["WAYANG_WEBHOOK_CA_CONFIGURATION"] == RELEASE
    assert env["WAYANG_WEBHOOK_CERT_SECRET"] == f"{RELEASE}-webhook-tls"
    assert env["WAYANG_WEBHOOK_HOST"] == f"{RELEASE}-webhook.{NAMESPACE}.svc"
    assert env["WAYANG_WEBHOOK_CONFIGURATION"] == ""  # kopf does not manage them


def test_with_cert_manager_a_certificate_is_mounted_and_the_ca_injected(helm: Path) -> None:
    documents = render(helm, "--set", "webhook.certificates=cert-manager")
    certificate = one(documents, "Certificate")
    assert certificate["spec"]["dnsNames"][0] == f"{RELEASE}-webhook.{NAMESPACE}.svc"
    assert certificate["spec"]["issuerRef"] == {"kind": "Issuer", "name": f"{RELEASE}-selfsigned"}
    one(documents, "Issuer")
    for kind in ("Mutating", "Validating"):
        annotations = one(documents, f"{kind}WebhookConfiguration")["metadata"]["annotations"]
        assert annotations["cert-manager.io/inject-ca-from"] == f"{NAMESPACE}/{RELEASE}"
    env = env_of(documents)
    assert "WAYANG_WEBHOOK_CA_CONFIGURATION" not in env
    assert "WAYANG_WEBHOOK_CERT_SECRET" not in env
    volumes = one(documents, "Deployment")["spec"]["template"]["spec"]["volumes"]
    cert = next(v for v in volumes if v["name"] == "webhook-cert")
    assert cert["secret"]["secretName"] == certificate["spec"]["secretName"]
    rbac = one(documents, "ClusterRole", RELEASE)
    assert not any("admissionregistration.k8s.io" in r["apiGroups"] for r in rbac["rules"])
    issuer = render(
        helm,
        "--set", "webhook.certificates=cert-manager",
        "--set-json", 'webhook.certManager.issuerRef={"kind":"ClusterIssuer","name":"ca"}',
    )  # fmt: skip
    assert one(issuer, "Certificate")["spec"]["issuerRef"] == {
        "kind": "ClusterIssuer",
        "name": "ca",
    }
    assert not [d for d in issuer if d["kind"] == "Issuer"]


def test_every_setting_the_chart_passes_is_one_the_operator_reads(
    helm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A renamed setting would otherwise be silently ignored (pydantic-settings ignores unknown
    variables): each WAYANG_ variable must name a field, and together they must parse."""
    env = env_of(render(helm, "--set-json", 'operator.namespaces=["team-a","team-b"]'))
    fields = {f"WAYANG_{name.upper()}" for name in OperatorSettings.model_fields}
    ours = {k: v for k, v in env.items() if k.startswith("WAYANG_")}
    assert set(ours) - fields == set()
    for name, value in ours.items():
        monkeypatch.setenv(name, value)
    settings = OperatorSettings()  # parsed from the environment, as in the pod
    assert settings.namespaces == ["team-a", "team-b"]
    assert settings.standalone is False
    assert settings.lease_namespace == settings.audit_namespace == NAMESPACE
    assert settings.webhook_configuration == ""


def test_namespaced_operators_only_see_their_namespaces_admission(helm: Path) -> None:
    documents = render(helm, "--set-json", 'operator.namespaces=["team-a"]')
    for webhook in one(documents, "ValidatingWebhookConfiguration")["webhooks"]:
        assert webhook["namespaceSelector"]["matchExpressions"] == [
            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a"]}
        ]


def test_rbac_is_least_privilege(helm: Path) -> None:
    documents = render(helm)
    for role in (d for d in documents if d["kind"] in {"ClusterRole", "Role"}):
        for rule in role.get("rules") or []:
            assert "*" not in rule["verbs"] + rule["resources"], role["metadata"]["name"]
    operator = one(documents, "ClusterRole", RELEASE)
    verbs = {v for rule in operator["rules"] for v in rule["verbs"]}
    assert "delete" not in verbs  # unload scales to zero; owner references do the rest
    secrets = next(r for r in operator["rules"] if r["resources"] == ["secrets"])
    assert secrets["verbs"] == ["get"]
    publisher = one(documents, "ClusterRole", f"{RELEASE}-publisher")
    approvals = [r for r in publisher["rules"] if "pluginapprovals" in r["resources"]]
    assert approvals == [
        {
            "apiGroups": ["wayang.io"],
            "resources": ["pluginapprovals", "scanreports"],
            "verbs": ["get", "list", "watch"],
        }
    ]
    assert publisher["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    approver = one(documents, "ClusterRole", f"{RELEASE}-approver")
    base = one(documents, "ClusterRole", f"{RELEASE}-approver-base")
    assert "rules" not in approver  # the aggregation controller's (helm upgrade would conflict)
    selector = approver["aggregationRule"]["clusterRoleSelectors"][0]["matchLabels"]
    assert selector.items() <= base["metadata"]["labels"].items()
    assert not [d for d in documents if d["metadata"]["name"] == f"{RELEASE}-approvers"]
    bound = render(helm, "--set-json", 'rbac.approvers={"groups":["platform:approvers"]}')
    binding = one(bound, "ClusterRoleBinding", f"{RELEASE}-approvers")
    assert binding["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "platform:approvers"}
    ]
    no_workloads = one(render(helm, "--set", "operator.workloads=false"), "ClusterRole", RELEASE)
    assert not any("apps" in r["apiGroups"] for r in no_workloads["rules"])


def test_the_gvisor_runtime_class_carries_the_sandbox_overhead(helm: Path) -> None:
    assert not [d for d in render(helm) if d["kind"] == "RuntimeClass"]
    runtime = one(render(helm, "--set", "runtimeClass.create=true"), "RuntimeClass")
    assert runtime["handler"] == "runsc"
    assert runtime["overhead"]["podFixed"] == GVISOR_OVERHEAD  # what the e2e node measured


def test_the_default_policy_is_a_valid_plugin_policy(helm: Path) -> None:
    policy = one(render(helm), "PluginPolicy")
    PluginPolicy.model_validate(policy)
    assert policy["spec"]["namespaceSelector"] == {
        "matchExpressions": [{"key": "wayang.io/policy", "operator": "DoesNotExist"}]
    }


def test_the_operator_pod_is_locked_down(helm: Path) -> None:
    deployment = one(render(helm), "Deployment")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = pod["containers"][0]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["image"] == "localhost/wayang/wayang-operator:0.1.0"
    digest = "sha256:" + "ab" * 32
    pinned = one(render(helm, "--set", f"image.digest={digest}"), "Deployment")
    image = pinned["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"localhost/wayang/wayang-operator@{digest}"


@pytest.mark.parametrize(
    ("values", "path"),
    [
        (["--set", "image.tagg=1"], "/image"),
        (["--set", "operator.logFormat=xml"], "/operator/logFormat"),
        (["--set", "webhook.certificates=vault"], "/webhook/certificates"),
        (["--set", "image.digest=sha256:nothex"], "/image/digest"),
        (["--set", "replicaCount=0"], "/replicaCount"),
        (["--set-json", 'operator.namespaces=["Team A"]'], "/operator/namespaces/0"),
        (["--set", "tracing.plugins.otlpEndpoint=collector:4318"], "/tracing/plugins/otlpEndpoint"),
    ],
)
def test_bad_values_are_refused_naming_the_field(helm: Path, values: list[str], path: str) -> None:
    result = run_helm(helm, "template", RELEASE, str(CHART), *values)
    assert result.returncode != 0
    assert f"at '{path}'" in result.stderr, result.stderr


def test_the_dashboard_ships_when_asked(helm: Path) -> None:
    dashboard = one(render(helm, "--set", "metrics.dashboard.enabled=true"), "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    panels = json.loads(dashboard["data"]["wayang-operator.json"])["panels"]
    assert panels
    monitor = one(render(helm, "--set", "metrics.serviceMonitor.enabled=true"), "ServiceMonitor")
    # the per-plugin series carry a `namespace` label of their own, which must not be renamed
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "interval": "30s", "honorLabels": True}
    ]


def test_plugin_metrics_and_spans_reach_only_what_the_values_name(
    helm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scrapers and the collector travel to the operator as settings it parses (they end
    up in every plugin's NetworkPolicy, core/workload.py); the PodMonitor selects plugin pods in
    every namespace on their metrics port."""
    monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mon"}}}
    documents = render(
        helm,
        "--set-json", f"metrics.plugins.scrapedFrom=[{json.dumps(monitoring)}]",
        "--set", "metrics.plugins.podMonitor.enabled=true",
        "--set", "tracing.plugins.otlpEndpoint=http://otel.obs:4318",
        "--set-json", 'tracing.plugins.collector=[{"cidr":"10.96.0.0/12"}]',
    )  # fmt: skip
    for name, value in env_of(documents).items():
        if name.startswith("WAYANG_"):
            monkeypatch.setenv(name, value)
    settings = OperatorSettings()
    assert [peer.model_dump(by_alias=True, exclude_none=True) for peer in
            settings.plugin_metrics_from] == [monitoring]  # fmt: skip
    assert settings.plugin_otlp_endpoint == "http://otel.obs:4318"
    assert settings.plugin_otlp_to[0].cidr == "10.96.0.0/12"
    monitor = one(documents, "PodMonitor")
    assert monitor["spec"]["namespaceSelector"] == {"any": True}
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/managed-by"] == (
        "wayang-operator"
    )
    plain = env_of(render(helm))
    assert plain["WAYANG_PLUGIN_METRICS_FROM"] == "[]"
    assert plain["WAYANG_PLUGIN_OTLP_ENDPOINT"] == ""
    assert not [d for d in render(helm) if d["kind"] == "PodMonitor"]


def test_the_admission_policies_trust_the_operators_service_account(helm: Path) -> None:
    """What the chart renders is locked against everyone but the operator (e2e/
    test_attacks_workloads.py tries the attacks; here: what is rendered, and for whom)."""
    documents = render(helm)
    policies = [d for d in documents if d["kind"] == "ValidatingAdmissionPolicy"]
    bindings = [d for d in documents if d["kind"] == "ValidatingAdmissionPolicyBinding"]
    assert len(policies) == 5
    assert {b["spec"]["policyName"] for b in bindings} == {p["metadata"]["name"] for p in policies}
    assert all(b["spec"]["validationActions"] == ["Deny"] for b in bindings)
    assert all(p["spec"]["failurePolicy"] == "Fail" for p in policies)
    account = f"system:serviceaccount:{NAMESPACE}:{RELEASE}"
    text = json.dumps(policies)
    assert account in text, "the release's own ServiceAccount is the operator"
    other = render(helm, "--set-json", 'admissionPolicy.operatorUsers=["alice"]')
    assert '\\"alice\\"' in json.dumps(
        [d for d in other if d["kind"] == "ValidatingAdmissionPolicy"]
    )
    off = render(helm, "--set", "admissionPolicy.enabled=false")
    assert not [d for d in off if d["kind"].startswith("ValidatingAdmissionPolicy")]


def test_api_priority_gives_the_operator_a_level_and_its_leases_the_leader_election_one(
    helm: Path,
) -> None:
    documents = render(helm)
    level = one(documents, "PriorityLevelConfiguration", RELEASE)
    assert level["spec"]["limited"]["limitResponse"]["type"] == "Queue"
    operator = {"name": RELEASE, "namespace": NAMESPACE}
    schemas = {d["metadata"]["name"]: d["spec"] for d in documents if d["kind"] == "FlowSchema"}
    everything, leases = schemas[RELEASE], schemas[f"{RELEASE}-leader-election"]
    assert everything["priorityLevelConfiguration"] == {"name": RELEASE}
    assert leases["priorityLevelConfiguration"] == {"name": "leader-election"}  # built in
    # the API server tries schemas by ascending precedence: the Lease one must come first
    assert leases["matchingPrecedence"] < everything["matchingPrecedence"] < 10000
    for spec in (everything, leases):
        (rule,) = spec["rules"]
        assert rule["subjects"] == [{"kind": "ServiceAccount", "serviceAccount": operator}]
    (lease_rule,) = leases["rules"][0]["resourceRules"]
    assert lease_rule["resources"] == ["leases"]
    assert lease_rule["namespaces"] == [NAMESPACE]
    assert everything["distinguisherMethod"] == {"type": "ByNamespace"}

    off = render(helm, "--set", "apiPriority.enabled=false")
    assert not [d for d in off if d["kind"] in ("FlowSchema", "PriorityLevelConfiguration")]
    bad = run_helm(helm, "template", RELEASE, str(CHART), "--set", "apiPriority.queues=0")
    assert bad.returncode != 0
    assert "queues" in bad.stderr
