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
from wayang_operator.api.resources import (
    ApprovalPhase,
    KeyAlgorithm,
    PluginApprovalSpec,
    PluginPolicySpec,
)
from wayang_operator.api.scan import ScanSummary
from wayang_operator.core import signing
from wayang_operator.core.approval import (
    REQUESTER_ANNOTATION,
    ApprovalOutcome,
    ApprovalRecord,
    ApprovalState,
    Artifact,
    Context,
    Publishers,
    Requester,
    decide,
    newest_approval,
)
from wayang_operator.core.policy import NamedPolicy
from wayang_operator.core.surface import surface_of

SPEC = PluginDescriptor.model_validate(mutated(d.descriptor(), "capabilities", ["network"]))
ARTIFACT = Artifact("data-processor", SPEC.id, SPEC.version, SPEC.implementation.digest)
PUBLISHERS = Publishers(("publisher-1",))


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


def stamped(records: list[ApprovalRecord], spec: PluginDescriptor) -> list[ApprovalRecord]:
    """The records as the admission webhook stores them: each carries the surface of the spec
    it approved (here `spec`, unless the test gave one)."""
    powers = surface_of(spec)
    return [
        r
        if r.spec.surface is not None
        else dataclasses.replace(r, spec=r.spec.model_copy(update={"surface": powers}))
        for r in records
    ]


def run(
    records: list[ApprovalRecord],
    policies: list[NamedPolicy] | None = None,
    scan: ScanSummary | None = None,
    spec: PluginDescriptor = SPEC,
    **context: object,
) -> ApprovalOutcome:
    values: dict[str, object] = {
        "namespace": "team-a",
        "spec": spec,
        "publishers": PUBLISHERS,
        "policies": policies or [policy()],
        "scan": scan,
        **context,
    }
    return decide(ARTIFACT, stamped(records, SPEC), Context(**values))  # type: ignore[arg-type]


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


# ------------------------------------------------------------------------------------------------
# The approved surface, withdrawals that cannot be quietly undone, publishers, GitOps signatures

T = datetime.datetime(2026, 11, 22, 10, tzinfo=datetime.UTC)


def at(hour: int, item: ApprovalRecord, **more: object) -> ApprovalRecord:
    created = T.replace(hour=hour)
    return dataclasses.replace(item, created=created, **more)  # type: ignore[arg-type]


def test_an_approval_does_not_cover_powers_added_after_it() -> None:
    grown = PluginDescriptor.model_validate(
        mutated(mutated(SPEC.model_dump(by_alias=True), "sandboxLevel", "trusted"),
                "requiredSecrets", ["db/admin"])
    )  # fmt: skip
    outcome = run([record("a", "approver-1")], spec=grown)
    assert outcome.state is ApprovalState.AWAITING
    assert outcome.records["a"].phase is ApprovalPhase.STALE
    assert outcome.grown["a"] == (
        "sandboxLevel semi-trusted → trusted",
        "requiredSecrets db/admin added",
    )
    assert "the approved surface grew: requiredSecrets db/admin added" in outcome.message
    assert outcome.earlier_surfaces, "the approved surface may keep serving meanwhile"


def test_fewer_powers_carry_the_approval_over() -> None:
    smaller = PluginDescriptor.model_validate(
        mutated(SPEC.model_dump(by_alias=True), "capabilities", [])
    )
    outcome = run([record("a", "approver-1")], spec=smaller)
    assert outcome.state is ApprovalState.APPROVED
    assert outcome.carried_over == ("capability network removed",)
    assert "carried over to fewer powers" in outcome.message
    assert outcome.summaries[0].carried_over


