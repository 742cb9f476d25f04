"""Gather → decide → act for one Plugin.

The facts come from kopf's in-memory indexes (kept current by watches, and complete before any
handler runs, so a restart never decides on half-loaded state). `evaluate` decides. The status
is written only when it differs from what the object already says, which makes every trigger
(the plugin's own events, an approval, a policy, a dependency) safe to repeat and ends the loop
of "our own status patch is an event too". Audit ids are derived from the plugin's uid,
generation and the decision, so a decision re-emitted after a crash is the same entry again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import hashlib
import logging
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from .. import metrics
from ..api.audit import Actor, ActorType, AuditEventType
from ..api.descriptor import ImplementationType, PluginDescriptor
from ..api.errors import ErrorType
from ..api.meta import Condition
from ..api.resources import ConditionType
from ..audit import AuditSink
from ..audit import event as audit_event
from ..core.approval import ApprovalRecord, ApprovalState, Requester
from ..core.availability import DeploymentRecord, PodRecord
from ..core.breaker import Breaker
from ..core.dependencies import Candidate
from ..core.gates import Reason
from ..core.pipeline import Evaluation, Facts, ScanFacts, evaluate
from ..core.policy import NamedPolicy, applicable
from ..core.running import SERVING
from ..core.scanpolicy import decide as decide_scan
from ..core.workload import Active, Owner
from ..kube import KubeApi
from ..manifests.validate import parse_model
from . import deploying
from .deploying import FINALIZER, Options
from .logs import about
from .scans import ScanRecord, request

logger = logging.getLogger("wayang.reconcile")


@dataclass(frozen=True)
class PluginSnapshot:
    """What the indexes keep of a Plugin: enough to evaluate it and its dependants."""

    namespace: str
    name: str
    uid: str
    generation: int
    spec: dict[str, Any]
    annotations: dict[str, str]
    status: dict[str, Any]
    descriptor: PluginDescriptor | None
    """The parsed spec (None if it does not validate), parsed once when the object is indexed."""
    resource_version: str = ""
    deleting: bool = False
    finalizers: tuple[str, ...] = ()

    @classmethod
    def parse(cls, spec: dict[str, Any]) -> PluginDescriptor | None:
        return parse_model(PluginDescriptor, spec)[0]

    def condition(self, kind: ConditionType) -> str | None:
        for condition in self.status.get("conditions") or []:
            if condition.get("type") == kind.value:
                return str(condition.get("status"))
        return None

    @property
    def active(self) -> bool:
        """Ready (every gate passed, enabled): something other plugins may depend on."""
        return self.condition(ConditionType.READY) == "True"

    @property
    def owner(self) -> Owner:
        return Owner(self.name, self.namespace, self.uid)

    def serving(self) -> Active | None:
        """The plugin as the index lists it, if its pods take calls."""
        reason = next(
            (
                c.get("reason")
                for c in self.status.get("conditions") or []
                if c.get("type") == ConditionType.WORKLOAD_AVAILABLE.value
            ),
            None,
        )
        if self.descriptor is None or reason not in {r.value for r in SERVING}:
            return None
        workload = self.status.get("workload") or {}
        return Active(self.name, self.descriptor, workload.get("version"), workload.get("digest"))


@dataclass(frozen=True)
class Indexes:
    """Read-only views of kopf's indexes, by the keys the handlers index under."""

    plugins: Mapping[Any, Iterable[PluginSnapshot]]
    approvals: Mapping[Any, Iterable[ApprovalRecord]]
    policies: Mapping[Any, Iterable[NamedPolicy]]
    namespaces: Mapping[Any, Iterable[dict[str, str]]]
    scans: Mapping[Any, Iterable[ScanRecord]] = field(default_factory=dict)
    """ScanReports by (namespace, digest)."""
    deployments: Mapping[Any, Iterable[DeploymentRecord]] = field(default_factory=dict)
    """Plugin Deployments by (namespace, plugin); empty when workloads are not managed."""
    pods: Mapping[Any, Iterable[PodRecord]] = field(default_factory=dict)
    """Plugin pods by (namespace, plugin)."""

    def deployment(self, namespace: str, plugin: str) -> DeploymentRecord | None:
        return next(iter(self.deployments.get((namespace, plugin), [])), None)

    def plugin(self, namespace: str, name: str) -> PluginSnapshot | None:
        return next(iter(self.plugins.get((namespace, name), [])), None)

    def governing(self, namespace: str) -> list[NamedPolicy]:
        """The policies that apply to the namespace (selected by its labels)."""
        labels = next(iter(self.namespaces.get(namespace, [])), {})
        return applicable([p for values in self.policies.values() for p in values], labels)

    def scan(self, namespace: str, digest: str) -> ScanRecord | None:
        return next(iter(self.scans.get((namespace, digest), [])), None)

    def namespace_plugins(self, namespace: str) -> list[PluginSnapshot]:
        return [p for key, values in self.plugins.items() if key[0] == namespace for p in values]


