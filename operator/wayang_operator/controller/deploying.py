"""What the leader does to a plugin's workload: gather the facts for the WorkloadAvailable gate,
then carry out its plan (server-side apply of the rendered objects, or scaling to zero), and keep
each namespace's plugin index, the ConfigMap the Wayang engine reads for discovery.

Every action is idempotent: the Deployment carries a hash of the last render, so an unchanged
plugin costs no write, and a Deployment edited or deleted by hand is put back by the next event.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass

from ..api.descriptor import PluginDescriptor
from ..core.approval import ApprovalRecord, newest_approval
from ..core.artifacts import NO_RUNTIMES, Runtimes
from ..core.availability import RENDERED_ANNOTATION, DeploymentRecord, PodRecord
from ..core.breaker import Breaker
from ..core.policy import NamedPolicy
from ..core.running import Plan, WorkloadFacts
from ..core.workload import (
    INDEX_NAME,
    NO_TELEMETRY,
    Active,
    NotRunnable,
    Owner,
    Telemetry,
    endpoint,
    plugin_index,
    recorded,
    render,
)
from ..kube import ClusterError, KubeApi
from .logs import about

logger = logging.getLogger("wayang.workloads")

FINALIZER = "wayang.io/unload"
"""Held by every Plugin while the operator runs workloads: its deletion waits until the final
audit entry is written and the plugin has left the index (its objects are then collected)."""


@dataclass(frozen=True)
class Options:
    check_interval: float
    """Seconds between observations of a workload that is not steady."""
    grace: float
    """Seconds a running container may stay unready before that counts as a failure."""
    telemetry: Telemetry = NO_TELEMETRY
    """What the platform collects from every plugin pod (metrics scrapers, span collector)."""
    runtimes: Runtimes = NO_RUNTIMES
    """The runtime host images of the hosted types, and where their artifacts are fetched."""


_damaged: set[tuple[str, str]] = set()
"""Plugins one of whose objects was deleted: the next reconcile applies everything again."""


def mark_damaged(namespace: str, plugin: str) -> None:
    _damaged.add((namespace, plugin))


_refused: dict[tuple[str, str], tuple[str, str, float]] = {}
"""Per plugin, the render the API server last refused (its hash), what it said and when: that
render is not sent again for REFUSAL_RETRY seconds (a status, not a silent retry loop); a
changed render is sent at once."""
REFUSAL_RETRY = 300.0
"""A refusal may pass (a quota raised, an admission policy fixed): try the same render again."""


def forget_refusal(namespace: str, plugin: str) -> None:
    _refused.pop((namespace, plugin), None)


def gather(
    owner: Owner,
    spec: PluginDescriptor,
    policies: list[NamedPolicy],
    *,
    deployment: DeploymentRecord | None,
    pods: list[PodRecord],
    breaker: Breaker,
    approvals: list[ApprovalRecord],
    options: Options,
    missing_secret: str | None = None,
) -> WorkloadFacts:
    return WorkloadFacts(
        deployment=deployment,
        pods=pods,
        breaker=breaker,
        policies=policies,
        endpoint=endpoint(owner.name, owner.namespace),
        approved_since=newest_approval(approvals, spec.implementation.digest),
        check_interval=options.check_interval,
        grace=options.grace,
        missing_secret=missing_secret,
        refused=refusal(owner, spec, policies, options.runtimes),
        runtimes=options.runtimes,
        pull_secret=owner.pull_secret,
        known_good=recorded(deployment.known_good) if deployment else None,
    )


def _render_hash(
    owner: Owner, spec: PluginDescriptor, policies: list[NamedPolicy], runtimes: Runtimes
) -> str:
    annotations = render(owner, spec, policies, runtimes=runtimes)[2]["metadata"]["annotations"]
    return str(annotations[RENDERED_ANNOTATION])


def refusal(
    owner: Owner, spec: PluginDescriptor, policies: list[NamedPolicy], runtimes: Runtimes
) -> str | None:
    """What the API server said about this exact render, if it refused it."""
    refused = _refused.get((owner.namespace, owner.name))
    if refused is None:
        return None
    try:
        current = _render_hash(owner, spec, policies, runtimes)
    except NotRunnable:
        return None
    return refused[1] if current == refused[0] else None


def _retry_due(refused: tuple[str, str, float]) -> bool:
    return time.monotonic() - refused[2] >= REFUSAL_RETRY


_MISSING_SECRET = re.compile(r'secret "(?P<name>[^"]+)" not found')


async def missing_secret(
    api: KubeApi, namespace: str, pods: list[PodRecord], mounts_secrets: bool
) -> str | None:
    """A Secret the plugin's pods wait for: the kubelet says so only in the pod's events
    (FailedMount), read for pods that are still being created."""
    if not mounts_secrets:
        return None
    waiting = [
        pod.name
        for pod in pods
        if not pod.deleting
        and (not pod.containers or any(c.waiting == "ContainerCreating" for c in pod.containers))
    ]
    for name in waiting[:3]:
        for message in await api.pod_event_messages(namespace, name, "FailedMount"):
            found = _MISSING_SECRET.search(message)
            if found:
                return found["name"]
    return None


async def act(
    api: KubeApi,
    owner: Owner,
    spec: PluginDescriptor | None,
    *,
    policies: list[NamedPolicy],
    plan: Plan,
    deployment: DeploymentRecord | None,
    telemetry: Telemetry = NO_TELEMETRY,
    runtimes: Runtimes = NO_RUNTIMES,
) -> str | None:
    """Bring the workload to the plan: leave it, scale it to zero, or apply the render. Returns
    the API server's refusal of the render (a status, never a silent retry), or None."""
    key = (owner.namespace, owner.name)
    if plan.replicas is None:
        return None
    if plan.replicas == 0 or spec is None:
        if deployment is not None and deployment.replicas:
            await api.scale_deployment(owner.namespace, deployment.name, 0)
            logger.info("plugin %s/%s: scaled to zero", *key, extra=about(*key))
        return None
    served = plan.serve or spec
    objects = render(
        owner,
        served,
        policies,
        replicas=plan.replicas,
        known_good=plan.known_good,
        telemetry=telemetry,
        runtimes=runtimes,
    )
    rendered = objects[2]["metadata"]["annotations"][RENDERED_ANNOTATION]
    current = (
        deployment is not None
        and deployment.rendered == rendered
        and deployment.replicas == plan.replicas
    )
    if current and key not in _damaged:
        return None
    attempt = _render_hash(owner, served, policies, runtimes)
    refused = _refused.get(key)
    if refused is not None and refused[0] == attempt and not _retry_due(refused):
        return refused[1]
    _damaged.discard(key)
    for body in objects:
        try:
            await api.apply(body)
        except ClusterError as error:
            said = f"{body['kind']} {body['metadata']['name']}: {error.message}"
            _refused[key] = (attempt, said, time.monotonic())
            logger.warning("plugin %s/%s: refused: %s", *key, said, extra=about(*key))
            return said
    _refused.pop(key, None)
    logger.info(
        "plugin %s/%s: applied %d objects (%d replica(s) of version %s, %s)%s",
        *key,
        len(objects),
        plan.replicas,
        served.version,
        served.implementation.digest,
        "" if plan.serve is None else f", the known-good in place of version {spec.version}",
        extra=about(*key),
    )
    return None


