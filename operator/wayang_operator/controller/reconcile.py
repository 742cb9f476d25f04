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
from opentelemetry import trace

from .. import metrics, tracing
from ..api.audit import Actor, ActorType, AuditEventType
from ..api.descriptor import PluginDescriptor
from ..api.meta import Condition
from ..api.resources import ConditionType, Withdrawal
from ..audit import AuditSink
from ..audit import event as audit_event
from ..core.approval import (
    DECISION_FINALIZER,
    WITHDRAWN_BY_ANNOTATION,
    ApprovalRecord,
    ApprovalState,
    Publishers,
    Requester,
    updated_by,
)
from ..core.artifacts import NO_RUNTIMES, PULL_SECRET_ANNOTATION
from ..core.attestation import Attestor
from ..core.availability import DeploymentRecord, PodRecord
from ..core.breaker import Breaker
from ..core.configuration import secret_refs
from ..core.dependencies import Candidate
from ..core.gates import Reason
from ..core.pipeline import AuditDecision, Evaluation, Facts, ScanFacts, evaluate
from ..core.policy import NamedPolicy, applicable
from ..core.running import SERVING
from ..core.scanpolicy import decide as decide_scan
from ..core.workload import NO_TELEMETRY, Active, Owner
from ..kube import Conflict, Gone, KubeApi, Written
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
        return Owner(
            self.name, self.namespace, self.uid, self.annotations.get(PULL_SECRET_ANNOTATION)
        )

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


@dataclass(frozen=True)
class _Write:
    uid: str
    status: dict[str, Any]
    made: str
    """The resourceVersion our write made."""
    base: str
    """The index's resourceVersion when we wrote: while the index is still there, it has not
    seen our write."""


_written: dict[tuple[str, str], _Write] = {}
"""The status this leader last wrote per plugin. Until the watch brings it back, the index holds
an older one; deciding from that would repeat a decision or count a pod's restart twice when the
pods' events come quickly after our write. Once the index moves past `base` it holds our write
or something newer (a deposed leader's late write, an admin's edit), and is trusted again: a
replica never prefers its memory to what the cluster shows."""


def forget(namespace: str, name: str) -> None:
    """Drop what is kept per plugin once it is deleted, so memory follows the cluster."""
    _locks.pop((namespace, name), None)
    _written.pop((namespace, name), None)
    deploying.forget_refusal(namespace, name)


def forget_written() -> None:
    """On becoming the leader: another replica may have written since this one did."""
    _written.clear()


def forget_all() -> None:
    """At the start of an operator run: no per-plugin lock or remembered write of an earlier run.
    A lock belongs to the event loop that made it, and one still held by a task of a loop that
    has ended (the in-process tests run one operator per loop) would block that plugin forever."""
    _locks.clear()
    _written.clear()


def _pending(snapshot: PluginSnapshot) -> _Write | None:
    """Our last write of this plugin's status, while the index has not caught up with it."""
    key = (snapshot.namespace, snapshot.name)
    written = _written.get(key)
    if written is None or written.uid != snapshot.uid:
        return None
    if snapshot.resource_version != written.base:
        del _written[key]  # the index has our write, or something newer
        return None
    return written


def _latest(snapshot: PluginSnapshot) -> PluginSnapshot:
    written = _pending(snapshot)
    return snapshot if written is None else dataclasses.replace(snapshot, status=written.status)


