"""A ScanReport the operator did not write is never trusted and never scanned: the operator's
signature over the spec it requests and the status it records, and what breaks it."""

from __future__ import annotations

import datetime
from typing import Any

from tests import documents as d

from wayang_operator.controller.scans import Scanner, ScanRecord
from wayang_operator.core.attestation import Attestor
from wayang_operator.kube import KubeApi
from wayang_operator.settings import OperatorSettings

SPEC: dict[str, Any] = {
    "artifact": {"coordinate": "registry.example/acme/echo", "digest": d.SHA256},
    "pluginId": "acme/echo",
    "version": "1.0.0",
}
CLEAN: dict[str, Any] = {
    "report": {
        "scanId": d.UUID,
        "pluginId": "acme/echo",
        "version": "1.0.0",
        "status": "PASSED",
        "timestamp": d.TIMESTAMP,
        "summary": {"criticalCount": 0, "highCount": 0, "mediumCount": 0, "lowCount": 0},
    },
    "runs": 1,
    "truncated": 0,
    "nextScanAt": "2026-11-23T10:00:00Z",
}
NOW = datetime.datetime(2026, 11, 22, 11, tzinfo=datetime.UTC)


def body(spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"spec": spec, **({"status": status} if status else {})}


def test_what_the_operator_wrote_is_trusted_word_for_word() -> None:
    operator = Attestor.generate()
    spec = {**SPEC, "attestation": operator.sign_spec("team-a", "r", SPEC)}
    status = {**CLEAN, "attestation": operator.sign_status("team-a", "r", CLEAN)}
    record = ScanRecord.of("team-a", "r", body(spec, status), operator)
    assert record is not None
    assert (record.requested, record.recorded) == (True, True)
    assert record.trusted_status is not None
    # what the API server returns: integral floats as integers, absent fields dropped
    returned = {**status, "runs": 1.0, "lastError": None}
    assert operator.recorded("team-a", "r", returned)


def test_a_forged_or_edited_report_is_not_trusted_and_not_scanned() -> None:
    operator, forger = Attestor.generate(), Attestor.generate()
    forged_spec = {**SPEC, "attestation": forger.sign_spec("team-a", "r", SPEC)}
    forged = ScanRecord.of("team-a", "r", body(forged_spec, CLEAN), operator)
    assert forged is not None
    assert not forged.requested
    assert forged.trusted_status is None, "a clean status typed by hand counts for nothing"
    scanner = Scanner(OperatorSettings(), KubeApi(), operator)
    assert not scanner.due(forged, NOW), "never scanned: the operator did not request it"
    spec = {**SPEC, "attestation": operator.sign_spec("team-a", "r", SPEC)}
    signed = {**CLEAN, "attestation": operator.sign_status("team-a", "r", CLEAN)}
    edited = {**signed, "report": {**CLEAN["report"], "status": "FAILED"}}
    record = ScanRecord.of("team-a", "r", body(spec, edited), operator)
    assert record is not None
    assert record.trusted_status is None
    moved = ScanRecord.of("team-b", "r", body(spec, signed), operator)
    assert moved is not None
    assert not moved.requested, "signed for its namespace and name"
    retargeted = {**spec, "artifact": {**SPEC["artifact"], "coordinate": "evil.example/x"}}
    assert not operator.requested("team-a", "r", retargeted)
