"""The Approved gate: which PluginApprovals count for one exact artifact and its approved surface,
and whether they suffice.

What makes an approval count:

- an identity that was not typed: the admission webhook stamps the requester (a typed
  `spec.approver` proves nothing); an approval created by a ServiceAccount (Argo CD syncing Git, a
  CI job) counts only with a valid approver signature, for the owner of the approver key;
- exactly the plugin, id, version and digest it names: an approval never carries over to other
  bytes;
- an approved surface (copied by the webhook from the Plugin at creation) with at least the
  powers the Plugin declares now (core/surface.py): a change that grows any of them needs fresh
  approvals, one that keeps or shrinks them carries the approval over;
- made after every rejection or revocation of the artifact (`Withdrawal`, kept in the Plugin's
  status after the Reject or Revoke is deleted): deleting a decision never quietly revives the
  approvals it overruled; and whoever deleted *another* approver's decision cannot approve the
  artifact alone, their own approvals do not count for it;
- not by a publisher where a policy forbids self-approval: a publisher is whoever created the
  Plugin or changed its approved surface, and, under GitOps, the owner of the key that signed it.

A Revoke in force withdraws everything; otherwise a Reject wins over any number of Approves (both
match on the artifact alone: changing the surface escapes neither). Approvals are counted by
distinct identity. Each applicable policy must be satisfied on its own, either by enough distinct
approvers or by one of its CEL auto-approval rules.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from celpy import Environment, celtypes
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError

from ..api.descriptor import PluginDescriptor
from ..api.resources import (
    ApprovalPhase,
    ApprovalSummary,
    ApprovedSurface,
    Decision,
    PluginApprovalSpec,
    TrustedKey,
    Withdrawal,
)
from ..api.scan import ScanSummary
from . import surface
from .policy import NamedPolicy, approvers_required
from .signing import ApprovalFields, verify_approval

REQUESTER_ANNOTATION = "wayang.io/requested-by"
"""Set by the mutating webhook on create from the admission request's userInfo; users cannot."""
PUBLISHERS_ANNOTATION = "wayang.io/publishers"
"""A Plugin's publishers: its creator and everyone who changed its approved surface (a JSON list
of user names), kept by the admission webhooks; users cannot change it."""
UPDATED_BY_ANNOTATION = "wayang.io/updated-by"
"""Who made a Plugin's latest spec change, and the generation it made (admission identity)."""
WITHDRAWN_BY_ANNOTATION = "wayang.io/withdrawn-by"
"""Who deleted a Reject or Revoke, stamped by the webhook on DELETE before the deletion."""
DECISION_FINALIZER = "wayang.io/decision"
"""Held by a Reject or Revoke from its creation: its deletion waits until the operator has
recorded who lifted it in the Plugin's status and in the audit log."""
STAMPED_ANNOTATIONS = (
    REQUESTER_ANNOTATION,
    PUBLISHERS_ANNOTATION,
    UPDATED_BY_ANNOTATION,
    WITHDRAWN_BY_ANNOTATION,
)
"""Annotations only the operator's webhooks write."""
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
WITHDRAWALS_KEPT = 16
WITHDRAWING = (Decision.REJECT, Decision.REVOKE)


@dataclass(frozen=True)
class Requester:
    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, raw: str | None) -> Requester | None:
        if not raw:
            return None
        try:
            data = json.loads(raw)
            return cls(
                str(data["username"]), str(data.get("uid", "")), tuple(data.get("groups", ()))
            )
        except (ValueError, KeyError, TypeError):
            return None

    @classmethod
    def from_annotations(cls, annotations: dict[str, str] | None) -> Requester | None:
        return cls.from_json((annotations or {}).get(REQUESTER_ANNOTATION))

    @property
    def is_service_account(self) -> bool:
        """Automation (GitOps, CI): its admission identity names no person."""
        return self.username.startswith(SERVICE_ACCOUNT_PREFIX)