_locks: dict[tuple[str, str], asyncio.Lock] = {}


_written: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
"""The status this leader last wrote per plugin (with the plugin's uid). Until the watch brings
it back, the index holds an older one; deciding from that would repeat a decision or count a
pod's restart twice when the pods' events come quickly after our write."""


def forget(namespace: str, name: str) -> None:
    """Drop what is kept per plugin once it is deleted, so memory follows the cluster."""
    _locks.pop((namespace, name), None)
    _written.pop((namespace, name), None)


def forget_written() -> None:
    """On becoming the leader: another replica may have written since this one did."""
    _written.clear()


def _latest(snapshot: PluginSnapshot) -> PluginSnapshot:
    written = _written.get((snapshot.namespace, snapshot.name))
    if written is None or written[0] != snapshot.uid:
        return snapshot
    return dataclasses.replace(snapshot, status=written[1])


def merge_patch(old: Mapping[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch (RFC 7386) that turns `old` into `new`: keys that `new` dropped are
    set to null at every depth, since a merge patch would otherwise keep them."""
    patch = dict(new)
    for key, value in old.items():
        if key not in new:
            patch[key] = None
        elif isinstance(value, Mapping) and isinstance(new[key], dict):
            patch[key] = merge_patch(value, new[key])
    return patch


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


PULL_SECRET_ANNOTATION = "wayang.io/image-pull-secret"  # noqa: S105 - a name, not a secret
"""Names a dockerconfigjson Secret of the plugin's namespace for pulling its image."""


def _scan_facts(
    snapshot: PluginSnapshot, indexes: Indexes, policies: list[NamedPolicy]
) -> ScanFacts | None:
    spec = snapshot.descriptor
    if spec is None:
        return None
    if spec.implementation.type != ImplementationType.CONTAINER:
        return ScanFacts(
            False,
            f"trivy scans container images; a {spec.implementation.type} artifact cannot be "
            "scanned, so only a policy with scan.required: false admits it",
            error=ErrorType.VALIDATION_ERROR,
            failed=True,
        )
    record = indexes.scan(snapshot.namespace, spec.implementation.digest)
    return decide_scan(
        record.status if record else None, policies, datetime.datetime.now(datetime.UTC)
    )


def facts_for(
    snapshot: PluginSnapshot,
    indexes: Indexes,
    wayang_version: str | None,
    workloads: Options | None = None,
) -> Facts:
    neighbours = []
    active = []
    # A plugin that depends on nothing needs no neighbours (it cannot be in a cycle either), which
    # keeps the common reconcile independent of how many plugins share the namespace.
    if snapshot.descriptor and (snapshot.descriptor.requires or snapshot.descriptor.dependencies):
        for other in indexes.namespace_plugins(snapshot.namespace):
            if other.descriptor is None or other.name == snapshot.name:
                continue
            neighbours.append(Candidate(other.name, other.descriptor))
            if other.active:
                active.append(Candidate(other.name, other.descriptor))
    previous = [Condition.model_validate(c) for c in snapshot.status.get("conditions") or []]
    governing = indexes.governing(snapshot.namespace)
    approvals = list(indexes.approvals.get((snapshot.namespace, snapshot.name), []))
    workload = None
    if workloads is not None and snapshot.descriptor is not None:
        workload = deploying.gather(
            snapshot.owner,
            snapshot.descriptor,
            governing,
            deployment=indexes.deployment(snapshot.namespace, snapshot.name),
            pods=list(indexes.pods.get((snapshot.namespace, snapshot.name), [])),
            breaker=Breaker.from_status((snapshot.status.get("workload") or {}).get("breaker")),
            approvals=approvals,
            options=workloads,
        )
    return Facts(
        name=snapshot.name,
        namespace=snapshot.namespace,
        generation=snapshot.generation,
        spec=snapshot.spec,
        publisher=Requester.from_annotations(snapshot.annotations),
        policies=governing,
        scan=_scan_facts(snapshot, indexes, governing),
        approvals=approvals,
        active=active,
        namespace_plugins=neighbours,
        wayang_version=wayang_version,
        previous=previous,
        workload=workload,
        phase=snapshot.status.get("phase"),
        approvers=tuple(snapshot.status.get("approvers") or ()),
    )


def status_of(evaluation: Evaluation, digest: str | None) -> dict[str, Any]:
    """The Plugin's status as written; `digest` is the artifact the approvals counted for."""
    approval = evaluation.approval
    approved = approval is not None and approval.state is ApprovalState.APPROVED
    error = evaluation.last_error
    return {
        "phase": evaluation.phase.value,
        "reviewStatus": evaluation.review_status.value,
        "observedGeneration": evaluation.conditions[0].observed_generation,
        "conditions": [c.model_dump(mode="json", exclude_none=True) for c in evaluation.conditions],
        "lastError": error.model_dump(mode="json", exclude_none=True) if error else None,
        "approvers": list(approval.approvers) if approval and approval.approvers else None,
        "approvedDigest": digest if approved else None,
        "workload": evaluation.workload.status if evaluation.workload else None,
    }


def _comparable(status: dict[str, Any]) -> dict[str, Any]:
    """Status without transition times and error timestamps, to decide whether to write."""
    out = {k: v for k, v in status.items() if v is not None}
    out["conditions"] = [
        {k: v for k, v in c.items() if k != "lastTransitionTime"}
        for c in status.get("conditions") or []
    ]
    if isinstance(out.get("lastError"), dict):
        out["lastError"] = {k: v for k, v in out["lastError"].items() if k != "timestamp"}
    return out


_APPROVAL_DECISIONS = {
    Reason.APPROVED: "approved",
    Reason.AUTO_APPROVED: "auto_approved",
    Reason.REJECTED: "rejected",
    Reason.REVOKED: "revoked",
}


def _announce(snapshot: PluginSnapshot, evaluation: Evaluation) -> None:
    """Post the Events the core decided for this change (kopf sends them in the background) and
    count the transitions that have metrics of their own."""
    body: dict[str, Any] = {
        "apiVersion": "wayang.io/v1alpha1",
        "kind": "Plugin",
        "metadata": {"name": snapshot.name, "namespace": snapshot.namespace, "uid": snapshot.uid},
    }
    for transition in evaluation.transitions:
        kopf.event(
            kopf.Body(body),  # type: ignore[arg-type] # a minimal raw body
            type=transition.type.value,
            reason=transition.reason,
            message=transition.message,
        )
        metrics.EVENTS.labels(transition.type.value, transition.reason).inc()
        if transition.condition in _APPROVAL_DECISIONS:
            metrics.APPROVALS.labels(_APPROVAL_DECISIONS[transition.condition]).inc()
        elif transition.condition is Reason.QUARANTINED:
            metrics.BREAKER_TRIPS.inc()


OPERATOR = Actor(type=ActorType.SYSTEM, id="wayang-operator")


def actor_of(kind: AuditEventType, snapshot: PluginSnapshot, evaluation: Evaluation) -> Actor:
    """Who a decision is attributed to: the admission-stamped publisher for a registration, the
    approvers, rejecter or revoker for approval decisions, the operator for everything else."""
    outcome = evaluation.approval
    if kind is AuditEventType.REGISTERED:
        publisher = Requester.from_annotations(snapshot.annotations)
        if publisher is not None:
            return Actor(type=ActorType.USER, id=publisher.username)
    if kind is AuditEventType.APPROVED and outcome is not None:
        if outcome.approvers:
            return Actor(type=ActorType.USER, id=", ".join(outcome.approvers)[:256])
        if outcome.auto_approved_by:
            return Actor(type=ActorType.AUTOMATED, id=f"auto-approval/{outcome.auto_approved_by}")
    if kind in (AuditEventType.REJECTED, AuditEventType.REVOKED) and outcome and outcome.decided_by:
        return Actor(type=ActorType.USER, id=outcome.decided_by)
    return OPERATOR


def audit_id(snapshot: PluginSnapshot, kind: str, message: str) -> str:
    digest = hashlib.sha256(
        f"{snapshot.uid}/{snapshot.generation}/{kind}/{message}".encode()
    ).hexdigest()
    return str(uuid.UUID(digest[:32]))


async def _audit(
    sink: AuditSink,
    snapshot: PluginSnapshot,
    kind: AuditEventType,
    message: str,
    actor: Actor,
) -> None:
    """Append one decision; its id is derived from the plugin, generation and decision, so the
    same decision made again after a crash is the same entry."""
    spec = snapshot.descriptor
    entry = audit_event(
        kind,
        plugin_id=spec.id if spec else snapshot.name,
        version=spec.version if spec else None,
        tenant=snapshot.namespace,
        actor=actor,
        details={
            "plugin": snapshot.name,
            "digest": spec.implementation.digest if spec else None,
            "message": message,
            "generation": snapshot.generation,
        },
    ).model_copy(update={"audit_id": audit_id(snapshot, kind.value, message)})
    await sink.append(entry)
    metrics.DECISIONS.labels(kind.value).inc()


async def _finalized(
    snapshot: PluginSnapshot, indexes: Indexes, api: KubeApi, sink: AuditSink
) -> bool:
    """Hold a live plugin with our finalizer; for a deleted one (True): the final audit entry,
    out of the index, then let it go (the garbage collector removes the objects it owns)."""
    if not snapshot.deleting:
        if FINALIZER not in snapshot.finalizers:
            held = [*snapshot.finalizers, FINALIZER]
            await api.set_finalizers(
                "plugins", snapshot.namespace, snapshot.name, held, snapshot.resource_version
            )
        return False
    if FINALIZER not in snapshot.finalizers:
        return True
    await _audit(
        sink,
        snapshot,
        AuditEventType.UNLOADED,
        "deleted: the plugin and its workload are removed",
        OPERATOR,
    )
    try:
        await _publish(api, indexes, snapshot.namespace, without=snapshot.name)
    except Exception:  # e.g. the namespace is being deleted: the index goes with it
        logger.warning(
            "plugin %s/%s: the plugin index was not updated; letting the plugin go",
            snapshot.namespace,
            snapshot.name,
            exc_info=True,
            extra=about(snapshot.namespace, snapshot.name),
        )
    rest = [f for f in snapshot.finalizers if f != FINALIZER]
    await api.set_finalizers(
        "plugins", snapshot.namespace, snapshot.name, rest, snapshot.resource_version
    )
    return True


async def _publish(
    api: KubeApi,
    indexes: Indexes,
    namespace: str,
    *,
    without: str | None = None,
    fresh: PluginSnapshot | None = None,
) -> None:
    """The namespace's plugin index from the indexes, with `fresh` (just evaluated) instead of
    its indexed state and `without` left out."""
    active = []
    for plugin in indexes.namespace_plugins(namespace):
        if plugin.name == without or plugin.deleting:
            continue
        current = fresh if fresh is not None and fresh.name == plugin.name else plugin
        served = current.serving()
        if served is not None:
            active.append(served)
    await deploying.publish_index(api, namespace, active)


def _waits_for_scan(
    evaluation: Evaluation, indexes: Indexes, namespace: str, spec: PluginDescriptor
) -> bool:
    """The Scanned gate waits and no ScanReport exists yet for the artifact."""
    scanned = next(c for c in evaluation.conditions if c.type == ConditionType.SCANNED.value)
    pending = scanned.reason == Reason.SCAN_PENDING.value
    return pending and indexes.scan(namespace, spec.implementation.digest) is None


async def reconcile(
    namespace: str,
    name: str,
    indexes: Indexes,
    *,
    api: KubeApi,
    sink: AuditSink,
    wayang_version: str | None,
    workloads: Options | None = None,
) -> Evaluation | None:
    """Evaluate one plugin from the indexes, act on its workload (when `workloads` are run by
    this operator) and write its status if it changed; timed by outcome."""
    started = time.monotonic()
    outcome: metrics.ReconcileOutcome = "error"
    try:
        evaluation, outcome = await _reconcile(
            namespace,
            name,
            indexes,
            api=api,
            sink=sink,
            wayang_version=wayang_version,
            workloads=workloads,
        )
        return evaluation
    finally:
        metrics.RECONCILE_SECONDS.labels(outcome).observe(time.monotonic() - started)


async def _reconcile(
    namespace: str,
    name: str,
    indexes: Indexes,
    *,
    api: KubeApi,
    sink: AuditSink,
    wayang_version: str | None,
    workloads: Options | None,
) -> tuple[Evaluation | None, metrics.ReconcileOutcome]:
    lock = _locks.setdefault((namespace, name), asyncio.Lock())
    async with lock:
        indexed = indexes.plugin(namespace, name)
        if indexed is None:
            return None, "skipped"
        snapshot = _latest(indexed)
        if workloads is not None and await _finalized(snapshot, indexes, api, sink):
            return None, "skipped"
        facts = facts_for(snapshot, indexes, wayang_version, workloads)
        evaluation = evaluate(facts, _now())
        metrics.observe_phase(namespace, name, evaluation.phase)
        spec = snapshot.descriptor
        if spec is not None and _waits_for_scan(evaluation, indexes, namespace, spec):
            await request(api, namespace, spec, snapshot.annotations.get(PULL_SECRET_ANNOTATION))
        status = status_of(evaluation, spec.implementation.digest if spec else None)
        unchanged = _comparable(status) == _comparable(snapshot.status)
        if unchanged and evaluation.workload is None:
            return evaluation, "unchanged"
        for kind, message in [] if unchanged else evaluation.decisions:
            await _audit(sink, snapshot, kind, message, actor_of(kind, snapshot, evaluation))
        if evaluation.workload is not None:
            await deploying.act(
                api,
                snapshot.owner,
                spec,
                policies=facts.policies,
                plan=evaluation.workload,
                deployment=indexes.deployment(namespace, name),
            )
            if unchanged:
                return evaluation, "unchanged"
        gone = await api.patch_status(
            "plugins", namespace, name, merge_patch(snapshot.status, status)
        )
        if gone is None:
            _written[(namespace, name)] = (snapshot.uid, status)
            _announce(snapshot, evaluation)
        for record, verdict in (evaluation.approval.records if evaluation.approval else {}).items():
            approval_status = {"phase": verdict.phase.value, "message": verdict.message}
            await api.patch_status("pluginapprovals", namespace, record, approval_status)
        if gone is not None:
            return evaluation, "skipped"
        if evaluation.workload is not None:
            fresh = dataclasses.replace(snapshot, status=status)
            await _publish(api, indexes, namespace, fresh=fresh)
        logger.info(
            "plugin %s/%s: %s",
            namespace,
            name,
            evaluation.phase.value,
            extra=about(namespace, name, phase=evaluation.phase.value),
        )
        return evaluation, "written"
