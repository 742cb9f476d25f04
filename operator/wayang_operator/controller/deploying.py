"""What the leader does to a plugin's workload: gather the facts for the WorkloadAvailable gate,
then carry out its plan (server-side apply of the rendered objects, or scaling to zero), and keep
each namespace's plugin index, the ConfigMap the Wayang engine reads for discovery.

Every action is idempotent: the Deployment carries a hash of the last render, so an unchanged
plugin costs no write, and a Deployment edited or deleted by hand is put back by the next event.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from ..api.descriptor import PluginDescriptor
from ..core.approval import ApprovalRecord, newest_approval
from ..core.availability import RENDERED_ANNOTATION, DeploymentRecord, PodRecord
from ..core.breaker import Breaker
from ..core.policy import NamedPolicy
from ..core.running import Plan, WorkloadFacts
from ..core.workload import (
    INDEX_NAME,
    Active,
    NotRunnable,
    Owner,
    endpoint,
    plugin_index,
    render,
    runnable,
)
from ..kube import KubeApi
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


_damaged: set[tuple[str, str]] = set()
"""Plugins one of whose objects was deleted: the next reconcile applies everything again."""


def mark_damaged(namespace: str, plugin: str) -> None:
    _damaged.add((namespace, plugin))


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
) -> WorkloadFacts:
    render_error: str | None = None
    handler = ""
    try:
        handler = runnable(spec, policies)
    except NotRunnable as error:
        render_error = str(error)
    return WorkloadFacts(
        deployment=deployment,
        pods=pods,
        breaker=breaker,
        render_error=render_error,
        runtime_class=handler,
        endpoint=endpoint(owner.name, owner.namespace),
        approved_since=newest_approval(approvals, spec.implementation.digest),
        check_interval=options.check_interval,
        grace=options.grace,
    )


async def act(
    api: KubeApi,
    owner: Owner,
    spec: PluginDescriptor | None,
    *,
    policies: list[NamedPolicy],
    plan: Plan,
    deployment: DeploymentRecord | None,
) -> None:
    """Bring the workload to the plan: leave it, scale it to zero, or apply the render."""
    key = (owner.namespace, owner.name)
    if plan.replicas is None:
        return
    if plan.replicas == 0 or spec is None:
        if deployment is not None and deployment.replicas:
            await api.scale_deployment(owner.namespace, deployment.name, 0)
            logger.info("plugin %s/%s: scaled to zero", *key, extra=about(*key))
        return
    objects = render(owner, spec, policies, replicas=plan.replicas)
    rendered = objects[2]["metadata"]["annotations"][RENDERED_ANNOTATION]
    current = (
        deployment is not None
        and deployment.rendered == rendered
        and deployment.replicas == plan.replicas
    )
    if current and key not in _damaged:
        return
    _damaged.discard(key)
    for body in objects:
        await api.apply(body)
    logger.info(
        "plugin %s/%s: applied %d objects (%d replica(s) of %s)",
        *key,
        len(objects),
        plan.replicas,
        spec.implementation.digest,
        extra=about(*key),
    )


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