@dataclass(frozen=True)
class Publishers:
    """Who counts as the plugin's publisher for the self-approval rule."""

    users: tuple[str, ...] = ()
    """Admission identities: the creator and everyone who changed the approved surface."""
    key_owner: str | None = None
    """The owner of the trusted key that signed the plugin (its publisher under GitOps)."""

    def includes(self, identity: str) -> bool:
        return identity in self.users or (self.key_owner is not None and identity == self.key_owner)

    @classmethod
    def from_annotations(cls, annotations: dict[str, str] | None) -> Publishers:
        """The creator (requested-by) and the surface's editors (publishers)."""
        users: list[str] = []
        creator = Requester.from_annotations(annotations)
        if creator is not None:
            users.append(creator.username)
        try:
            listed = json.loads((annotations or {}).get(PUBLISHERS_ANNOTATION) or "[]")
        except ValueError:
            listed = []
        if isinstance(listed, list):
            users += [str(user) for user in listed]
        return cls(tuple(dict.fromkeys(users)))


def updated_by(annotations: dict[str, str] | None, generation: int) -> Requester | None:
    """Who changed the spec to `generation`, if the webhook recorded that change."""
    raw = (annotations or {}).get(UPDATED_BY_ANNOTATION)
    requester = Requester.from_json(raw)
    try:
        recorded = int(json.loads(raw or "{}").get("generation", -1))
    except (ValueError, TypeError, AttributeError):
        return None
    return requester if recorded == generation else None


@dataclass(frozen=True)
class ApprovalRecord:
    name: str
    spec: PluginApprovalSpec
    requester: Requester | None
    created: datetime.datetime | None = None
    """metadata.creationTimestamp: a newer approval releases a quarantine that needs review, and
    approvals made before a rejection or revocation never count again."""
    deleting: bool = False
    """The decision is being deleted (its deletion waits for the operator's finalizer)."""
    withdrawn_by: Requester | None = None
    """Who deleted it, stamped by the admission webhook on DELETE."""
    finalizers: tuple[str, ...] = ()
    resource_version: str = ""
    verdict: tuple[str, str] | None = None
    """The (phase, message) its status shows now, so an unchanged verdict is not written again."""


def newest_approval(records: list[ApprovalRecord], digest: str) -> datetime.datetime | None:
    """When the newest approval of this digest was made: an approval after a quarantine that
    needs review releases it (breaker.step)."""
    times = [
        record.created
        for record in records
        if record.created is not None
        and record.spec.decision is Decision.APPROVE
        and record.spec.digest == digest
        and not record.deleting
    ]
    return max(times, default=None)


@dataclass(frozen=True)
class Artifact:
    """The exact thing being approved."""

    plugin: str
    plugin_id: str
    version: str
    digest: str


class ApprovalState(StrEnum):
    APPROVED = "Approved"
    AWAITING = "AwaitingApproval"
    REJECTED = "Rejected"
    REVOKED = "Revoked"


@dataclass(frozen=True)
class RecordVerdict:
    phase: ApprovalPhase
    message: str


@dataclass(frozen=True)
class ApprovalOutcome:
    state: ApprovalState
    message: str
    approvers: tuple[str, ...] = ()
    auto_approved_by: str | None = None
    records: dict[str, RecordVerdict] = field(default_factory=dict)
    decided_by: str | None = None
    """Who rejected or revoked (the audit entry's actor)."""
    surface_digest: str = ""
    """The digest of the surface the plugin declares now."""
    summaries: tuple[ApprovalSummary, ...] = ()
    """The decisions in force, with their reasons."""
    withdrawals: tuple[Withdrawal, ...] = ()
    """Every rejection and revocation seen, for the status (the operator's memory of them)."""
    carried_over: tuple[str, ...] = ()
    """When approvals of an earlier surface carry over: what the plugin gave up since."""
    grown: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Per approval that no longer counts because the surface grew: the grown powers."""
    earlier_surfaces: frozenset[str] = frozenset()
    """Digests of the surfaces approvals of this artifact were made for before it grew: one of
    them may keep serving while the grown surface awaits its approvals."""
    lifted: tuple[Withdrawal, ...] = ()
    """Withdrawals lifted in this evaluation (their PluginApproval is being deleted)."""
    releasable: tuple[str, ...] = ()
    """Deleted decisions whose finalizer may go once this outcome's status is written: their
    lift is recorded in it, or they never counted."""


@dataclass(frozen=True)
class Context:
    """What the gate decides from, besides the approvals."""

    namespace: str
    spec: PluginDescriptor
    publishers: Publishers
    policies: list[NamedPolicy]
    scan: ScanSummary | None = None
    withdrawals: tuple[Withdrawal, ...] = ()
    """From the Plugin's status: the rejections and revocations seen so far."""
    now: str = ""
    """RFC 3339, for a withdrawal lifted now."""

    @property
    def bind_configuration(self) -> bool:
        return any(policy.approval.bind_configuration for policy in self.policies)

    @property
    def approver_keys(self) -> list[TrustedKey]:
        return [key for policy in self.policies for key in policy.approval.approver_keys or []]

    @property
    def forbidding(self) -> list[str]:
        return [p.name for p in self.policies if not p.approval.allow_self_approval]


