"""kopf wiring: indexes that hold the facts, and the events that trigger re-evaluation.

Handlers stay thin: each maps a watch event to the plugins it affects and calls `reconcile` for
them. What is affected is computed from the indexes, so nothing polls:
- a Plugin's own change re-evaluates it, and (when whether it is active changed) its neighbours
  in the namespace that require something;
- a PluginApproval re-evaluates the plugin it names;
- a PluginPolicy re-evaluates every plugin (policies are few and change rarely);
- a namespace's labels re-evaluate its plugins (policies select namespaces by label; see
  `namespaces.py`, registered only when the settings allow watching namespaces).
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import logging
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import kopf

from .. import metrics
from ..api.resources import PluginApprovalSpec, PluginPolicySpec
from ..core.approval import WITHDRAWN_BY_ANNOTATION, ApprovalRecord, Requester
from ..core.artifacts import Runtimes
from ..core.policy import NamedPolicy
from ..core.workload import Telemetry
from .deploying import Options
from .leadership import hold, release
from .logs import about
from .reconcile import (
    Indexes,
    PluginSnapshot,
    forget,
    forget_all,
    forget_written,
    reconcile,
    release_orphan,
)
from .runtime import RUNTIME

logger = logging.getLogger("wayang.handlers")

PLUGINS = ("wayang.io", "v1alpha1", "plugins")
APPROVALS = ("wayang.io", "v1alpha1", "pluginapprovals")
POLICIES = ("wayang.io", "v1alpha1", "pluginpolicies")
NAMESPACE_INDEX = "namespace_index"
"""The index of namespace labels (controller/namespaces.py), when namespaces are watched."""
DEPLOYMENT_INDEX = "deployment_index"
POD_INDEX = "pod_index"
"""The indexes of plugin Deployments and pods (controller/workloads.py), when workloads are run."""


def snapshot_of(namespace: str, name: str, body: Mapping[str, Any]) -> PluginSnapshot:
    """What the operator keeps of a Plugin (for the index, and for admission's fresh reads)."""
    meta = body.get("metadata", {})
    spec = dict(body.get("spec", {}))
    return PluginSnapshot(
        namespace=namespace,
        name=name,
        uid=str(meta.get("uid", "")),
        generation=int(meta.get("generation", 0)),
        spec=spec,
        annotations=dict(meta.get("annotations") or {}),
        status=dict(body.get("status") or {}),
        descriptor=PluginSnapshot.parse(spec),
        resource_version=str(meta.get("resourceVersion", "")),
        deleting=bool(meta.get("deletionTimestamp")),
        finalizers=tuple(meta.get("finalizers") or ()),
    )


def policy_of(name: str, body: Mapping[str, Any]) -> NamedPolicy | None:
    """A PluginPolicy's spec, or None (logged) when it is invalid: an invalid policy is ignored."""
    try:
        spec = PluginPolicySpec.model_validate(
            dict(body.get("spec", {})), by_alias=True, by_name=False
        )
    except ValueError:
        logger.warning("PluginPolicy %s is invalid and is ignored", name)
        return None
    return NamedPolicy(name, spec)


@kopf.index(*PLUGINS)
def plugin_index(*, namespace: str | None, name: str, body: kopf.Body, **_: Any) -> object:
    if namespace is None:
        return {}
    return {(namespace, name): snapshot_of(namespace, name, body)}


@kopf.index(*APPROVALS)
def approval_index(*, namespace: str | None, name: str, body: kopf.Body, **_: Any) -> object:
    try:
        spec = PluginApprovalSpec.model_validate(
            dict(body.get("spec", {})), by_alias=True, by_name=False
        )
    except ValueError:
        return {}
    if namespace is None:
        return {}
    record = approval_record(name, spec, body.get("metadata", {}), body.get("status") or {})
    return {(namespace, spec.plugin): record}


def approval_record(
    name: str, spec: PluginApprovalSpec, meta: Mapping[str, Any], status: Mapping[str, Any]
) -> ApprovalRecord:
    annotations = dict(meta.get("annotations") or {})
    shown = status.get("phase"), status.get("message")
    created = meta.get("creationTimestamp")
    when = datetime.datetime.fromisoformat(created.replace("Z", "+00:00")) if created else None
    return ApprovalRecord(
        name,
        spec,
        Requester.from_annotations(annotations),
        when,
        deleting=bool(meta.get("deletionTimestamp")),
        withdrawn_by=Requester.from_json(annotations.get(WITHDRAWN_BY_ANNOTATION)),
        finalizers=tuple(meta.get("finalizers") or ()),
        resource_version=str(meta.get("resourceVersion", "")),
        verdict=(str(shown[0]), str(shown[1])) if shown[0] else None,
    )


@kopf.index(*POLICIES)
def policy_index(*, name: str, body: kopf.Body, **_: Any) -> object:
    policy = policy_of(name, body)
    return {} if policy is None else {None: policy}


def indexes_from(kwargs: dict[str, Any]) -> Indexes:
    """The indexes kopf passes to every handler (by the index functions' names)."""
    return Indexes(
        plugins=kwargs["plugin_index"],
        approvals=kwargs["approval_index"],
        policies=kwargs["policy_index"],
        # a missing index is an error unless namespace watching is switched off
        namespaces=kwargs[NAMESPACE_INDEX] if RUNTIME.settings.watch_namespaces else {},
        scans=kwargs["scan_index"],
        deployments=kwargs[DEPLOYMENT_INDEX] if RUNTIME.settings.workloads else {},
        pods=kwargs[POD_INDEX] if RUNTIME.settings.workloads else {},
    )


@functools.cache
def _text(path: Path | None) -> str:
    """A settings file's text, read once (the settings are frozen for the process)."""
    return path.read_text() if path is not None else ""


def workload_options() -> Options | None:
    settings = RUNTIME.settings
    if not settings.workloads:
        return None
    telemetry = Telemetry(
        metrics_from=tuple(settings.plugin_metrics_from),
        otlp_endpoint=settings.plugin_otlp_endpoint,
        otlp_to=tuple(settings.plugin_otlp_to),
    )
    runtimes = Runtimes(
        images=dict(settings.runtime_images),
        artifacts_to=tuple(settings.plugin_artifacts_to),
        artifact_ca=_text(settings.artifact_ca_file),
    )
    return Options(
        settings.workload_check_interval, settings.workload_ready_grace, telemetry, runtimes
    )


async def _reconcile(indexes: Indexes, namespace: str, name: str) -> None:
    """Re-evaluate one plugin; a failure is logged and counted, and its next event retries it.
    A standby replica only keeps its indexes: the leader decides (see leadership.py)."""
    RUNTIME.leadership.indexed = True
    if not RUNTIME.leadership.leading:
        return
    try:
        await reconcile(
            namespace,
            name,
            indexes,
            api=RUNTIME.api,
            sink=RUNTIME.sink,
            wayang_version=RUNTIME.settings.wayang_version,
            workloads=workload_options(),
            attestor=RUNTIME.attestor,
            tracer=RUNTIME.tracer,
        )
    except Exception:  # one plugin's failure must never stop the others
        metrics.ERRORS.labels("reconcile").inc()
        delay = _retries.get((namespace, name), RETRY_FIRST)
        logger.exception(
            "reconciling %s/%s failed; retrying in %.0f s or at its next event",
            namespace,
            name,
            delay,
            extra=about(namespace, name),
        )
        _retry_later(indexes, namespace, name, delay)
    else:
        _retries.pop((namespace, name), None)


RETRY_FIRST, RETRY_MAX = 5.0, 300.0
_retries: dict[tuple[str, str], float] = {}
"""The next retry delay of each plugin whose last reconcile failed (doubling, capped)."""
_scheduled: dict[tuple[str, str], asyncio.Task[None]] = {}


def _retry_later(indexes: Indexes, namespace: str, name: str, delay: float) -> None:
    """Reconcile again after `delay` (with jitter), once per plugin: a failure that no event
    follows (an API error while the namespace is deleted, say) must not leave it undecided."""
    key = (namespace, name)
    _retries[key] = min(RETRY_MAX, delay * 2)
    if key in _scheduled:
        return

    async def later() -> None:
        await asyncio.sleep(delay * random.uniform(0.8, 1.2))  # noqa: S311 - jitter
        _scheduled.pop(key, None)
        await _reconcile(indexes, namespace, name)

    _scheduled[key] = asyncio.create_task(later())


async def reconcile_many(indexes: Indexes, keys: list[tuple[str, str]]) -> None:
    for namespace, name in keys:
        await _reconcile(indexes, namespace, name)


@kopf.on.startup()
async def elect(**kwargs: Any) -> None:
    """Compete for the Lease (unless standalone). On winning it after standing by, re-evaluate
    every plugin: events that arrived while standing by were indexed but not decided."""
    forget_all()
    settings, leadership = RUNTIME.settings, RUNTIME.leadership
    leadership.standalone = settings.standalone
    if settings.standalone:
        metrics.set_leader(True)
        return
    indexes = indexes_from(kwargs)

    async def on_elected() -> None:
        forget_written()
        if leadership.indexed:  # else the initial listing's events are still to come, and decide
            await reconcile_many(indexes, [key for key in indexes.plugins if key])

    RUNTIME.election = asyncio.create_task(
        hold(
            leadership,
            RUNTIME.api,
            namespace=settings.lease_namespace,
            name=settings.lease_name,
            duration=settings.lease_duration,
            on_elected=on_elected,
        )
    )


@kopf.on.cleanup()
async def step_down(**_: Any) -> None:
    if RUNTIME.election is not None:
        RUNTIME.election.cancel()
    settings = RUNTIME.settings
    await release(
        RUNTIME.leadership,
        RUNTIME.api,
        namespace=settings.lease_namespace,
        name=settings.lease_name,
    )


def _dependants(indexes: Indexes, namespace: str, name: str) -> list[tuple[str, str]]:
    """Plugins of the namespace that depend on anything (they may depend on `name`)."""
    return [
        (namespace, other.name)
        for other in indexes.namespace_plugins(namespace)
        if other.name != name and (other.spec.get("requires") or other.spec.get("dependencies"))
    ]


_seen: dict[tuple[str, str], tuple[bool, int]] = {}
"""(active, generation) of each plugin at its last event (the index holds only the present)."""


@kopf.on.event(*PLUGINS)
async def plugin_changed(*, namespace: str | None, name: str, type: str, **kwargs: Any) -> None:
    """Re-evaluate the plugin and, when its spec changed or it turned active or inactive, the
    plugins of the namespace that depend on something (a new provider, or a cycle just closed).

    Activity is read from the index, i.e. from the status the API server holds: dependants are
    re-evaluated when our own status patch comes back through the watch, so they see it.
    """
    if namespace is None:
        return
    indexes = indexes_from(kwargs)
    key = (namespace, name)
    if type == "DELETED":
        metrics.observe_phase(namespace, name, None)
        _seen.pop(key, None)
        forget(namespace, name)
        await reconcile_many(indexes, _dependants(indexes, namespace, name))
        return
    await _reconcile(indexes, namespace, name)
    snapshot = indexes.plugin(namespace, name)
    if snapshot is None:
        return
    now = (snapshot.active, snapshot.generation)
    if _seen.get(key) != now:
        await reconcile_many(indexes, _dependants(indexes, namespace, name))
    _seen[key] = now


@kopf.on.event(*APPROVALS)
async def approval_changed(
    *, namespace: str | None, name: str, spec: kopf.Spec, body: kopf.Body, **kwargs: Any
) -> None:
    """Re-evaluate the plugin the approval names; a deleted decision whose plugin is gone is
    audited and let go here (no evaluation will record it)."""
    plugin = spec.get("plugin")
    if not plugin or not namespace:
        return
    indexes = indexes_from(kwargs)
    if indexes.plugin(namespace, str(plugin)) is None:
        if RUNTIME.leadership.leading:
            await release_orphan(RUNTIME.api, RUNTIME.sink, namespace, name, body)
        return
    await _reconcile(indexes, namespace, str(plugin))


@kopf.on.event(*POLICIES)
async def policy_changed(**kwargs: Any) -> None:
    indexes = indexes_from(kwargs)
    await reconcile_many(indexes, [key for key in indexes.plugins if isinstance(key, tuple)])
