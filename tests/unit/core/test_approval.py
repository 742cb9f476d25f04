"""Approval counting, adversarially: forged identities, self-approval, digest swaps, stale and
duplicate approvals, reject and revoke, M-of-N, CEL auto-approval."""

from __future__ import annotations

import dataclasses
import datetime
import json

import pytest
from tests import documents as d
from tests.documents import mutated

from wayang_operator.api.descriptor import PluginDescriptor
from wayang_operator.api.resources import ApprovalPhase, PluginApprovalSpec, PluginPolicySpec
from wayang_operator.api.scan import ScanSummary
from wayang_operator.core.approval import (
    REQUESTER_ANNOTATION,
    ApprovalOutcome,
    ApprovalRecord,
    ApprovalState,
    Artifact,
    Requester,
    decide,
    newest_approval,
)
from wayang_operator.core.policy import NamedPolicy

SPEC = PluginDescriptor.model_validate(mutated(d.descriptor(), "capabilities", ["network"]))
ARTIFACT = Artifact("data-processor", SPEC.id, SPEC.version, SPEC.implementation.digest)
PUBLISHER = Requester("publisher-1", groups=("wayang:publishers",))


def policy(**spec: object) -> NamedPolicy:
    return NamedPolicy("p", PluginPolicySpec.model_validate(spec))


def record(
    name: str, user: str | None, decision: str = "Approve", **changes: str
) -> ApprovalRecord:
    spec = {
        "plugin": "data-processor",
        "pluginId": SPEC.id,
        "version": SPEC.version,
        "digest": SPEC.implementation.digest,
        "decision": decision,
        **changes,
    }
    return ApprovalRecord(
        name, PluginApprovalSpec.model_validate(spec), Requester(user) if user else None
    )


def run(
    records: list[ApprovalRecord],
    policies: list[NamedPolicy] | None = None,
    scan: ScanSummary | None = None,
) -> ApprovalOutcome:
    return decide(
        ARTIFACT,
        spec=SPEC,
        publisher=PUBLISHER,
        records=records,
        policies=policies or [policy()],
        scan=scan,
    )


def test_one_approval_approves_by_default() -> None:
    outcome = run([record("a", "approver-1")])
    assert outcome.state is ApprovalState.APPROVED
    assert outcome.approvers == ("approver-1",)
    assert outcome.records["a"].phase is ApprovalPhase.IN_FORCE


def test_nothing_means_awaiting() -> None:
    outcome = run([])
    assert outcome.state is ApprovalState.AWAITING
    assert "needs 1 distinct approver(s), has 0" in outcome.message


def test_typed_approver_field_without_stamped_identity_does_not_count() -> None:
    forged = ApprovalRecord(
        "forged",
        PluginApprovalSpec.model_validate(
            {
                **record("x", None).spec.model_dump(by_alias=True),
                "approver": {"username": "cluster-admin"},
            }
        ),
        None,
    )
    outcome = run([forged])
    assert outcome.state is ApprovalState.AWAITING
    assert outcome.records["forged"].phase is ApprovalPhase.IGNORED


def test_requester_comes_only_from_the_annotation() -> None:
    stamped = {
        REQUESTER_ANNOTATION: json.dumps({"username": "approver-1", "uid": "u1", "groups": ["g"]})
    }
    assert Requester.from_annotations(stamped) == Requester("approver-1", "u1", ("g",))
    for broken in ({}, {REQUESTER_ANNOTATION: "not json"}, {REQUESTER_ANNOTATION: '{"uid": "x"}'}):
        assert Requester.from_annotations(broken) is None


def test_self_approval_is_refused_unless_policy_allows_it() -> None:
    outcome = run([record("self", "publisher-1")])
    assert outcome.state is ApprovalState.AWAITING
    assert "self-approval" in outcome.records["self"].message
    allowed = run([record("self", "publisher-1")], [policy(approval={"allowSelfApproval": True})])
    assert allowed.state is ApprovalState.APPROVED


