"""The whole pipeline for one plugin generation: conditions, phase, review status, errors and the
audit decisions that changed."""

from __future__ import annotations

import dataclasses
from typing import Any

from tests import documents as d
from tests.documents import mutated
from tests.unit.core.test_approval import record, stamped

from wayang_operator.api.audit import AuditEventType
from wayang_operator.api.descriptor import PluginDescriptor
from wayang_operator.api.errors import ErrorType
from wayang_operator.api.resources import KeyAlgorithm, PluginPhase, PluginPolicySpec, ReviewStatus
from wayang_operator.core import signing
from wayang_operator.core.approval import Publishers
from wayang_operator.core.dependencies import Candidate
from wayang_operator.core.pipeline import Evaluation, Facts, ScanFacts, evaluate
from wayang_operator.core.policy import NamedPolicy

NOW = "2026-11-22T10:00:00Z"
LATER = "2026-11-22T11:00:00Z"
KEY = signing.generate(KeyAlgorithm.ED25519)
TRUSTED = {"name": "release", "algorithm": "ed25519", "publicKey": signing.public_pem(KEY).decode()}
RELAXED = NamedPolicy(
    "relaxed",
    PluginPolicySpec.model_validate({"signing": {"required": False}, "scan": {"required": False}}),
)


def signed_spec(**changes: Any) -> dict[str, Any]:
    document = d.descriptor()
    for path, value in changes.items():
        document = mutated(document, path, value)
    spec = PluginDescriptor.model_validate(document)
    document["signature"] = signing.sign(spec, KEY, "release")
    return document


def facts(spec: dict[str, Any] | None = None, **changes: Any) -> Facts:
    """The facts of the plugin `spec`; approvals without a surface approved this spec as it is
    (the webhook stamps the live Plugin's surface on each)."""
    base = Facts(
        name="data-processor",
        namespace="team-a",
        generation=1,
        spec=spec or d.descriptor(),
        publishers=Publishers(("publisher-1",)),
        policies=[RELAXED],
    )
    made = Facts(**{**base.__dict__, **changes})
    parsed = PluginDescriptor.model_validate(made.spec) if made.approvals else None
    if parsed is None:
        return made
    return dataclasses.replace(made, approvals=stamped(made.approvals, parsed))


def status(evaluation: Evaluation) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status.value, c.reason) for c in evaluation.conditions}


def test_a_new_plugin_awaits_approval_and_says_why() -> None:
    result = evaluate(facts(), NOW)
    assert result.phase is PluginPhase.AWAITING_APPROVAL
    assert result.review_status is ReviewStatus.PENDING
    assert status(result)["Approved"] == ("False", "AwaitingApproval")
    ready = next(c for c in result.conditions if c.type == "Ready")
    assert ready.message.startswith("Approved: policy 'relaxed' needs 1 distinct approver(s)")
    assert result.last_error is None
    assert all(c.observed_generation == 1 for c in result.conditions)


def test_approved_plugin_is_ready_and_the_decision_is_audited_once() -> None:
    first = evaluate(facts(approvals=[record("a", "approver-1")]), NOW)
    assert first.phase is PluginPhase.READY
    assert first.review_status is ReviewStatus.APPROVED
    assert [decision.kind for decision in first.decisions] == [
        AuditEventType.REGISTERED,
        AuditEventType.APPROVED,
    ]
    again = evaluate(facts(approvals=[record("a", "approver-1")], previous=first.conditions), LATER)
    assert again.decisions == [], "re-evaluating an unchanged plugin decides nothing twice"
    assert {c.last_transition_time for c in again.conditions} == {NOW}


def test_invalid_spec_stops_the_pipeline_with_a_validation_error() -> None:
    spec = mutated(d.descriptor(), "inputs", [{"name": "x", "schema": 5}])
    result = evaluate(facts(spec), NOW)
    assert result.phase is PluginPhase.INVALID
    assert status(result)["SignatureVerified"] == ("Unknown", "NotEvaluated")
    assert result.last_error is not None
    assert result.last_error.type == "ValidationError"
    assert "spec.inputs[0].schema" in result.last_error.message


