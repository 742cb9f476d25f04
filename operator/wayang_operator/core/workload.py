"""What an approved plugin runs as: the Kubernetes objects, rendered from its descriptor and the
policies that govern it, with no API access (so every sandbox level, capability set and resource
profile is tested as data).

One plugin = a ServiceAccount that mounts no token, a ConfigMap with its descriptor and
configuration, a Deployment, a Service and a NetworkPolicy, all owned by the Plugin (deleting it
collects them). The image is always `repository@digest`: the bytes that were verified, scanned
and approved. The sandbox level picks the RuntimeClass (policy `runtimeClasses`; by default
trusted → the node's runc, semi-trusted and untrusted → `gvisor`) and how much network it gets:
egress only with the `network` capability and never when untrusted, ingress only on the
plugin's port. The pod runs non-root with a read-only root, no capabilities, no privilege
escalation and the RuntimeDefault seccomp profile; the resource profile becomes requests and
limits (GPUs included); the timeout is the runtime host's execution deadline. A rollout keeps the
old pod serving until the new one is ready (maxUnavailable 0).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ..api.descriptor import Capability, ImplementationType, PluginDescriptor, SandboxLevel
from .availability import DIGEST_ANNOTATION, PLUGIN_LABEL, RENDERED_ANNOTATION, VERSION_ANNOTATION
from .policy import NamedPolicy
from .references import pinned_reference

PORT = 8080
SERVICE_PORT = 80
RUN_AS = 65532
DRAIN_SECONDS = 3
"""How long a stopping pod keeps serving: endpoints are removed from Services asynchronously,
so a server that closed at once would refuse the calls still routed to it during a rollout."""
DESCRIPTOR_PATH = "/etc/wayang"
SECRETS_PATH = "/var/run/secrets/wayang"
DEFAULT_RUNTIME_CLASSES = {
    SandboxLevel.TRUSTED: "",
    SandboxLevel.SEMI_TRUSTED: "gvisor",
    SandboxLevel.UNTRUSTED: "gvisor",
}


class NotRunnable(ValueError):  # noqa: N818 - a decision, not a failure of the code
    """The plugin cannot get a workload; the message says why (it becomes a condition)."""


@dataclass(frozen=True)
class Owner:
    """The Plugin object the workload belongs to."""

    name: str
    namespace: str
    uid: str


def workload_name(plugin: str) -> str:
    """`wayang-<plugin>`, cut to stay a valid object and label value (63 characters)."""
    return f"wayang-{plugin}"[:63].rstrip("-.")


def endpoint(plugin: str, namespace: str) -> str:
    """The URL the Wayang engine calls: the plugin's Service, by its cluster DNS name."""
    return f"http://{workload_name(plugin)}.{namespace}.svc:{SERVICE_PORT}"


def runtime_class(spec: PluginDescriptor, policies: list[NamedPolicy]) -> str:
    """The RuntimeClass for the sandbox level ("" = the node's default runtime). Policies that
    name classes must agree: one policy cannot weaken another's choice of sandbox."""
    level = spec.sandbox_level
    chosen: dict[str, str] = {}
    for policy in policies:
        classes = policy.spec.runtime_classes
        if classes is not None:
            by_level = {
                SandboxLevel.TRUSTED: classes.trusted,
                SandboxLevel.SEMI_TRUSTED: classes.semi_trusted,
                SandboxLevel.UNTRUSTED: classes.untrusted,
            }
            chosen.setdefault(by_level[level], policy.name)
    if len(chosen) > 1:
        named = ", ".join(
            f"{policy!r} wants {value or 'the default runtime'!r}"
            for value, policy in chosen.items()
        )
        raise NotRunnable(f"policies disagree on the RuntimeClass for {level.value}: {named}")
    return next(iter(chosen), DEFAULT_RUNTIME_CLASSES[level])


def image_of(spec: PluginDescriptor) -> str:
    if spec.implementation.type != ImplementationType.CONTAINER:
        raise NotRunnable(
            f"implementation.type {spec.implementation.type} has no runtime yet: plugins run "
            "as container images (a Python plugin ships in an image on the Python runtime host)"
        )
    return pinned_reference(spec.implementation.coordinate, spec.implementation.digest)


MANAGED = {"app.kubernetes.io/managed-by": "wayang-operator"}
"""On every object the operator makes; its watches select by it."""


def runnable(spec: PluginDescriptor, policies: list[NamedPolicy]) -> str:
    """The RuntimeClass the plugin would run with, or NotRunnable with why it cannot run: the
    checks of `render` without rendering (the gate needs them on every evaluation)."""
    image_of(spec)
    _secrets(spec, policies)
    return runtime_class(spec, policies)


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


