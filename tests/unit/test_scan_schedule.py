"""When a ScanReport is due for a (re)scan: first time, on schedule, on a new database, and not
while a failing scan waits for its retry time."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from wayang_operator.api.errors import ErrorPayload, ErrorType
from wayang_operator.api.resources import Artifact, ScanReportSpec, ScanReportStatus
from wayang_operator.api.scan import ScanReport, ScanStatus
from wayang_operator.controller.scans import Scanner, ScanRecord
from wayang_operator.core.attestation import Attestor
from wayang_operator.kube import KubeApi
from wayang_operator.scanning import trivy
from wayang_operator.settings import OperatorSettings

NOW = datetime.datetime(2026, 11, 22, 12, 0, tzinfo=datetime.UTC)
SPEC = ScanReportSpec(
    artifact=Artifact(coordinate="ghcr.io/acme/x", digest="sha256:" + "ab" * 32),
    plugin_id="acme/x",
    version="1.0.0",
)
REPORT = ScanReport(
    scan_id="3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
    plugin_id="acme/x",
    version="1.0.0",
    timestamp="2026-11-22T11:00:00Z",
    status=ScanStatus.PASSED,
)
ERROR = ErrorPayload(
    type=ErrorType.TIMEOUT,
    message="trivy did not finish within 300s",
    retryable=True,
    origin_node="wayang-operator/scanner",
    timestamp="2026-11-22T11:00:00Z",
)


def scanner(cache: Path) -> Scanner:
    return Scanner(OperatorSettings(scan_cache_dir=cache), KubeApi(), Attestor.generate())


def record(**status: object) -> ScanRecord:
    return ScanRecord("r", SPEC, ScanReportStatus.model_validate(status) if status else None)


def test_schedule(tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()
    stamp = {
        "Version": 2,
        "UpdatedAt": "2026-11-22T11:00:00Z",
        "NextUpdate": "2026-11-23T11:00:00Z",
    }
    (tmp_path / "db" / "metadata.json").write_text(json.dumps(stamp))
    database = trivy.database(tmp_path)
    assert database is not None
    subject = scanner(tmp_path)
    later, earlier = "2026-11-23T12:00:00Z", "2026-11-22T11:59:00Z"
    assert subject.due(record(), NOW), "never scanned"
    current = {"report": REPORT, "databaseUpdatedAt": database.updated_at}
    assert not subject.due(record(nextScanAt=later, **current), NOW)
    assert subject.due(record(nextScanAt=earlier, **current), NOW), "the interval passed"
    older = {"report": REPORT, "databaseUpdatedAt": "2026-11-01T00:00:00Z"}
    assert subject.due(record(nextScanAt=later, **older), NOW), "the database changed"
    failing = {**older, "lastError": ERROR}
    assert not subject.due(record(nextScanAt=later, **failing), NOW), "retry time decides"
    assert subject.due(record(nextScanAt=earlier, **failing), NOW)