def _based_on(snapshot: PluginSnapshot) -> str:
    """The resourceVersion the status write is conditional on: the one our own last write made
    while the index has not caught up with it, else the index's. Anyone else's write since then
    (a deposed leader that woke up mid-write, say) makes ours fail rather than overwrite it."""
    written = _pending(snapshot)
    return snapshot.resource_version if written is None else written.made


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


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _stamp(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _scan_facts(
    snapshot: PluginSnapshot, indexes: Indexes, policies: list[NamedPolicy], now: datetime.datetime
) -> ScanFacts | None:
    spec = snapshot.descriptor
    if spec is None:
        return None
    record = indexes.scan(snapshot.namespace, spec.implementation.digest)
    return decide_scan(record.trusted_status if record else None, policies, now)


def _withdrawals(status: dict[str, Any]) -> tuple[Withdrawal, ...]:
    kept = []
    for raw in status.get("withdrawals") or []:
        parsed = parse_model(Withdrawal, raw)[0]
        if parsed is not None:
            kept.append(parsed)
    return tuple(kept)


def facts_for(
    snapshot: PluginSnapshot,
    indexes: Indexes,
    wayang_version: str | None,
    *,
    workloads: Options | None = None,
    now: datetime.datetime | None = None,
    missing_secret: str | None = None,
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
            missing_secret=missing_secret,
        )
    return Facts(
        name=snapshot.name,
        namespace=snapshot.namespace,
        generation=snapshot.generation,
        spec=snapshot.spec,
        publishers=Publishers.from_annotations(snapshot.annotations),
        policies=governing,
        scan=_scan_facts(snapshot, indexes, governing, now or _now()),
        approvals=approvals,
        active=active,
        namespace_plugins=neighbours,
        wayang_version=wayang_version,
        previous=previous,
        workload=workload,
        now=_stamp(now or _now()),
        phase=snapshot.status.get("phase"),
        approvers=tuple(snapshot.status.get("approvers") or ()),
        withdrawals=_withdrawals(snapshot.status),
        approved_surface=snapshot.status.get("approvedSurface"),
    )


def status_of(evaluation: Evaluation, digest: str | None) -> dict[str, Any]:
    """The Plugin's status as written; `digest` is the artifact the approvals counted for."""
    approval = evaluation.approval
    approved = approval is not None and approval.state is ApprovalState.APPROVED
    error = evaluation.last_error

    def wire(models: Iterable[Any]) -> list[dict[str, Any]] | None:
        dumped = [m.model_dump(mode="json", exclude_none=True, by_alias=True) for m in models]
        return dumped or None

    return {
        "phase": evaluation.phase.value,
        "reviewStatus": evaluation.review_status.value,
        "observedGeneration": evaluation.conditions[0].observed_generation,
        "conditions": [c.model_dump(mode="json", exclude_none=True) for c in evaluation.conditions],
        "lastError": error.model_dump(mode="json", exclude_none=True) if error else None,
        "approvers": list(approval.approvers) if approval and approval.approvers else None,
        "approvedDigest": digest if approved else None,
        "approvedSurface": approval.surface_digest if approval and approved else None,
        "approvals": wire(approval.summaries) if approval else None,
        "withdrawals": wire(approval.withdrawals) if approval else None,
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


async def _announce(api: KubeApi, snapshot: PluginSnapshot, evaluation: Evaluation) -> None:
    """Post the Events the core decided for this change and count the transitions that have
    metrics of their own. kopf sends them in the background, but only from its per-object
    tasks: a decision of the workload observation loop or of a takeover's re-evaluation has no
    kopf queue (LookupError), and is posted through the API module instead."""
    meta = {"name": snapshot.name, "namespace": snapshot.namespace, "uid": snapshot.uid}
    body: dict[str, Any] = {"apiVersion": "wayang.io/v1alpha1", "kind": "Plugin", "metadata": meta}
    for transition in evaluation.transitions:
        try:
            kopf.event(
                kopf.Body(body),  # type: ignore[arg-type] # a minimal raw body
                type=transition.type.value,
                reason=transition.reason,
                message=transition.message,
            )
        except LookupError:
            ref = {"apiVersion": body["apiVersion"], "kind": body["kind"], **meta}
            await api.post_event(ref, transition.type.value, transition.reason, transition.message)
        metrics.EVENTS.labels(transition.type.value, transition.reason).inc()
        if transition.condition in _APPROVAL_DECISIONS:
            metrics.APPROVALS.labels(_APPROVAL_DECISIONS[transition.condition]).inc()
        elif transition.condition is Reason.QUARANTINED:
            metrics.BREAKER_TRIPS.inc()


OPERATOR = Actor(type=ActorType.SYSTEM, id="wayang-operator")


def _person(requester: Requester) -> Actor:
    kind = ActorType.CI if requester.is_service_account else ActorType.USER
    return Actor(type=kind, id=requester.username[:256])


def actor_of(decision: AuditDecision, snapshot: PluginSnapshot, evaluation: Evaluation) -> Actor:
    """Who a decision is attributed to: the admission-stamped publisher for a registration, the
    user whose spec change made the generation for an update, the approvers, rejecter or revoker
    for approval decisions, whoever deleted a decision, the operator for everything else."""
    outcome = evaluation.approval
    kind = decision.kind
    if decision.actor:
        return Actor(type=ActorType.USER, id=decision.actor[:256])
    if kind is AuditEventType.REGISTERED:
        publisher = Requester.from_annotations(snapshot.annotations)
        if publisher is not None:
            return _person(publisher)
    if kind is AuditEventType.UPDATED:
        editor = updated_by(snapshot.annotations, snapshot.generation)
        if editor is not None:
            return _person(editor)
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


def _provenance(decision: AuditDecision, evaluation: Evaluation | None) -> dict[str, Any]:
    """The blueprint's provenance fields an entry carries besides its message: who signed the
    artifact (key and fingerprint), and for approval decisions who decided and why."""
    details: dict[str, Any] = dict(decision.details)
    signed = evaluation.signature if evaluation else None
    if signed is not None:
        details["signed_by"] = {
            "key": signed.key,
            "fingerprint": signed.fingerprint,
            "owner": signed.owner,
            "payload": f"v{signed.payload_version}",
        }
    outcome = evaluation.approval if evaluation else None
    deciding = (AuditEventType.APPROVED, AuditEventType.REJECTED, AuditEventType.REVOKED)
    if outcome is not None and decision.kind in deciding:
        details["approved_surface"] = outcome.surface_digest
        details["decisions"] = [
            {"approval": s.approval, "by": s.approver, "decision": s.decision.value}
            | ({"reason": s.reason} if s.reason else {})
            for s in outcome.summaries
        ]
    return details


async def _audit(
    sink: AuditSink,
    snapshot: PluginSnapshot,
    decision: AuditDecision,
    actor: Actor,
    evaluation: Evaluation | None = None,
) -> None:
    """Append one decision; its id is derived from the plugin, generation and decision, so the
    same decision made again after a crash is the same entry."""
    spec = snapshot.descriptor
    kind, message = decision.kind, decision.message
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
            **_provenance(decision, evaluation),
        },
    ).model_copy(
        update={"audit_id": audit_id(snapshot, kind.value, message), "error": decision.error}
    )
    await sink.append(entry)
    metrics.DECISIONS.labels(kind.value).inc()