def _resources(spec: PluginDescriptor) -> dict[str, Any]:
    profile = spec.resource_profile
    cpu = profile.cpu if profile else "100m"
    memory = profile.memory if profile else "128Mi"
    requests: dict[str, str] = {"cpu": cpu, "memory": memory}
    limits: dict[str, str] = {"cpu": cpu, "memory": memory}
    if profile and profile.ephemeral_storage:
        requests["ephemeral-storage"] = limits["ephemeral-storage"] = profile.ephemeral_storage
    if profile and profile.gpu:
        limits["nvidia.com/gpu"] = requests["nvidia.com/gpu"] = str(profile.gpu)
    return {"requests": requests, "limits": limits}


def _secrets(spec: PluginDescriptor, policies: list[NamedPolicy]) -> list[str]:
    wanted = list(spec.required_secrets or [])
    if wanted:
        refusing = [p.name for p in policies if not p.spec.allow_secrets]
        if refusing or not policies:
            by = f"policy {refusing[0]!r}" if refusing else "the default policy"
            raise NotRunnable(
                f"requiredSecrets {', '.join(wanted)} are not mounted: {by} does not allow "
                "secrets (allowSecrets: false)"
            )
    return wanted


def render(
    owner: Owner,
    spec: PluginDescriptor,
    policies: list[NamedPolicy],
    *,
    replicas: int = 1,
) -> list[dict[str, Any]]:
    """The objects, in the order they should be applied; NotRunnable says why there are none.
    The Deployment carries a hash of them all (RENDERED_ANNOTATION): an unchanged render is not
    applied again."""
    image = image_of(spec)
    secrets = _secrets(spec, policies)
    name = workload_name(owner.name)
    timeout_ms = spec.resource_profile.timeout if spec.resource_profile else 30000
    descriptor = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    mounts = [
        {"name": "descriptor", "mountPath": DESCRIPTOR_PATH, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - the only writable path
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "descriptor", "configMap": {"name": name}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
    ]
    for secret in secrets:
        volume = f"secret-{secret}"[:63].rstrip("-.")
        volumes.append({"name": volume, "secret": {"secretName": secret}})
        mounts.append({"name": volume, "mountPath": f"{SECRETS_PATH}/{secret}", "readOnly": True})
    container = {
        "name": "plugin",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "env": [
            {"name": "WAYANG_DESCRIPTOR", "value": f"{DESCRIPTOR_PATH}/plugin.json"},
            {"name": "WAYANG_TIMEOUT_MS", "value": str(timeout_ms)},
            {"name": "PORT", "value": str(PORT)},
            {"name": "WAYANG_DRAIN_SECONDS", "value": str(DRAIN_SECONDS)},
        ],
        "resources": _resources(spec),
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
        "containers": [container],
        "terminationGracePeriodSeconds": 10,  # the runtime host stops in well under a second
        "volumes": volumes,
    }
    handler = runtime_class(spec, policies)
    if handler:
        pod["runtimeClassName"] = handler
    labels = _labels(owner, spec)
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
            "data": {"plugin.json": json.dumps(descriptor, sort_keys=True, indent=2)},
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
                "template": {
                    "metadata": {
                        "labels": labels,
                        "annotations": {
                            DIGEST_ANNOTATION: spec.implementation.digest,
                            VERSION_ANNOTATION: spec.version,
                        },
                    },
                    "spec": pod,
                },
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
        network_policy(owner, spec),
    ]
    rendered = hashlib.sha256(json.dumps(objects, sort_keys=True).encode()).hexdigest()[:20]
    objects[2]["metadata"]["annotations"] = {RENDERED_ANNOTATION: rendered}
    return objects


def network_policy(owner: Owner, spec: PluginDescriptor) -> dict[str, Any]:
    """Ingress only on the plugin's port; egress to DNS and anywhere only with the `network`
    capability, and none at all when untrusted."""
    capabilities = set(spec.capabilities or [])
    untrusted = spec.sandbox_level == SandboxLevel.UNTRUSTED
    egress: list[dict[str, Any]] = []
    if Capability.NETWORK in capabilities and not untrusted:
        egress = [{}]  # anywhere
    elif not untrusted:
        dns = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
        egress = [{"ports": dns}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(owner, spec, workload_name(owner.name)),
        "spec": {
            "podSelector": {"matchLabels": _selector(owner)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"ports": [{"protocol": "TCP", "port": PORT}]}],
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


def plugin_index(namespace: str, active: list[Active]) -> dict[str, Any]:
    """The per-namespace ConfigMap the Wayang engine reads for discovery: each active plugin's
    id, version, provided capabilities, ports and endpoint (its Service's DNS name and port)."""
    entries = [
        {
            "plugin": item.name,
            "id": item.spec.id,
            "version": item.version or item.spec.version,
            "digest": item.digest or item.spec.implementation.digest,
            "provides": sorted(item.spec.provides or []),
            "capabilities": sorted(c.value for c in item.spec.capabilities or []),
            "inputs": [port.name for port in item.spec.inputs],
            "endpoint": endpoint(item.name, namespace),
        }
        for item in sorted(active, key=lambda a: (a.spec.id, a.name))
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