_published: dict[str, tuple[str, str]] = {}
"""Per namespace, the index document last written and its resourceVersion."""


async def publish_index(api: KubeApi, namespace: str, active: list[Active]) -> None:
    """Write the namespace's plugin index if it changed: compare-and-swap against the version
    this process last wrote (no read), reading again only after a conflict."""
    body = plugin_index(namespace, active)
    data: dict[str, str] = body["data"]
    document = data["plugins.json"]
    cached = _published.get(namespace)
    if cached is not None and cached[0] == document:
        return
    labels = body["metadata"]["labels"]
    version = cached[1] if cached else None
    fresh = cached is None
    try:
        for _ in range(5):
            if fresh:
                found = await api.read_config_map(namespace, INDEX_NAME)
                if found is not None and found[0].get("plugins.json") == document:
                    _published[namespace] = (document, found[1])
                    return
                version = found[1] if found else None
            written = await api.write_config_map(
                namespace, INDEX_NAME, data, labels=labels, resource_version=version
            )
            if written is not None:
                _published[namespace] = (document, written)
                count = len(json.loads(document))
                logger.info(
                    "plugin index %s/%s: %d plugin(s)",
                    namespace,
                    INDEX_NAME,
                    count,
                    extra={"namespace": namespace, "kind": "ConfigMap", "object": INDEX_NAME},
                )
                return
            fresh = True  # changed meanwhile (or someone else wrote it): read it again
    except Exception:
        _published.pop(namespace, None)  # e.g. deleted by hand: start from a read next time
        raise
    raise RuntimeError(f"the plugin index {namespace}/{INDEX_NAME} kept changing under us")
