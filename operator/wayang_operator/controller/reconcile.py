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
import datetime
import hashlib
import logging
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
from ..core.dependencies import Candidate
from ..core.pipeline import Evaluation, Facts, Reason, ScanFacts, evaluate
from ..core.policy import NamedPolicy, applicable
from ..core.scanpolicy import decide as decide_scan
from ..kube import KubeApi
from ..manifests.validate import parse_model
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


@dataclass(frozen=True)
class Indexes:
    """Read-only views of kopf's indexes, by the keys the handlers index under."""

    plugins: Mapping[Any, Iterable[PluginSnapshot]]
    approvals: Mapping[Any, Iterable[ApprovalRecord]]
    policies: Mapping[Any, Iterable[NamedPolicy]]
    namespaces: Mapping[Any, Iterable[dict[str, str]]]
    scans: Mapping[Any, Iterable[ScanRecord]] = field(default_factory=dict)
    """ScanReports by (namespace, digest)."""

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


def forget(namespace: str, name: str) -> None:
    """Drop what is kept per plugin once it is deleted (its lock), so memory follows the cluster."""
    _locks.pop((namespace, name), None)


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


def facts_for(snapshot: PluginSnapshot, indexes: Indexes, wayang_version: str | None) -> Facts:
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
    return Facts(
        name=snapshot.name,
        namespace=snapshot.namespace,
        generation=snapshot.generation,
        spec=snapshot.spec,
        publisher=Requester.from_annotations(snapshot.annotations),
        policies=governing,
        scan=_scan_facts(snapshot, indexes, governing),
        approvals=list(indexes.approvals.get((snapshot.namespace, snapshot.name), [])),
        active=active,
        namespace_plugins=neighbours,
        wayang_version=wayang_version,
        previous=previous,
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


def _announce(snapshot: PluginSnapshot, evaluation: Evaluation) -> None:
    """A Kubernetes Event for a phase change, with the reason of the gate that decided it."""
    failing = next((c for c in evaluation.conditions if c.status.value != "True"), None)
    decisive = failing or evaluation.conditions[-1]
    body: dict[str, Any] = {
        "apiVersion": "wayang.io/v1alpha1",
        "kind": "Plugin",
        "metadata": {"name": snapshot.name, "namespace": snapshot.namespace, "uid": snapshot.uid},
    }
    kind = "Warning" if evaluation.last_error else "Normal"
    message = f"{evaluation.phase.value}: {decisive.type} {decisive.reason}: {decisive.message}"
    kopf.event(
        kopf.Body(body),  # type: ignore[arg-type] # a minimal raw body
        type=kind,
        reason=evaluation.phase.value,
        message=message[:1024],
    )


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
    return Actor(type=ActorType.SYSTEM, id="wayang-operator")


def audit_id(snapshot: PluginSnapshot, kind: str, message: str) -> str:
    digest = hashlib.sha256(
        f"{snapshot.uid}/{snapshot.generation}/{kind}/{message}".encode()
    ).hexdigest()
    return str(uuid.UUID(digest[:32]))


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
) -> Evaluation | None:
    """Evaluate one plugin from the indexes and write its status if it changed."""
    lock = _locks.setdefault((namespace, name), asyncio.Lock())
    async with lock:
        snapshot = indexes.plugin(namespace, name)
        if snapshot is None:
            return None
        with metrics.RECONCILE_SECONDS.time():
            evaluation = evaluate(facts_for(snapshot, indexes, wayang_version), _now())
        metrics.observe_phase(namespace, name, evaluation.phase)
        spec = snapshot.descriptor
        if spec is not None and _waits_for_scan(evaluation, indexes, namespace, spec):
            await request(api, namespace, spec, snapshot.annotations.get(PULL_SECRET_ANNOTATION))
        status = status_of(evaluation, spec.implementation.digest if spec else None)
        if _comparable(status) == _comparable(snapshot.status):
            return evaluation
        for kind, message in evaluation.decisions:
            entry = audit_event(
                kind,
                plugin_id=spec.id if spec else name,
                version=spec.version if spec else None,
                tenant=namespace,
                actor=actor_of(kind, snapshot, evaluation),
                details={
                    "plugin": name,
                    "digest": spec.implementation.digest if spec else None,
                    "message": message,
                    "generation": snapshot.generation,
                },
            ).model_copy(update={"audit_id": audit_id(snapshot, kind.value, message)})
            await sink.append(entry)
            metrics.DECISIONS.labels(kind.value).inc()
        gone = await api.patch_status("plugins", namespace, name, status)
        if gone is None and snapshot.status.get("phase") != evaluation.phase.value:
            _announce(snapshot, evaluation)
        for record, verdict in (evaluation.approval.records if evaluation.approval else {}).items():
            approval_status = {"phase": verdict.phase.value, "message": verdict.message}
            await api.patch_status("pluginapprovals", namespace, record, approval_status)
        if gone is None:
            logger.info(
                "plugin %s/%s: %s",
                namespace,
                name,
                evaluation.phase.value,
                extra={"plugin": name, "namespace": namespace, "phase": evaluation.phase.value},
            )
        return evaluation
