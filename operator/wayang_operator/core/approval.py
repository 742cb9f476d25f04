"""The Approved gate: which PluginApprovals count for one exact artifact, and whether they suffice.

Only approvals whose identity was stamped by the admission webhook count (a typed `spec.approver`
proves nothing), and only for exactly the plugin, id, version and digest they name: an approval
never carries over to other bytes. A Revoke for the artifact withdraws everything and stays in
force until it is deleted; otherwise a Reject wins over any number of Approves. Approvals are
counted by distinct user name. Each applicable policy must be satisfied on its own, either by
enough distinct approvers or by one of its CEL auto-approval rules.
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
from ..api.resources import ApprovalPhase, Decision, PluginApprovalSpec
from ..api.scan import ScanSummary
from .policy import NamedPolicy, approvers_required

REQUESTER_ANNOTATION = "wayang.io/requested-by"
"""Set by the mutating webhook on create from the admission request's userInfo; users cannot."""


@dataclass(frozen=True)
class Requester:
    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()

    @classmethod
    def from_annotations(cls, annotations: dict[str, str] | None) -> Requester | None:
        raw = (annotations or {}).get(REQUESTER_ANNOTATION)
        if not raw:
            return None
        try:
            data = json.loads(raw)
            return cls(
                str(data["username"]), str(data.get("uid", "")), tuple(data.get("groups", ()))
            )
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class ApprovalRecord:
    name: str
    spec: PluginApprovalSpec
    requester: Requester | None
    created: datetime.datetime | None = None
    """metadata.creationTimestamp: a newer approval releases a quarantine that needs review."""


def newest_approval(records: list[ApprovalRecord], digest: str) -> datetime.datetime | None:
    """When the newest approval of this digest was made: an approval after a quarantine that
    needs review releases it (breaker.step)."""
    times = [
        record.created
        for record in records
        if record.created is not None
        and record.spec.decision is Decision.APPROVE
        and record.spec.digest == digest
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


def _classify(
    records: list[ApprovalRecord],
    artifact: Artifact,
    publisher: Requester | None,
    forbidding: list[str],
) -> tuple[dict[str, RecordVerdict], dict[Decision, list[tuple[str, str]]]]:
    """A verdict per record of this plugin, and the (name, user) pairs that count, by decision."""
    verdicts: dict[str, RecordVerdict] = {}
    counted: dict[Decision, list[tuple[str, str]]] = {d: [] for d in Decision}
    for record in sorted(records, key=lambda r: r.name):
        if record.spec.plugin != artifact.plugin:
            continue
        if record.requester is None:
            verdicts[record.name] = RecordVerdict(
                ApprovalPhase.IGNORED,
                "no identity stamped by the admission webhook; it does not count",
            )
            continue
        differs = _matches(record.spec, artifact)
        if differs:
            verdicts[record.name] = RecordVerdict(ApprovalPhase.STALE, f"stale: {differs}")
            continue
        user = record.requester.username
        is_self = publisher is not None and user == publisher.username
        if record.spec.decision is Decision.APPROVE and is_self and forbidding:
            policy = forbidding[0]
            message = f"self-approval by the publisher {user!r} is not allowed by policy {policy!r}"
            verdicts[record.name] = RecordVerdict(ApprovalPhase.IGNORED, message)
            continue
        counted[record.spec.decision].append((record.name, user))
        verdicts[record.name] = RecordVerdict(
            ApprovalPhase.IN_FORCE, f"{record.spec.decision.value} by {user}"
        )
    return verdicts, counted


def decide(
    artifact: Artifact,
    *,
    spec: PluginDescriptor,
    publisher: Requester | None,
    records: list[ApprovalRecord],
    policies: list[NamedPolicy],
    scan: ScanSummary | None = None,
) -> ApprovalOutcome:
    """The Approved gate for `artifact` given every approval of the plugin and the policies."""
    forbidding = [p.name for p in policies if not p.approval.allow_self_approval]
    verdicts, counted = _classify(records, artifact, publisher, forbidding)
    if counted[Decision.REVOKE]:
        name, user = counted[Decision.REVOKE][0]
        return ApprovalOutcome(
            ApprovalState.REVOKED,
            f"revoked by {user} (PluginApproval {name})",
            records=verdicts,
            decided_by=user,
        )
    if counted[Decision.REJECT]:
        name, user = counted[Decision.REJECT][0]
        return ApprovalOutcome(
            ApprovalState.REJECTED,
            f"rejected by {user} (PluginApproval {name})",
            records=verdicts,
            decided_by=user,
        )

    approvers = tuple(sorted({user for _, user in counted[Decision.APPROVE]}))
    auto_by: str | None = None
    missing = []
    for policy in policies:
        rule = auto_approval(policy, spec, scan)
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
        return ApprovalOutcome(
            ApprovalState.AWAITING, "; ".join(missing) + who, approvers, records=verdicts
        )
    if approvers:
        message = f"approved by {', '.join(approvers)}"
    else:
        message = f"auto-approved by rule {auto_by}"
    return ApprovalOutcome(ApprovalState.APPROVED, message, approvers, auto_by, verdicts)
