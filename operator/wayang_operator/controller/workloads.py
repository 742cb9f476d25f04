"""kopf wiring of plugin workloads: indexes of their Deployments and pods, the events that
re-evaluate a plugin when its pods change, and one loop that re-observes workloads that are not
steady (deploying, failing, quarantined), since time passing is not an event.

Registered only when the operator runs workloads (`WAYANG_WORKLOADS`, default true): watching
pods and Deployments needs read access to them in every governed namespace. kopf filters the
watched objects by label in the operator, not in the API server, so a cluster-wide operator
receives every pod's events and keeps only ours.
"""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from ..api.resources import PluginPhase
from ..core.availability import PLUGIN_LABEL, DeploymentRecord, PodRecord
from ..core.workload import MANAGED
from .deploying import mark_damaged
from .handlers import DEPLOYMENT_INDEX, POD_INDEX, indexes_from, reconcile_many
from .reconcile import Indexes
from .runtime import RUNTIME

UNSTEADY = frozenset({PluginPhase.DEPLOYING, PluginPhase.DEGRADED, PluginPhase.QUARANTINED})


def _owner(namespace: str | None, labels: kopf.Labels) -> list[tuple[str, str]]:
    plugin = labels.get(PLUGIN_LABEL)
    return [(namespace, plugin)] if namespace and plugin else []


async def _observe_loop(indexes: Indexes) -> None:
    while True:
        await asyncio.sleep(RUNTIME.settings.workload_check_interval)
        if not RUNTIME.leadership.leading:
            continue
        keys = [
            (plugin.namespace, plugin.name)
            for values in list(indexes.plugins.values())
            for plugin in values
            if plugin.status.get("phase") in UNSTEADY
        ]
        await reconcile_many(indexes, keys)


def register() -> None:
    """Register the workload indexes, triggers and loop with kopf (before the operator starts)."""

    @kopf.index("apps", "v1", "deployments", labels=MANAGED, id=DEPLOYMENT_INDEX)
    def deployment_index(*, namespace: str | None, body: kopf.Body, **_: Any) -> object:
        record = DeploymentRecord.of(body)
        return {(namespace, record.plugin): record} if record and namespace else {}

    @kopf.index("", "v1", "pods", labels=MANAGED, id=POD_INDEX)
    def pod_index(*, namespace: str | None, body: kopf.Body, **_: Any) -> object:
        record = PodRecord.of(body)
        return {(namespace, record.plugin): record} if record and namespace else {}

    @kopf.on.event("apps", "v1", "deployments", labels=MANAGED, id="deployment_changed")
    async def deployment_changed(
        *, namespace: str | None, labels: kopf.Labels, type: str, **kwargs: Any
    ) -> None:
        if type == "DELETED":
            for key in _owner(namespace, labels):
                mark_damaged(*key)
        await reconcile_many(indexes_from(kwargs), _owner(namespace, labels))

    @kopf.on.event("", "v1", "pods", labels=MANAGED, id="pod_changed")
    async def pod_changed(*, namespace: str | None, labels: kopf.Labels, **kwargs: Any) -> None:
        await reconcile_many(indexes_from(kwargs), _owner(namespace, labels))

    @kopf.on.event(
        "networking.k8s.io", "v1", "networkpolicies", labels=MANAGED, id="policy_changed"
    )
    async def network_policy_changed(
        *, namespace: str | None, labels: kopf.Labels, type: str, **kwargs: Any
    ) -> None:
        """A deleted NetworkPolicy would leave a sandbox open: put it back at once."""
        if type == "DELETED":
            for key in _owner(namespace, labels):
                mark_damaged(*key)
            await reconcile_many(indexes_from(kwargs), _owner(namespace, labels))

    @kopf.on.startup(id="start_workload_observations")
    async def start(**kwargs: Any) -> None:
        RUNTIME.observations = asyncio.create_task(_observe_loop(indexes_from(kwargs)))

    @kopf.on.cleanup(id="stop_workload_observations")
    async def stop(**_: Any) -> None:
        if RUNTIME.observations is not None:
            RUNTIME.observations.cancel()
            RUNTIME.observations = None
