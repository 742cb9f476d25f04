"""What an approved plugin runs as: the Kubernetes objects, rendered from its descriptor and the
policies that govern it, with no API access (so every sandbox level, capability set and resource
profile is tested as data).

One plugin = a ServiceAccount that mounts no token, a ConfigMap with its descriptor and
configuration, a Deployment, a Service and a NetworkPolicy, all owned by the Plugin (deleting it
collects them). The image is always `repository@digest`: the bytes that were verified, scanned
and approved. What the pod may do is exactly what the policies grant (grants.py): the sandbox's
RuntimeClass, egress to DNS plus the granted capabilities' destinations (none when untrusted),
ingress on the plugin's port only from its namespace and the policies' callers, a writable volume
only with `filesystem`, GPUs only with `gpu`, Secrets only where allowed. The pod runs non-root
with a read-only root, no capabilities, no privilege escalation and the RuntimeDefault seccomp
profile; the resource profile becomes requests and limits; the timeout is the runtime host's
execution deadline. Every object carries the digest of the approved surface it was rendered
from (SURFACE_ANNOTATION), so an approved surface keeps serving while a grown one waits for its
approvals. A rollout keeps the old pod serving until the new one is ready (maxUnavailable 0).

The ConfigMap holds one key per descriptor in use, `plugin-<descriptor hash>.json`, and each pod
template mounts only its own as `plugin.json`: the descriptor being rolled out and the last
known-good one (KNOWN_GOOD_ANNOTATION) live side by side, so a pod of the version that keeps
serving, restarted in the middle of an upgrade, still loads its own descriptor, and a rollback
is the earlier template again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..api.descriptor import (
    CircuitBreaker,
    ErrorHandlingConfig,
    PluginDescriptor,
    ResourceProfile,
    RetryPolicy,
)
from ..api.resources import Peer, PluginPolicySpec
from . import surface
from .artifacts import (
    NO_RUNTIMES,
    PULL_SECRET_ANNOTATION,
    Runtimes,
    artifact_port,
    repository_of,
    strategy,
)
from .availability import (
    DESCRIPTOR_ANNOTATION,
    DIGEST_ANNOTATION,
    KNOWN_GOOD_ANNOTATION,
    PLUGIN_LABEL,
    RENDERED_ANNOTATION,
    SURFACE_ANNOTATION,
    TEMPLATE_ANNOTATION,
    VERSION_ANNOTATION,
)
from .grants import (
    OPENS_NETWORK,
    SECRETS_PATH,
    Grant,
    NotGranted,
    grant,
    network_peer,
    secret_allowed,
)
from .policy import DEFAULT_POLICY_NAME, NamedPolicy
from .references import pinned_reference

PORT = 8080
METRICS_PORT = 9102
"""The runtime host's /metrics on a port of its own: a scraper allowed to reach it cannot call
/execute (NetworkPolicies choose ports, not paths)."""
SERVICE_PORT = 80
RUN_AS = 65532
DRAIN_SECONDS = 3
"""How long a stopping pod keeps serving: endpoints are removed from Services asynchronously,
so a server that closed at once would refuse the calls still routed to it during a rollout."""
DESCRIPTOR_PATH = "/etc/wayang"
WRITABLE_PATHS = ("/tmp", "/data")  # noqa: S108 - the granted volume, nothing else is writable


@dataclass(frozen=True)
class Telemetry:
    """What the platform collects from every plugin pod (the operator's settings, the chart's
    pluginTelemetry values): who may scrape the runtime host's metrics port, and where it sends
    its spans (and so may reach, whatever the plugin's own grants)."""

    metrics_from: tuple[Peer, ...] = ()
    otlp_endpoint: str = ""
    """OTEL_EXPORTER_OTLP_ENDPOINT of the runtime hosts (OTLP over HTTP); empty: no spans."""
    otlp_to: tuple[Peer, ...] = ()
    """Where that endpoint is, for the NetworkPolicy's egress rule."""

    @property
    def otlp_port(self) -> int:
        return urlsplit(self.otlp_endpoint).port or 4318


NO_TELEMETRY = Telemetry()
"""Nothing collected: the metrics port closed to all but the callers, no spans."""


class NotRunnable(ValueError):  # noqa: N818 - a decision, not a failure of the code
    """The plugin cannot get a workload; the message says why (it becomes a condition)."""


@dataclass(frozen=True)
class Owner:
    """The Plugin object the workload belongs to."""

    name: str
    namespace: str
    uid: str
    pull_secret: str | None = None
    """The dockerconfigjson Secret its artifact is pulled with (PULL_SECRET_ANNOTATION)."""


def workload_name(plugin: str) -> str:
    """`wayang-<plugin>`, cut to stay a valid object and label value (63 characters)."""
    return f"wayang-{plugin}"[:63].rstrip("-.")


def endpoint(plugin: str, namespace: str) -> str:
    """The URL the Wayang engine calls: the plugin's Service, by its cluster DNS name."""
    return f"http://{workload_name(plugin)}.{namespace}.svc:{SERVICE_PORT}"


def image_of(spec: PluginDescriptor, runtimes: Runtimes = NO_RUNTIMES) -> str:
    """The image the plugin container runs: a container plugin's own, pinned by its digest; a
    hosted type's runtime host (pinned in the operator's settings), which loads the artifact
    the pod's fetcher verified."""
    implementation = spec.implementation
    how = strategy(implementation)
    if not how.hosted:
        return pinned_reference(implementation.coordinate, implementation.digest)
    host = runtimes.image(implementation.type)
    if host is None:
        raise NotRunnable(
            f"no runtime host image for {implementation.type} plugins is configured (the "
            "chart's runtimes.images, WAYANG_RUNTIME_IMAGES)"
        )
    return host


MANAGED = {"app.kubernetes.io/managed-by": "wayang-operator"}
"""On every object the operator makes; its watches select by it."""


def runnable(
    spec: PluginDescriptor,
    policies: list[NamedPolicy],
    runtimes: Runtimes = NO_RUNTIMES,
    pull_secret: str | None = None,
) -> Grant:
    """What the plugin would run with, or NotRunnable with why it cannot run: the checks of
    `render` without rendering (the gate needs them on every evaluation). A pull Secret must be
    one the policies allow, like any Secret the pod uses."""
    image_of(spec, runtimes)
    try:
        if pull_secret is not None:
            secret_allowed(
                pull_secret,
                policies or [NamedPolicy(DEFAULT_POLICY_NAME, PluginPolicySpec())],
                f" (the pull Secret, {PULL_SECRET_ANNOTATION})",
            )
        return grant(spec, policies)
    except NotGranted as refused:  # the PowersGranted gate stops it first; never rendered
        raise NotRunnable(str(refused)) from refused


def _labels(owner: Owner, spec: PluginDescriptor) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": owner.name[:63],
        **MANAGED,
        "app.kubernetes.io/part-of": "wayang-plugins",
        PLUGIN_LABEL: owner.name[:63],
        "wayang.io/sandbox": spec.sandbox_level.value,
    }