def _matches(spec: PluginApprovalSpec, artifact: Artifact) -> str | None:
    """None when the approval names exactly this artifact, else what differs."""
    for label, theirs, ours in (
        ("plugin id", spec.plugin_id, artifact.plugin_id),
        ("version", spec.version, artifact.version),
        ("digest", spec.digest, artifact.digest),
    ):
        if theirs != ours:
            return f"for {label} {theirs}, but the plugin now has {ours}"
    return None


def auto_approval(
    policy: NamedPolicy, spec: PluginDescriptor, scan: ScanSummary | None
) -> str | None:
    """The name of the first auto-approval rule of `policy` that holds, or None.

    A rule that fails to compile or evaluate (a missing field, a type error) does not approve.
    """
    rules = policy.approval.auto_approve or []
    if not rules:
        return None
    activation = {
        "plugin": json_to_cel(spec.model_dump(mode="json", exclude_none=True)),
        "scan": json_to_cel(scan.model_dump(mode="json", exclude_none=True) if scan else {}),
    }
    environment = Environment()
    for rule in rules:
        try:
            result: Any = environment.program(environment.compile(rule.expression)).evaluate(
                activation
            )
        except (CELParseError, CELEvalError, TypeError, ValueError):
            continue
        if isinstance(result, celtypes.BoolType | bool) and bool(result):
            return rule.name
    return None


def identity_of(record: ApprovalRecord, context: Context) -> tuple[str | None, str]:
    """Who made the decision, or None with why it names nobody."""
    requester = record.requester
    if requester is None:
        return None, "no identity stamped by the admission webhook; it does not count"
    if not requester.is_service_account:
        return requester.username, ""
    spec = record.spec
    fields = ApprovalFields(
        namespace=context.namespace,
        plugin=spec.plugin,
        plugin_id=spec.plugin_id,
        version=spec.version,
        digest=spec.digest,
        surface_digest=spec.surface_digest or "",
        decision=spec.decision.value,
        reason=spec.reason or "",
    )
    verdict = verify_approval(fields, spec.signature, context.approver_keys)
    if verdict.owner is None:
        return None, (
            f"created by the ServiceAccount {requester.username} with no valid approver "
            f"signature ({verdict.reason}); an approval from automation counts only when an "
            "approver's key signed it (approval.approverKeys)"
        )
    return verdict.owner, ""


def _stamp(moment: datetime.datetime | None) -> str:
    if moment is None:
        return ""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _withdrawals(
    records: list[tuple[ApprovalRecord, str]], context: Context
) -> tuple[list[Withdrawal], list[Withdrawal]]:
    """The withdrawals after this evaluation (the status's, plus decisions seen for the first
    time, with lifts recorded) and the ones lifted just now. Every Reject and Revoke of the
    plugin with an identity is one, for the artifact it names."""
    known = {(w.approval, w.at): w for w in context.withdrawals}
    lifted = []
    for record, identity in records:
        decision = record.spec.decision
        if decision not in WITHDRAWING or record.created is None:
            continue
        key = (record.name, _stamp(record.created))
        entry = known.get(key) or Withdrawal(
            approval=record.name,
            decision=decision,
            by=identity,
            at=_stamp(record.created),
            version=record.spec.version,
            digest=record.spec.digest,
        )
        if record.deleting and entry.lifted_by is None:
            lifter = record.withdrawn_by.username if record.withdrawn_by else "unknown"
            entry = entry.model_copy(update={"lifted_by": lifter, "lifted_at": context.now or None})
            lifted.append(entry)
        known[key] = entry
    ordered = sorted(known.values(), key=lambda w: (w.at, w.approval))
    return ordered[-WITHDRAWALS_KEPT:], lifted


