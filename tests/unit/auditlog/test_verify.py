"""Verification against every kind of tampering, on logs built in memory (the stores' own tests
repeat the attacks on ConfigMaps and PostgreSQL)."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from wayang_operator.api.audit import Actor, ActorType, AuditEventType, PluginAuditEvent
from wayang_operator.auditlog.keys import Signer
from wayang_operator.auditlog.log import LogState, canonical, chain_hash, hash_bytes, hash_text
from wayang_operator.auditlog.verify import Kind, Snapshot, verify

ORIGIN = "wayang.io/audit/test-cluster"
SIGNER = Signer(Ed25519PrivateKey.generate(), ORIGIN)


def event(number: int, tenant: str = "team-a") -> PluginAuditEvent:
    return PluginAuditEvent(
        audit_id=str(uuid.UUID(int=number + 1)),
        event_type=AuditEventType.APPROVED,
        plugin_id="acme/redactor",
        version="1.0.0",
        tenant_id=tenant,
        actor=Actor(type=ActorType.USER, id=f"approver-{number}"),
        timestamp=f"2026-11-22T10:{number // 60 % 60:02d}:{number % 60:02d}Z",
        details={"plugin": "redactor", "message": f"decision {number}"},
    )


class Log:
    """A log written the way the stores write it, with a checkpoint per `seal` entries."""

    def __init__(self, count: int, seal: int = 10, tenant: str = "team-a") -> None:
        self.state = LogState()
        self.records: list[dict[str, Any]] = []
        self.sealed: list[str] = []
        self.notes: list[str] = [SIGNER.sign(0, self.state.frontier.root())]
        for start in range(0, count, seal):
            batch = [event(n, tenant) for n in range(start, min(count, start + seal))]
            records, frontier = self.state.prepare(batch)
            self.state.commit(records, frontier)
            self.records += records
            self.notes.append(SIGNER.sign(self.state.size, frontier.root()))
            self.sealed.append(self.notes[-1])

    def snapshot(
        self, records: list[dict[str, Any]] | None = None, checkpoint: str | None = None
    ) -> Snapshot:
        return Snapshot(
            records=self.records if records is None else records,
            checkpoint=self.notes[-1] if checkpoint is None else checkpoint,
            sealed=self.sealed,
        )


def kinds(snapshot: Snapshot, trusted: str | None = None) -> list[tuple[Kind, int | None]]:
    return [(f.kind, f.index) for f in verify(snapshot, SIGNER.verifier, trusted).findings]


def test_an_untouched_log_verifies() -> None:
    log = Log(35)
    report = verify(log.snapshot(), SIGNER.verifier, trusted=log.notes[2])
    assert report.ok, report.findings
    assert report.size == 35
    assert verify(Log(0).snapshot(), SIGNER.verifier).ok


def test_appends_are_idempotent_by_audit_id() -> None:
    log = Log(5)
    records, _ = log.state.prepare([event(3), event(4), event(5), event(5)])
    assert [r["entry"]["auditId"] for r in records] == [str(uuid.UUID(int=6))]


def test_an_edited_field_is_found_at_its_entry() -> None:
    log = Log(30)
    records = copy.deepcopy(log.records)
    records[17]["entry"]["actor"]["id"] = "mallory"
    assert kinds(log.snapshot(records)) == [(Kind.MODIFIED, 17)]


def test_an_edit_with_recomputed_hashes_is_caught_by_the_signed_checkpoint() -> None:
    log = Log(30)
    records = copy.deepcopy(log.records)
    records[17]["entry"]["details"]["message"] = "approved by nobody"
    previous = hash_bytes(records[16]["entry"]["hash"])
    for record in records[17:]:  # the attacker rebuilds the chain, but cannot sign
        record["prev"] = previous.hex()
        digest = chain_hash(previous, record["entry"])
        record["entry"]["hash"] = hash_text(digest)
        previous = digest
    found = verify(log.snapshot(records), SIGNER.verifier).findings
    assert [(f.kind, f.index) for f in found] == [(Kind.MODIFIED, 10)]  # sealed at 10, 20, 30
    assert "rewritten at or after entry 10" in found[0].message


def test_deleted_entries_are_named() -> None:
    log = Log(30)
    records = log.records[:10] + log.records[20:]  # a whole segment gone
    found = verify(log.snapshot(records), SIGNER.verifier).findings
    assert found[0].kind is Kind.DELETED
    assert found[0].index == 10
    assert "10..19" in found[0].message


def test_swapped_entries_are_reordered() -> None:
    log = Log(30)
    records = list(log.records)
    records[5], records[6] = records[6], records[5]
    assert kinds(log.snapshot(records))[0] == (Kind.REORDERED, 5)


def test_a_dropped_tail_is_truncated() -> None:
    log = Log(30)
    assert kinds(log.snapshot(log.records[:27])) == [(Kind.TRUNCATED, 27)]


def test_a_rolled_back_head_is_caught_by_a_trusted_checkpoint() -> None:
    log = Log(30)
    older = log.snapshot(log.records[:20], checkpoint=log.notes[2])
    assert verify(older, SIGNER.verifier).ok, "alone, an older state is a valid log"
    assert kinds(older, trusted=log.notes[-1]) == [(Kind.TRUNCATED, 20)]


def test_a_checkpoint_signed_by_another_key_is_a_bad_signature() -> None:
    log = Log(12)
    forger = Signer(Ed25519PrivateKey.generate(), ORIGIN)
    forged = forger.sign(12, log.state.frontier.root())
    found = verify(log.snapshot(checkpoint=forged), SIGNER.verifier).findings
    assert [f.kind for f in found] == [Kind.BAD_SIGNATURE]
    assert "not signed by" in found[0].message


def test_a_checkpoint_from_another_cluster_is_a_bad_signature() -> None:
    log = Log(12)
    elsewhere = Signer(SIGNER.private_key, "wayang.io/audit/another-cluster")
    replayed = elsewhere.sign(12, log.state.frontier.root())
    found = verify(log.snapshot(checkpoint=replayed), SIGNER.verifier).findings
    assert [f.kind for f in found] == [Kind.BAD_SIGNATURE]
    assert "another-cluster" in found[0].message


def test_a_fork_verifies_alone_and_fails_against_the_other_heads_checkpoint() -> None:
    ours, theirs = Log(20, tenant="team-a"), Log(20, tenant="team-b")
    assert verify(theirs.snapshot(), SIGNER.verifier).ok
    assert kinds(theirs.snapshot(), trusted=ours.notes[-1]) == [(Kind.FORKED, None)]


def test_unreadable_records_are_modified_not_a_crash() -> None:
    log = Log(5)
    records = copy.deepcopy(log.records)
    records[2]["entry"]["hash"] = "sha1:nope"
    del records[3]["prev"]
    assert kinds(log.snapshot(records))[0] == (Kind.MODIFIED, 2)


@pytest.mark.parametrize("field", ["hash", "signature"])
def test_the_hash_covers_everything_but_itself(field: str) -> None:
    entry = Log(1).records[0]["entry"]
    assert canonical(entry) == canonical({**entry, field: "anything"})
    assert canonical(entry) != canonical({**entry, "version": "9.9.9"})


def test_entries_swapped_in_place_are_reordered() -> None:
    """A store that orders by index (PostgreSQL) shows a swap as moved contents, not indexes."""
    log = Log(12)
    records = copy.deepcopy(log.records)
    records[5]["entry"], records[6]["entry"] = records[6]["entry"], records[5]["entry"]
    records[5]["prev"], records[6]["prev"] = records[6]["prev"], records[5]["prev"]
    assert kinds(log.snapshot(records))[0] == (Kind.REORDERED, 5)