def test_a_revoke_holds_whatever_the_surface_and_deleting_it_revives_nothing() -> None:
    approve = at(9, record("a", "approver-1"))
    revoke = at(10, record("r", "approver-2", "Revoke", reason="leaks data"))
    revoked = run([approve, revoke])
    assert revoked.state is ApprovalState.REVOKED
    assert revoked.message.endswith(": leaks data")
    (withdrawal,) = revoked.withdrawals
    assert (withdrawal.by, withdrawal.approval, withdrawal.lifted_by) == ("approver-2", "r", None)
    lifting = dataclasses.replace(revoke, deleting=True, withdrawn_by=Requester("approver-1"))
    lifted = run([approve, lifting], withdrawals=revoked.withdrawals, now="2026-11-22T11:00:00Z")
    assert lifted.lifted[0].lifted_by == "approver-1"
    assert lifted.releasable == ("r",)
    assert lifted.state is ApprovalState.AWAITING, "the approval made before it stays void"
    assert "made before the revoke by approver-2" in lifted.records["a"].message
    # approver-1 lifted approver-2's revocation: their own fresh approval does not lift it
    after = run([at(12, record("a2", "approver-1"))], withdrawals=lifted.withdrawals)
    assert after.state is ApprovalState.AWAITING
    assert "cannot lift it alone" in after.records["a2"].message
    other = run([at(12, record("a3", "approver-3"))], withdrawals=lifted.withdrawals)
    assert other.state is ApprovalState.APPROVED
    own = dataclasses.replace(lifting, withdrawn_by=Requester("approver-2"))
    by_revoker = run([approve, own], withdrawals=revoked.withdrawals, now="2026-11-22T11:00:00Z")
    again = run([at(12, record("a4", "approver-2"))], withdrawals=by_revoker.withdrawals)
    assert again.state is ApprovalState.APPROVED, "who revoked may change their mind"


def test_a_withdrawal_binds_its_own_artifact_only() -> None:
    old = at(10, record("r", "approver-2", "Revoke", version="1.1.0"))
    outcome = run([at(9, record("a", "approver-1")), old])
    assert outcome.state is ApprovalState.APPROVED
    assert outcome.withdrawals[0].version == "1.1.0", "remembered for the version it named"


def test_everyone_who_changed_the_surface_is_a_publisher() -> None:
    editors = Publishers(("publisher-1", "approver-1"))
    outcome = run([record("a", "approver-1")], publishers=editors)
    assert outcome.state is ApprovalState.AWAITING
    assert "a publisher of this plugin" in outcome.records["a"].message
    signed_by_owner = Publishers(("argocd",), key_owner="alice")
    assert (
        "self-approval"
        in run([record("b", "alice")], publishers=signed_by_owner).records["b"].message
    )


GITOPS = Requester("system:serviceaccount:argocd:argocd-application-controller")


def approver_keys() -> tuple[signing.PrivateKey, dict[str, str]]:
    key = signing.generate(KeyAlgorithm.ED25519)
    entry = {
        "name": "alice-2026",
        "algorithm": "ed25519",
        "publicKey": signing.public_pem(key).decode(),
        "owner": "alice",
    }
    return key, entry


def signed_record(key: signing.PrivateKey, name: str = "git", **spec: object) -> ApprovalRecord:
    base = record(name, None)
    fields = signing.ApprovalFields(
        namespace="team-a",
        plugin=base.spec.plugin,
        plugin_id=base.spec.plugin_id,
        version=base.spec.version,
        digest=base.spec.digest,
        surface_digest=str(spec.get("surfaceDigest", "")),
        decision="Approve",
    )
    signature = signing.sign_bytes(fields.payload(), key, "alice-2026")
    updated = base.spec.model_copy(update={"signature": signature, **spec})
    return dataclasses.replace(base, spec=updated, requester=GITOPS)


def test_an_approval_from_automation_counts_only_with_an_approver_signature() -> None:
    key, entry = approver_keys()
    keys = policy(approval={"approverKeys": [entry]})
    unsigned = dataclasses.replace(record("git", None), requester=GITOPS)
    outcome = run([unsigned], [keys])
    assert outcome.state is ApprovalState.AWAITING
    assert outcome.records["git"].phase is ApprovalPhase.IGNORED
    assert "no valid approver signature" in outcome.records["git"].message
    counted = run([signed_record(key)], [keys])
    assert counted.state is ApprovalState.APPROVED
    assert counted.approvers == ("alice",), "counted for the key's owner"
    forged = signed_record(signing.generate(KeyAlgorithm.ED25519))
    assert run([forged], [keys]).state is ApprovalState.AWAITING
    replayed = signed_record(key, reason="edited after signing")
    assert run([replayed], [keys]).state is ApprovalState.AWAITING, "the reason is signed too"
    elsewhere = run([signed_record(key)], [keys], namespace="team-b")
    assert elsewhere.state is ApprovalState.AWAITING, "the namespace is signed too"