async def _finalized(
    snapshot: PluginSnapshot, indexes: Indexes, api: KubeApi, sink: AuditSink
) -> PluginSnapshot | None:
    """Hold a live plugin with our finalizer (the snapshot at the version that made, so the
    status write that follows is conditional on it); for a deleted one (None): the final audit
    entry, out of the index, then let it go (the garbage collector removes what it owns)."""
    if not snapshot.deleting:
        if FINALIZER not in snapshot.finalizers:
            held = [*snapshot.finalizers, FINALIZER]
            version = await api.set_finalizers(
                "plugins", snapshot.namespace, snapshot.name, held, snapshot.resource_version
            )
            if version:
                return dataclasses.replace(
                    snapshot, finalizers=tuple(held), resource_version=version
                )
        return snapshot
    if FINALIZER not in snapshot.finalizers:
        return None
    await _audit(
        sink,
        snapshot,
        AuditDecision(AuditEventType.UNLOADED, "deleted: the plugin and its workload are removed"),
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
    return None


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


async def _write_verdicts(
    api: KubeApi, indexes: Indexes, namespace: str, plugin: str, evaluation: Evaluation
) -> None:
    """Each approval's own status (InForce, Stale, Ignored, with why), where it changed."""
    if evaluation.approval is None:
        return
    shown = {r.name: r.verdict for r in indexes.approvals.get((namespace, plugin), [])}
    for record, verdict in evaluation.approval.records.items():
        wanted = (verdict.phase.value, verdict.message)
        if shown.get(record) != wanted:
            status = {"phase": wanted[0], "message": wanted[1]}
            await api.patch_status("pluginapprovals", namespace, record, status)


async def release_withdrawn(
    api: KubeApi, indexes: Indexes, namespace: str, plugin: str, evaluation: Evaluation
) -> None:
    """Let deleted Rejects and Revokes go once the Plugin's status records who lifted them (the
    audit entry was appended before that status was written), or when they never counted."""
    releasable = set(evaluation.approval.releasable if evaluation.approval else ())
    for record in indexes.approvals.get((namespace, plugin), []):
        held = DECISION_FINALIZER in record.finalizers
        if record.deleting and record.name in releasable and held:
            rest = [f for f in record.finalizers if f != DECISION_FINALIZER]
            await api.set_finalizers(
                "pluginapprovals", namespace, record.name, rest, record.resource_version
            )


async def release_orphan(
    api: KubeApi, sink: AuditSink, namespace: str, name: str, body: Mapping[str, Any]
) -> None:
    """A Reject or Revoke deleted after its Plugin: audited with its deleter, then let go."""
    meta = body.get("metadata") or {}
    finalizers = list(meta.get("finalizers") or [])
    if not meta.get("deletionTimestamp") or DECISION_FINALIZER not in finalizers:
        return
    spec = body.get("spec") or {}
    annotations = dict(meta.get("annotations") or {})
    deleter = Requester.from_json(annotations.get(WITHDRAWN_BY_ANNOTATION))
    decided = Requester.from_annotations(annotations)
    message = (
        f"{spec.get('decision')} by {decided.username if decided else 'unknown'} (PluginApproval "
        f"{name}) deleted by {deleter.username if deleter else 'unknown'} after its Plugin "
        f"{spec.get('plugin')} was deleted"
    )
    entry = audit_event(
        AuditEventType.DECISION_WITHDRAWN,
        plugin_id=str(spec.get("pluginId") or spec.get("plugin") or name),
        version=spec.get("version"),
        tenant=namespace,
        actor=_person(deleter) if deleter else OPERATOR,
        details={"approval": name, "digest": spec.get("digest"), "message": message},
    ).model_copy(
        update={"audit_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{meta.get('uid')}/withdrawn"))}
    )
    await sink.append(entry)
    metrics.DECISIONS.labels(AuditEventType.DECISION_WITHDRAWN.value).inc()
    rest = [f for f in finalizers if f != DECISION_FINALIZER]
    await api.set_finalizers(
        "pluginapprovals", namespace, name, rest, str(meta.get("resourceVersion", ""))
    )