def _selector(owner: Owner) -> dict[str, str]:
    return {PLUGIN_LABEL: owner.name[:63]}


def _meta(owner: Owner, spec: PluginDescriptor, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": _labels(owner, spec),
        "ownerReferences": [
            {
                "apiVersion": "wayang.io/v1alpha1",
                "kind": "Plugin",
                "name": owner.name,
                "uid": owner.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }


def _resources(spec: PluginDescriptor, powers: Grant) -> dict[str, Any]:
    profile = spec.resource_profile
    cpu = profile.cpu if profile else "100m"
    memory = profile.memory if profile else "128Mi"
    requests: dict[str, str] = {"cpu": cpu, "memory": memory}
    limits: dict[str, str] = {"cpu": cpu, "memory": memory}
    if profile and profile.ephemeral_storage:
        requests["ephemeral-storage"] = limits["ephemeral-storage"] = profile.ephemeral_storage
    if powers.gpus:
        limits["nvidia.com/gpu"] = requests["nvidia.com/gpu"] = str(powers.gpus)
    return {"requests": requests, "limits": limits}


def descriptor_json(spec: PluginDescriptor) -> str:
    """The descriptor as the runtime host reads it."""
    descriptor = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    return json.dumps(descriptor, sort_keys=True, indent=2)


def descriptor_hash(spec: PluginDescriptor) -> str:
    """Names a descriptor: its pods, its ConfigMap key, its breaker (any change of the spec,
    configuration included, is a new one)."""
    return hashlib.sha256(descriptor_json(spec).encode()).hexdigest()[:20]


def descriptor_key(spec: PluginDescriptor) -> str:
    return f"plugin-{descriptor_hash(spec)}.json"


def recorded(raw: str | None) -> PluginDescriptor | None:
    """The known-good descriptor a Deployment records (KNOWN_GOOD_ANNOTATION); None when there
    is none or it is not a descriptor (the pipeline still checks that it may run)."""
    if not raw:
        return None
    try:
        return PluginDescriptor.model_validate(json.loads(raw), by_alias=True, by_name=False)
    except ValueError:
        return None


def _volumes(
    powers: Grant, name: str, key: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The descriptor, the granted writable volume (if any) and the allowed Secrets."""
    mounts: list[dict[str, Any]] = [
        {"name": "descriptor", "mountPath": DESCRIPTOR_PATH, "readOnly": True}
    ]
    # only the pod's own key, which the operator writes: a key planted in the ConfigMap by
    # another hand is not mounted
    only = [{"key": key, "path": "plugin.json"}]
    volumes: list[dict[str, Any]] = [
        {"name": "descriptor", "configMap": {"name": name, "items": only}}
    ]
    if powers.writable is not None:
        volumes.append({"name": "writable", "emptyDir": {"sizeLimit": powers.writable}})
        mounts += [
            {"name": "writable", "mountPath": path, "subPath": path.strip("/")}
            for path in WRITABLE_PATHS
        ]
    for index, secret in enumerate(powers.secrets):
        volume = f"secret-{index}"
        source: dict[str, Any] = {"secretName": secret.secret}
        if secret.keys:
            source["items"] = [{"key": key, "path": key} for key in secret.keys]
        volumes.append({"name": volume, "secret": source})
        mounts.append({"name": volume, "mountPath": secret.path, "readOnly": True})
    return volumes, mounts


ARTIFACT_VOLUME = "artifact"
PULL_VOLUME = "pull-secret"
PULL_PATH = "/var/run/wayang/pull"
FETCHER = ("python3", "/opt/wayang/fetch.py")
"""The runtime host image's fetcher (operator/wayang_operator/fetching/http.py, copied in)."""


def _artifact_volumes(fetcher: Any, pull_secret: str | None) -> list[dict[str, Any]]:
    if not fetcher:
        return []
    volumes: list[dict[str, Any]] = [{"name": ARTIFACT_VOLUME, "emptyDir": {}}]
    if pull_secret:
        only = [{"key": ".dockerconfigjson", "path": "config.json"}]
        volumes.append({"name": PULL_VOLUME, "secret": {"secretName": pull_secret, "items": only}})
    return volumes


def _fetcher(
    spec: PluginDescriptor,
    host: dict[str, Any],
    pull_secret: str | None,
    powers: Grant,
    artifact_ca: str,
) -> dict[str, Any] | None:
    """For a hosted type, the init container that fetches the artifact, checks it against the
    pinned digest and unpacks it into the volume the host reads, read-only, at the strategy's
    load path (a refused fetch stops the pod before any plugin code loads; its reason is the
    container's termination message). The host container gets that volume; None for a
    container plugin, whose image is the artifact (the kubelet pulls it, with the pull Secret as
    imagePullSecrets). The pull Secret is mounted into the fetcher only: the plugin's code never
    sees it; the platform's extra CA certificates (`artifact_ca`, public) are its environment."""
    implementation = spec.implementation
    how = strategy(implementation)
    if not how.hosted:
        return None
    host["volumeMounts"].append(
        {"name": ARTIFACT_VOLUME, "mountPath": how.load_path, "readOnly": True}
    )
    host["env"].append({"name": "WAYANG_PLUGIN_PATH", "value": how.load_path})
    # the grants, compiled for a host that enforces them itself
    if how.memory_env:
        host["env"].append({"name": how.memory_env, "value": host["resources"]["limits"]["memory"]})
    if how.preopen_env:
        preopen = WRITABLE_PATHS[1] if powers.writable is not None else ""
        host["env"].append({"name": how.preopen_env, "value": preopen})
    if how.network_env:
        opens = any(capability in OPENS_NETWORK for capability in spec.capabilities or ())
        host["env"].append({"name": how.network_env, "value": "1" if opens else ""})
    pull_env = [{"name": "WAYANG_PULL_CONFIG", "value": f"{PULL_PATH}/config.json"}]
    pull_mount = [{"name": PULL_VOLUME, "mountPath": PULL_PATH, "readOnly": True}]
    if not pull_secret:
        pull_env, pull_mount = [], []
    if artifact_ca:
        pull_env.append({"name": "WAYANG_ARTIFACT_CA", "value": artifact_ca})
    return {
        "name": "fetch",
        "image": host["image"],
        "imagePullPolicy": host["imagePullPolicy"],
        "command": list(FETCHER),
        "env": [
            {"name": "WAYANG_ARTIFACT_TYPE", "value": implementation.type.value},
            {"name": "WAYANG_ARTIFACT_REPOSITORY", "value": repository_of(implementation) or ""},
            {"name": "WAYANG_ARTIFACT_COORDINATE", "value": implementation.coordinate},
            {"name": "WAYANG_ARTIFACT_DIGEST", "value": implementation.digest},
            {"name": "WAYANG_ARTIFACT_DIR", "value": how.load_path},
            *pull_env,
        ],
        "resources": host["resources"],
        "securityContext": host["securityContext"],
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [
            {"name": ARTIFACT_VOLUME, "mountPath": how.load_path},
            *pull_mount,
        ],
    }


def render(
    owner: Owner,
    spec: PluginDescriptor,
    policies: list[NamedPolicy],
    *,
    replicas: int = 1,
    known_good: PluginDescriptor | None = None,
    telemetry: Telemetry = NO_TELEMETRY,
    runtimes: Runtimes = NO_RUNTIMES,
) -> list[dict[str, Any]]:
    """The objects that run `spec`, in the order they should be applied; NotRunnable says why
    there are none. `known_good` is the descriptor recorded as the last that was Available (its
    ConfigMap key kept for its pods); `telemetry` opens the metrics port to its scrapers and
    the span endpoint to the runtime host; `runtimes` are the hosts of the hosted types and where
    their artifacts are fetched from. The Deployment carries a hash of them all
    (RENDERED_ANNOTATION): an unchanged render is not applied again."""
    image = image_of(spec, runtimes)
    powers = runnable(spec, policies, runtimes, owner.pull_secret)
    name = workload_name(owner.name)
    timeout_ms = spec.resource_profile.timeout if spec.resource_profile else 30000
    descriptors = {descriptor_key(spec): descriptor_json(spec)}
    if known_good is not None:
        descriptors[descriptor_key(known_good)] = descriptor_json(known_good)
    volumes, mounts = _volumes(powers, name, descriptor_key(spec))
    container = {
        "name": "plugin",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [
            {"name": "http", "containerPort": PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        "env": [
            {"name": "WAYANG_DESCRIPTOR", "value": f"{DESCRIPTOR_PATH}/plugin.json"},
            {"name": "WAYANG_TIMEOUT_MS", "value": str(timeout_ms)},
            {"name": "PORT", "value": str(PORT)},
            {"name": "WAYANG_METRICS_PORT", "value": str(METRICS_PORT)},
            {"name": "WAYANG_DRAIN_SECONDS", "value": str(DRAIN_SECONDS)},
            {"name": "WAYANG_SECRETS_DIR", "value": SECRETS_PATH},
            *(
                [{"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": telemetry.otlp_endpoint}]
                if telemetry.otlp_endpoint
                else []
            ),
        ],
        "resources": _resources(spec, powers),
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 2},
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
    }
    fetcher = _fetcher(spec, container, owner.pull_secret, powers, runtimes.artifact_ca)
    pod: dict[str, Any] = {
        "serviceAccountName": name,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        **({"initContainers": [fetcher]} if fetcher else {}),
        **(
            {"imagePullSecrets": [{"name": owner.pull_secret}]}
            if owner.pull_secret and not fetcher
            else {}
        ),
        "containers": [container],
        "terminationGracePeriodSeconds": 10,  # the runtime host stops in well under a second
        "volumes": volumes + _artifact_volumes(fetcher, owner.pull_secret),
    }
    if powers.runtime_class:
        pod["runtimeClassName"] = powers.runtime_class
    labels = _labels(owner, spec)
    template: dict[str, Any] = {
        "metadata": {
            "labels": labels,
            "annotations": {
                DIGEST_ANNOTATION: spec.implementation.digest,
                VERSION_ANNOTATION: spec.version,
                SURFACE_ANNOTATION: surface.digest_for(spec, policies),
                # any change of the descriptor (configuration included) rolls the pods, which
                # load it at start: a new configuration reaches the plugin without a new
                # approval, old pods serving until it is ready
                DESCRIPTOR_ANNOTATION: descriptor_hash(spec),
                # the common scrape convention; the NetworkPolicy decides who can
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(METRICS_PORT),
                "prometheus.io/path": "/metrics",
            },
        },
        "spec": pod,
    }
    template["metadata"]["annotations"][TEMPLATE_ANNOTATION] = hashlib.sha256(
        json.dumps(template, sort_keys=True).encode()
    ).hexdigest()[:20]
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _meta(owner, spec, name),
            "automountServiceAccountToken": False,
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta(owner, spec, name),
            "data": descriptors,
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta(owner, spec, name),
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": _selector(owner)},
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
                },
                "revisionHistoryLimit": 3,
                "template": template,
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(owner, spec, name),
            "spec": {
                "selector": _selector(owner),
                "ports": [
                    {"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}
                ],
            },
        },
        network_policy(owner, spec, powers, telemetry, runtimes),
    ]
    record = None if known_good is None else descriptor_hash(known_good)
    hashed = json.dumps([objects, record], sort_keys=True).encode()
    rendered = hashlib.sha256(hashed).hexdigest()[:20]
    objects[2]["metadata"]["annotations"] = {
        RENDERED_ANNOTATION: rendered,
        SURFACE_ANNOTATION: surface.digest_for(spec, policies),
    }
    if known_good is not None:
        recorded = known_good.model_dump(mode="json", by_alias=True, exclude_none=True)
        objects[2]["metadata"]["annotations"][KNOWN_GOOD_ANNOTATION] = json.dumps(
            recorded, sort_keys=True, separators=(",", ":")
        )
    return objects


def network_policy(
    owner: Owner,
    spec: PluginDescriptor,
    powers: Grant,
    telemetry: Telemetry = NO_TELEMETRY,
    runtimes: Runtimes = NO_RUNTIMES,
) -> dict[str, Any]:
    """Ingress on the plugin's port from its own namespace and the policies' callers, and on the
    metrics port from the platform's scrapers; egress exactly as granted (DNS, and the granted
    capabilities' destinations; nothing untrusted), plus the platform's span collector when one
    is configured (the runtime host sends there, not the plugin's code alone), and for a hosted
    type the artifact repositories on the repository's port (the pod's fetcher reads there
    before the plugin loads; NetworkPolicies cannot tell its init container from the host, see
    docs/artifacts.md)."""
    ingress = [{"from": powers.ingress_from, "ports": [{"protocol": "TCP", "port": PORT}]}]
    if telemetry.metrics_from:
        ingress.append(
            {
                "from": [network_peer(peer) for peer in telemetry.metrics_from],
                "ports": [{"protocol": "TCP", "port": METRICS_PORT}],
            }
        )
    egress = list(powers.egress)
    if telemetry.otlp_endpoint and telemetry.otlp_to:
        egress.append(
            {
                "to": [network_peer(peer) for peer in telemetry.otlp_to],
                "ports": [{"protocol": "TCP", "port": telemetry.otlp_port}],
            }
        )
    repository = repository_of(spec.implementation)
    if strategy(spec.implementation).hosted and repository and runtimes.artifacts_to:
        egress.append(
            {
                "to": [network_peer(peer) for peer in runtimes.artifacts_to],
                "ports": [{"protocol": "TCP", "port": artifact_port(repository)}],
            }
        )
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(owner, spec, workload_name(owner.name)),
        "spec": {
            "podSelector": {"matchLabels": _selector(owner)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": ingress,
            "egress": egress,
        },
    }


INDEX_NAME = "wayang-plugin-index"


@dataclass(frozen=True)
class Active:
    """A plugin whose pods serve in the namespace, as the engine needs to find it."""

    name: str
    spec: PluginDescriptor
    version: str | None = None
    """The version serving, when it is not the spec's (an upgrade waiting for approval)."""
    digest: str | None = None


def error_handling_of(spec: PluginDescriptor) -> dict[str, Any]:
    """The plugin's errorHandling as the engine applies it: the spec's, camelCase, with the
    seed's defaults filled in for the retry policy and the circuit breaker (a plugin that
    declares none still gets 3 exponential attempts and a breaker)."""
    handling = spec.error_handling or ErrorHandlingConfig()
    effective = handling.model_copy(
        update={
            "retry_policy": handling.retry_policy or RetryPolicy(),
            "circuit_breaker": handling.circuit_breaker or CircuitBreaker(),
        }
    )
    return effective.model_dump(mode="json", by_alias=True, exclude_none=True)


def index_entry(item: Active, namespace: str) -> dict[str, Any]:
    """One plugin as the index lists it: what the engine SDK (wayang_client) needs to find and
    call it and to apply its own error handling."""
    spec = item.spec
    return {
        "plugin": item.name,
        "id": spec.id,
        "version": item.version or spec.version,
        "digest": item.digest or spec.implementation.digest,
        "category": spec.category.value,
        "provides": sorted(spec.provides or []),
        "capabilities": sorted(c.value for c in spec.capabilities or []),
        "inputs": [port.name for port in spec.inputs],
        "outputs": {"success": spec.outputs.success.name, "error": spec.outputs.error.name},
        "errorHandling": error_handling_of(spec),
        "timeout": (spec.resource_profile or ResourceProfile()).timeout,
        "endpoint": endpoint(item.name, namespace),
    }


def plugin_index(namespace: str, active: list[Active]) -> dict[str, Any]:
    """The per-namespace ConfigMap the Wayang engine reads for discovery: each active plugin's
    id, version, digest, category, provided capabilities, ports, error handling (defaults
    applied), timeout (ms) and endpoint (its Service's DNS name and port)."""
    entries = [
        index_entry(item, namespace) for item in sorted(active, key=lambda a: (a.spec.id, a.name))
    ]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": INDEX_NAME,
            "namespace": namespace,
            "labels": dict(MANAGED),
        },
        "data": {"plugins.json": json.dumps(entries, sort_keys=True, indent=2)},
    }