def _voided(
    record: ApprovalRecord, identity: str, withdrawals: list[Withdrawal], artifact: Artifact
) -> str | None:
    """Why an approval no longer counts because of a rejection or revocation, or None."""
    for withdrawal in withdrawals:
        if withdrawal.digest != artifact.digest or withdrawal.version != artifact.version:
            continue
        if record.created is not None and record.created <= _parse(withdrawal.at):
            return (
                f"made before the {withdrawal.decision.value.lower()} by {withdrawal.by} "
                f"({withdrawal.approval}, {withdrawal.at}): approvals it overruled never count "
                "again; approve anew"
            )
        lifter = withdrawal.lifted_by
        if lifter is not None and lifter == identity and lifter != withdrawal.by:
            return (
                f"{identity} deleted the {withdrawal.decision.value.lower()} by {withdrawal.by} "
                f"({withdrawal.approval}) and cannot lift it alone: another approver must "
                "approve this artifact"
            )
    return None


@dataclass
class _Tally:
    verdicts: dict[str, RecordVerdict] = field(default_factory=dict)
    counted: dict[Decision, list[tuple[ApprovalRecord, str]]] = field(
        default_factory=lambda: {d: [] for d in Decision}
    )
    grown: dict[str, tuple[str, ...]] = field(default_factory=dict)
    earlier: set[str] = field(default_factory=set)
    carried: list[str] = field(default_factory=list)
    releasable: list[str] = field(default_factory=list)


def _classify(
    records: list[ApprovalRecord],
    artifact: Artifact,
    context: Context,
    current: ApprovedSurface,
) -> tuple[_Tally, list[Withdrawal], list[Withdrawal]]:
    tally = _Tally()
    known: list[tuple[ApprovalRecord, str]] = []
    matching: list[tuple[ApprovalRecord, str]] = []
    for record in sorted(records, key=lambda r: r.name):
        if record.spec.plugin != artifact.plugin:
            continue
        identity, why = identity_of(record, context)
        if identity is None:
            tally.verdicts[record.name] = RecordVerdict(ApprovalPhase.IGNORED, why)
            if record.deleting:
                tally.releasable.append(record.name)
            continue
        known.append((record, identity))
        differs = _matches(record.spec, artifact)
        if differs:
            tally.verdicts[record.name] = RecordVerdict(ApprovalPhase.STALE, f"stale: {differs}")
            continue
        matching.append((record, identity))
    withdrawals, lifted = _withdrawals(known, context)
    tally.releasable += [w.approval for w in withdrawals if w.lifted_by is not None]
    for record, identity in matching:
        decision = record.spec.decision
        verdict = _judge(record, identity, artifact, context, current, withdrawals, tally)
        if verdict is not None:
            tally.verdicts[record.name] = verdict
            continue
        tally.counted[decision].append((record, identity))
        tally.verdicts[record.name] = RecordVerdict(
            ApprovalPhase.IN_FORCE, f"{decision.value} by {identity}"
        )
    return tally, withdrawals, lifted