def _waits_for_scan(
    evaluation: Evaluation, indexes: Indexes, namespace: str, spec: PluginDescriptor
) -> bool:
    """The Scanned gate waits and no ScanReport the operator requested exists for the artifact
    (none at all, or one it did not write, which it takes over)."""
    scanned = next(c for c in evaluation.conditions if c.type == ConditionType.SCANNED.value)
    pending = scanned.reason == Reason.SCAN_PENDING.value
    record = indexes.scan(namespace, spec.implementation.digest)
    return pending and (record is None or not record.requested)


async def reconcile(
    namespace: str,
    name: str,
    indexes: Indexes,
    *,
    api: KubeApi,
    sink: AuditSink,
    wayang_version: str | None,
    workloads: Options | None = None,
    attestor: Attestor | None = None,
    tracer: trace.Tracer | None = None,
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
            attestor=attestor or Attestor.generate(),
            tracer=tracer or trace.NoOpTracer(),
        )
        return evaluation
    finally:
        metrics.RECONCILE_SECONDS.labels(outcome).observe(time.monotonic() - started)


async def _missing_secret(
    api: KubeApi, indexes: Indexes, snapshot: PluginSnapshot, workloads: Options | None
) -> str | None:
    spec = snapshot.descriptor
    if workloads is None or spec is None:
        return None
    pods = list(indexes.pods.get((snapshot.namespace, snapshot.name), []))
    mounts = bool(spec.required_secrets or secret_refs(spec))
    return await deploying.missing_secret(api, snapshot.namespace, pods, mounts)


async def _act(  # noqa: PLR0917 - what was gathered, decided and configured
    api: KubeApi,
    indexes: Indexes,
    snapshot: PluginSnapshot,
    facts: Facts,
    evaluation: Evaluation,
    workloads: Options | None,
) -> Evaluation:
    """Carry out the workload plan; a render the API server refused is re-evaluated with the
    refusal, so this very status write says so."""
    if evaluation.workload is None:
        return evaluation
    refused = await deploying.act(
        api,
        snapshot.owner,
        snapshot.descriptor,
        policies=facts.policies,
        plan=evaluation.workload,
        deployment=indexes.deployment(snapshot.namespace, snapshot.name),
        telemetry=workloads.telemetry if workloads else NO_TELEMETRY,
        runtimes=workloads.runtimes if workloads else NO_RUNTIMES,
    )
    if refused is None or facts.workload is None or facts.workload.refused:
        return evaluation
    workload = dataclasses.replace(facts.workload, refused=refused)
    return evaluate(dataclasses.replace(facts, workload=workload), facts.now)