def test_signatures_required_by_policy() -> None:
    strict = NamedPolicy(
        "strict",
        PluginPolicySpec.model_validate(
            {"signing": {"trustedKeys": [TRUSTED]}, "scan": {"required": False}}
        ),
    )
    unsigned = evaluate(facts(policies=[strict]), NOW)
    assert unsigned.phase is PluginPhase.BLOCKED
    assert status(unsigned)["SignatureVerified"] == ("False", "SignatureInvalid")
    assert unsigned.last_error is not None
    assert unsigned.last_error.type == "SecurityError"
    good = evaluate(
        facts(signed_spec(), policies=[strict], approvals=[record("a", "approver-1")]), NOW
    )
    assert good.phase is PluginPhase.READY
    swapped = mutated(signed_spec(), "implementation.digest", "sha256:" + "99" * 32)
    assert evaluate(facts(swapped, policies=[strict]), NOW).phase is PluginPhase.BLOCKED


def test_unlisted_registry_is_blocked_with_the_reason() -> None:
    only_local = NamedPolicy(
        "local",
        PluginPolicySpec.model_validate(
            {
                "allowedRegistries": ["localhost/"],
                "signing": {"required": False},
                "scan": {"required": False},
            }
        ),
    )
    result = evaluate(facts(policies=[only_local]), NOW)
    assert status(result)["SignatureVerified"] == ("False", "RegistryNotAllowed")
    assert "localhost/" in next(
        c.message for c in result.conditions if c.type == "SignatureVerified"
    )


def test_scan_gate_waits_then_passes_or_blocks() -> None:
    scanning = NamedPolicy(
        "scan", PluginPolicySpec.model_validate({"signing": {"required": False}})
    )
    pending = evaluate(facts(policies=[scanning], approvals=[record("a", "approver-1")]), NOW)
    assert pending.phase is PluginPhase.SCANNING
    assert pending.review_status is ReviewStatus.SCANNING
    failed = evaluate(
        facts(policies=[scanning], scan=ScanFacts(False, "CVE-2026-1 (CRITICAL) in openssl")), NOW
    )
    assert failed.phase is PluginPhase.BLOCKED
    passed = evaluate(
        facts(
            policies=[scanning],
            scan=ScanFacts(True, "clean"),
            approvals=[record("a", "approver-1")],
        ),
        NOW,
    )
    assert passed.phase is PluginPhase.READY
    assert AuditEventType.SCANNED in [decision.kind for decision in passed.decisions]
    assert [decision.kind for decision in failed.decisions] == [
        AuditEventType.REGISTERED,
        AuditEventType.SCANNED,
    ]
    assert failed.last_error is not None
    assert failed.last_error.type is ErrorType.SECURITY_ERROR


def test_a_scan_that_could_not_run_keeps_its_error_type() -> None:
    scanning = NamedPolicy(
        "scan", PluginPolicySpec.model_validate({"signing": {"required": False}})
    )
    broken = ScanFacts(
        False, "the scan failed: trivy did not finish", error=ErrorType.TIMEOUT, failed=True
    )
    result = evaluate(facts(policies=[scanning], scan=broken), NOW)
    assert result.phase is PluginPhase.BLOCKED
    scanned = next(c for c in result.conditions if c.type == "Scanned")
    assert scanned.reason == "ScanError"
    assert result.last_error is not None
    assert result.last_error.type is ErrorType.TIMEOUT
    assert [decision.kind for decision in result.decisions] == [
        AuditEventType.REGISTERED,
        AuditEventType.ERROR,
    ]


def test_digest_change_after_approval_drops_back_to_awaiting() -> None:
    approved = evaluate(facts(approvals=[record("a", "approver-1")]), NOW)
    swapped = mutated(d.descriptor(), "implementation.digest", "sha256:" + "77" * 32)
    after = evaluate(
        facts(
            swapped,
            generation=2,
            approvals=[record("a", "approver-1")],
            previous=approved.conditions,
        ),
        LATER,
    )
    assert after.phase is PluginPhase.AWAITING_APPROVAL
    assert after.approval is not None
    assert after.approval.records["a"].phase.value == "Stale"