@pytest.mark.parametrize(
    ("field", "value"),
    [("digest", "sha256:" + "00" * 32), ("version", "1.2.1"), ("pluginId", "com.example/other")],
)
def test_an_approval_for_other_bytes_is_stale(field: str, value: str) -> None:
    outcome = run([record("old", "approver-1", **{field: value})])
    assert outcome.state is ApprovalState.AWAITING
    assert outcome.records["old"].phase is ApprovalPhase.STALE


def test_approvals_for_other_plugins_are_not_this_plugins_business() -> None:
    outcome = run([record("x", "approver-1", plugin="another")])
    assert outcome.state is ApprovalState.AWAITING
    assert "x" not in outcome.records


def test_m_of_n_counts_distinct_users() -> None:
    two = [policy(approval={"requirements": [{"capability": "network", "approvers": 2}]})]
    same_user_twice = run([record("a", "approver-1"), record("b", "approver-1")], two)
    assert same_user_twice.state is ApprovalState.AWAITING
    assert "needs 2 distinct approver(s), has 1" in same_user_twice.message
    both = run([record("a", "approver-1"), record("b", "approver-2")], two)
    assert both.state is ApprovalState.APPROVED
    assert both.approvers == ("approver-1", "approver-2")


def test_requirements_match_sandbox_capability_and_category() -> None:
    strict = policy(
        approval={
            "requirements": [
                {"sandboxLevel": "untrusted", "approvers": 3},
                {"category": "security", "approvers": 3},
                {"sandboxLevel": "semi-trusted", "approvers": 2},
            ]
        }
    )
    outcome = run([record("a", "approver-1")], [strict])
    assert "needs 2" in outcome.message


def test_every_policy_must_be_satisfied() -> None:
    lenient, strict = (
        policy(),
        NamedPolicy(
            "strict",
            PluginPolicySpec.model_validate({"approval": {"requirements": [{"approvers": 2}]}}),
        ),
    )
    outcome = run([record("a", "approver-1")], [lenient, strict])
    assert outcome.state is ApprovalState.AWAITING
    assert "'strict'" in outcome.message


def test_reject_wins_and_revoke_withdraws() -> None:
    rejected = run(
        [record("a", "approver-1"), record("b", "approver-2"), record("no", "approver-3", "Reject")]
    )
    assert rejected.state is ApprovalState.REJECTED
    assert "approver-3" in rejected.message
    revoked = run([record("a", "approver-1"), record("r", "approver-2", "Revoke")])
    assert revoked.state is ApprovalState.REVOKED
    stale_revoke = run(
        [record("a", "approver-1"), record("r", "approver-2", "Revoke", version="0.9.0")]
    )
    assert stale_revoke.state is ApprovalState.APPROVED


def test_cel_auto_approval_sees_plugin_and_scan() -> None:
    auto = policy(
        approval={
            "autoApprove": [
                {"name": "broken", "expression": "plugin.nothing.here == 1"},
                {"name": "syntax", "expression": "plugin.("},
                {
                    "name": "clean",
                    "expression": "plugin.sandboxLevel == 'semi-trusted'"
                    " && scan.criticalCount == 0",
                },
            ]
        }
    )
    outcome = run([], [auto], ScanSummary(critical_count=0))
    assert outcome.state is ApprovalState.APPROVED
    assert outcome.auto_approved_by == "p/clean"
    assert run([], [auto], ScanSummary(critical_count=2)).state is ApprovalState.AWAITING
    assert run([], [auto], None).state is ApprovalState.AWAITING


def test_the_newest_approval_of_the_digest_is_what_releases_a_quarantine() -> None:
    def made(name: str, hour: int, decision: str = "Approve", **changes: str) -> ApprovalRecord:
        created = datetime.datetime(2026, 11, 22, hour, tzinfo=datetime.UTC)
        return dataclasses.replace(record(name, "approver-1", decision, **changes), created=created)

    digest = SPEC.implementation.digest
    assert newest_approval([], digest) is None
    records = [
        made("old", 9),
        made("new", 11),
        made("revoke", 12, "Revoke"),
        made("other-digest", 13, digest="sha256:" + "c" * 64),
    ]
    newest = newest_approval(records, digest)
    assert newest is not None
    assert newest.hour == 11, "only approvals, and only of this digest"