async def _reconcile(
    namespace: str,
    name: str,
    indexes: Indexes,
    *,
    api: KubeApi,
    sink: AuditSink,
    wayang_version: str | None,
    workloads: Options | None,
    attestor: Attestor,
    tracer: trace.Tracer,
) -> tuple[Evaluation | None, metrics.ReconcileOutcome]:
    lock = _locks.setdefault((namespace, name), asyncio.Lock())
    async with lock:
        # a conflict with our own last write (someone wrote since): once more, from the index
        for _ in range(2):
            indexed = indexes.plugin(namespace, name)
            if indexed is None:
                return None, "skipped"
            snapshot = _latest(indexed)
            with tracer.start_as_current_span(
                "wayang.reconcile",
                context=tracing.parent_of(snapshot.annotations),
                attributes={
                    "wayang.namespace": namespace,
                    "wayang.plugin": name,
                    "wayang.generation": snapshot.generation,
                },
            ) as span:
                evaluation, outcome = await _decide(
                    snapshot,
                    indexes,
                    api=api,
                    sink=sink,
                    wayang_version=wayang_version,
                    workloads=workloads,
                    attestor=attestor,
                    tracer=tracer,
                )
                span.set_attribute("wayang.outcome", outcome)
                if evaluation is not None:
                    span.set_attribute("wayang.phase", evaluation.phase.value)
            if outcome != "conflict":
                break
        return evaluation, outcome


def _describe(span: trace.Span, evaluation: Evaluation) -> None:
    """The decision on its span: the phase and each gate's reason."""
    span.set_attribute("wayang.phase", evaluation.phase.value)
    for condition in evaluation.conditions:
        span.set_attribute(
            f"wayang.gate.{condition.type}", f"{condition.status.value} {condition.reason}"
        )


async def _decide(
    snapshot: PluginSnapshot,
    indexes: Indexes,
    *,
    api: KubeApi,
    sink: AuditSink,
    wayang_version: str | None,
    workloads: Options | None,
    attestor: Attestor,
    tracer: trace.Tracer,
) -> tuple[Evaluation | None, metrics.ReconcileOutcome]:
    """Gather the facts, decide (the pure pipeline), act on the workload, audit and write the
    status: one reconcile of one snapshot, each step its own span."""
    namespace, name = snapshot.namespace, snapshot.name
    if workloads is not None:
        held = await _finalized(snapshot, indexes, api, sink)
        if held is None:
            return None, "skipped"
        snapshot = held
    now = _now()
    facts = facts_for(
        snapshot,
        indexes,
        wayang_version,
        workloads=workloads,
        now=now,
        missing_secret=await _missing_secret(api, indexes, snapshot, workloads),
    )
    with tracer.start_as_current_span("wayang.evaluate") as span:
        evaluation = evaluate(facts, facts.now)
        _describe(span, evaluation)
    spec = snapshot.descriptor
    if spec is not None and _waits_for_scan(evaluation, indexes, namespace, spec):
        pull_secret = snapshot.annotations.get(PULL_SECRET_ANNOTATION)
        existing = indexes.scan(namespace, spec.implementation.digest)
        await request(
            api, attestor, namespace, plugin=spec, pull_secret=pull_secret, existing=existing
        )
    if evaluation.workload is not None:
        with tracer.start_as_current_span("wayang.act") as span:
            span.set_attribute("wayang.replicas", evaluation.workload.replicas or 0)
            evaluation = await _act(api, indexes, snapshot, facts, evaluation, workloads)
    metrics.observe_phase(namespace, name, evaluation.phase)
    status = status_of(evaluation, spec.implementation.digest if spec else None)
    if _comparable(status) == _comparable(snapshot.status):
        # a new approval that does not count changes no plugin status, but its own; what a
        # deleted decision waits for may already be written
        await _write_verdicts(api, indexes, namespace, name, evaluation)
        await release_withdrawn(api, indexes, namespace, name, evaluation)
        return evaluation, "unchanged"
    for decision in evaluation.decisions:
        actor = actor_of(decision, snapshot, evaluation)
        with tracer.start_as_current_span(
            "wayang.audit", attributes={"wayang.audit.event": decision.kind.value}
        ):
            await _audit(sink, snapshot, decision, actor, evaluation)
    with tracer.start_as_current_span("wayang.status"):
        written = await api.patch_status(
            "plugins", namespace, name, merge_patch(snapshot.status, status),
            resource_version=_based_on(snapshot),
        )  # fmt: skip
    if isinstance(written, Conflict):
        _written.pop((namespace, name), None)
        logger.info(
            "plugin %s/%s changed since this decision was made; deciding again",
            namespace, name, extra=about(namespace, name),
        )  # fmt: skip
        return evaluation, "conflict"
    gone = written if isinstance(written, Gone) else None
    if isinstance(written, Written):
        _written[(namespace, name)] = _Write(
            snapshot.uid, status, written.resource_version, snapshot.resource_version
        )
        await _announce(api, snapshot, evaluation)
    await _write_verdicts(api, indexes, namespace, name, evaluation)
    if gone is not None:
        return evaluation, "skipped"
    await release_withdrawn(api, indexes, namespace, name, evaluation)
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