def _judge(  # noqa: PLR0917 - one record against every rule, all of them needed
    record: ApprovalRecord,
    identity: str,
    artifact: Artifact,
    context: Context,
    current: ApprovedSurface,
    withdrawals: list[Withdrawal],
    tally: _Tally,
) -> RecordVerdict | None:
    """Why a record naming this artifact does not count (None: it counts)."""
    if record.deleting:
        return RecordVerdict(ApprovalPhase.STALE, "being deleted: it no longer counts")
    if record.spec.decision is not Decision.APPROVE:
        return None
    approved = record.spec.surface
    if approved is None:
        return RecordVerdict(
            ApprovalPhase.IGNORED,
            "no approved surface recorded by the admission webhook; it does not count",
        )
    grown = surface.growth(approved, current)
    if grown:
        tally.grown[record.name] = tuple(grown)
        if _voided(record, identity, withdrawals, artifact) is None:
            tally.earlier.add(surface.digest(approved))
        return RecordVerdict(
            ApprovalPhase.STALE,
            f"stale: approved by {identity} for fewer powers; grown since: {'; '.join(grown)}",
        )
    voided = _voided(record, identity, withdrawals, artifact)
    if voided is not None:
        return RecordVerdict(ApprovalPhase.IGNORED, voided)
    if context.publishers.includes(identity) and context.forbidding:
        policy = context.forbidding[0]
        return RecordVerdict(
            ApprovalPhase.IGNORED,
            f"self-approval by {identity!r}, a publisher of this plugin (it created it or "
            f"changed its approved surface), is not allowed by policy {policy!r}",
        )
    if surface.digest(approved) != surface.digest(current):
        tally.carried += surface.shrinkage(approved, current)
    return None


def _summaries(tally: _Tally, current: str) -> tuple[ApprovalSummary, ...]:
    summaries = []
    for decision in Decision:
        for record, identity in tally.counted[decision]:
            approved = record.spec.surface
            carried = approved is not None and surface.digest(approved) != current
            summaries.append(
                ApprovalSummary(
                    approval=record.name,
                    approver=identity,
                    decision=decision,
                    reason=record.spec.reason,
                    carried_over=carried and decision is Decision.APPROVE,
                )
            )
    return tuple(summaries)


def decide(artifact: Artifact, records: list[ApprovalRecord], context: Context) -> ApprovalOutcome:
    """The Approved gate for `artifact` given every approval of the plugin and the policies."""
    spec = context.spec
    current = surface.surface_of(spec, bind_configuration=context.bind_configuration)
    current_digest = surface.digest(current)
    tally, withdrawals, lifted = _classify(records, artifact, context, current)
    common: dict[str, Any] = {
        "records": tally.verdicts,
        "surface_digest": current_digest,
        "summaries": _summaries(tally, current_digest),
        "withdrawals": tuple(withdrawals),
        "grown": tally.grown,
        "earlier_surfaces": frozenset(tally.earlier),
        "lifted": tuple(lifted),
        "releasable": tuple(sorted(set(tally.releasable))),
    }
    for state, decision, verb in (
        (ApprovalState.REVOKED, Decision.REVOKE, "revoked"),
        (ApprovalState.REJECTED, Decision.REJECT, "rejected"),
    ):
        if tally.counted[decision]:
            record, user = tally.counted[decision][0]
            because = f": {record.spec.reason}" if record.spec.reason else ""
            return ApprovalOutcome(
                state,
                f"{verb} by {user} (PluginApproval {record.name}){because}",
                decided_by=user,
                **common,
            )

    approvers = tuple(sorted({user for _, user in tally.counted[Decision.APPROVE]}))
    auto_by: str | None = None
    missing = []
    for policy in context.policies:
        rule = auto_approval(policy, spec, context.scan)
        if rule:
            auto_by = auto_by or f"{policy.name}/{rule}"
            continue
        needed = approvers_required(policy, spec)
        if len(approvers) < needed:
            missing.append(
                f"policy {policy.name!r} needs {needed} distinct approver(s), has {len(approvers)}"
            )
    if missing:
        who = f" (approved by {', '.join(approvers)})" if approvers else ""
        grown = sorted({power for powers in tally.grown.values() for power in powers})
        since = f"; the approved surface grew: {'; '.join(grown)}" if grown else ""
        return ApprovalOutcome(
            ApprovalState.AWAITING, "; ".join(missing) + who + since, approvers, **common
        )
    message = (
        f"approved by {', '.join(approvers)}" if approvers else f"auto-approved by rule {auto_by}"
    )
    carried = tuple(dict.fromkeys(tally.carried))
    if carried:
        message += f" (carried over to fewer powers: {'; '.join(carried)})"
    return ApprovalOutcome(
        ApprovalState.APPROVED, message, approvers, auto_by, carried_over=carried, **common
    )