def test_revoke_and_reject() -> None:
    approved = evaluate(facts(approvals=[record("a", "approver-1")]), NOW)
    revoked = evaluate(
        facts(
            approvals=[record("a", "approver-1"), record("r", "approver-2", "Revoke")],
            previous=approved.conditions,
        ),
        LATER,
    )
    assert revoked.phase is PluginPhase.REVOKED
    assert revoked.review_status is ReviewStatus.REVOKED
    assert [decision.kind for decision in revoked.decisions] == [AuditEventType.REVOKED]
    rejected = evaluate(facts(approvals=[record("n", "approver-2", "Reject")]), NOW)
    assert rejected.phase is PluginPhase.REJECTED


def test_dependencies_wait_and_cycles_are_reported() -> None:
    needs = mutated(d.descriptor(), "requires", ["security.jwt"])
    waiting = evaluate(facts(needs, approvals=[record("a", "approver-1")]), NOW)
    assert waiting.phase is PluginPhase.UNRESOLVED
    provider = Candidate(
        "jwt",
        PluginDescriptor.model_validate(
            mutated(mutated(d.descriptor(), "id", "acme/jwt"), "provides", ["security.jwt"])
        ),
    )
    resolved = evaluate(
        facts(
            needs,
            approvals=[record("a", "approver-1")],
            active=[provider],
            namespace_plugins=[provider],
        ),
        NOW,
    )
    assert resolved.phase is PluginPhase.READY
    cyclic = Candidate(
        "jwt",
        PluginDescriptor.model_validate(
            mutated(
                mutated(mutated(d.descriptor(), "id", "acme/jwt"), "provides", ["security.jwt"]),
                "requires",
                ["node.data.clean"],
            )
        ),
    )
    mine = mutated(needs, "provides", ["node.data.clean"])
    cycle = evaluate(facts(mine, namespace_plugins=[cyclic]), NOW)
    assert status(cycle)["DependenciesResolved"] == ("False", "DependencyCycle")
    assert "data-processor -> jwt -> data-processor" in next(
        c.message for c in cycle.conditions if c.type == "DependenciesResolved"
    )


def test_disabled_plugins_are_not_ready() -> None:
    spec = mutated(d.descriptor(), "enabled", False)
    result = evaluate(facts(spec, approvals=[record("a", "approver-1")]), NOW)
    assert result.phase is PluginPhase.DISABLED
    assert status(result)["Ready"] == ("False", "Disabled")


def test_a_new_generation_is_recorded_as_an_update() -> None:
    first = evaluate(facts(approvals=[record("a", "approver-1")]), NOW)
    changed = facts(approvals=[record("a", "approver-1")], previous=first.conditions)
    second = evaluate(dataclasses.replace(changed, generation=2), LATER)
    assert ("generation 2 registered", AuditEventType.UPDATED) in [
        (decision.message, decision.kind) for decision in second.decisions
    ]
    assert AuditEventType.REGISTERED not in [decision.kind for decision in second.decisions]


def test_an_error_decision_carries_the_seeds_error_payload_and_a_signature_its_key() -> None:
    strict = NamedPolicy(
        "strict",
        PluginPolicySpec.model_validate({"signing": {"required": True, "trustedKeys": [TRUSTED]}}),
    )
    unsigned = evaluate(facts(policies=[strict]), NOW)
    [error] = [d for d in unsigned.decisions if d.kind is AuditEventType.ERROR]
    assert error.error is not None
    assert error.error.type is ErrorType.SECURITY_ERROR
    assert (error.error.details or {})["reason"] == "SignatureInvalid"
    signed = evaluate(facts(signed_spec(), policies=[strict]), NOW)
    assert signed.signature is not None
    assert (signed.signature.key, signed.signature.payload_version) == ("release", 2)
    assert signed.signature.fingerprint == signing.fingerprint(KEY.public_key())


def test_a_registry_the_policy_refuses_is_not_scanned() -> None:
    fenced = NamedPolicy(
        "fenced",
        PluginPolicySpec.model_validate(
            {"signing": {"required": False}, "allowedRegistries": ["registry.example.com/"]}
        ),
    )
    result = evaluate(facts(policies=[fenced]), NOW)
    assert status(result)["SignatureVerified"] == ("False", "RegistryNotAllowed")
    assert status(result)["Scanned"] == ("Unknown", "NotEvaluated"), "nothing is fetched"
