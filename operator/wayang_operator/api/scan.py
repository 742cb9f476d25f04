"""The seed's ScanReport: the result of scanning one artifact."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field

from .base import INTEGRAL, LAX, ApiModel, DateTime, Integer, LongText, ShortText, Uuid

MAX_FINDINGS = 200
"""Findings kept per list; the rest is counted, so a ScanReport never nears etcd's size limit."""


class ScanStatus(StrEnum):
    PASSED = "PASSED"
    FAILED = "FAILED"
    WARNING = "WARNING"
    ERROR = "ERROR"


class Severity(StrEnum):
    CRITICAL = "CRITICAL"
    HIGH = "HIGH"
    MEDIUM = "MEDIUM"
    LOW = "LOW"
    INFO = "INFO"


RANK = {
    Severity.CRITICAL: 4,
    Severity.HIGH: 3,
    Severity.MEDIUM: 2,
    Severity.LOW: 1,
    Severity.INFO: 0,
}
"""Severity order, for sorting findings and comparing them with a policy's threshold."""


class Scanner(ApiModel):
    name: ShortText | None = None
    version: ShortText | None = None


class Vulnerability(ApiModel):
    cve: ShortText | None = None
    severity: Annotated[Severity, LAX] | None = None
    package: ShortText | None = None
    version: ShortText | None = None
    fixed_version: ShortText | None = None
    description: LongText | None = None


class License(ApiModel):
    name: ShortText | None = None
    spdx_id: ShortText | None = None
    approved: bool | None = None


class SecretFinding(ApiModel):
    """Where a secret was found; the matched text itself is never stored."""

    type: ShortText | None = None
    file: Annotated[str, Field(max_length=4096)] | None = None
    line: Integer | None = None


NonNegative = Annotated[int, Field(ge=0), INTEGRAL]


class ScanSummary(ApiModel):
    total_vulnerabilities: NonNegative | None = None
    critical_count: NonNegative | None = None
    high_count: NonNegative | None = None
    medium_count: NonNegative | None = None
    low_count: NonNegative | None = None


class ScanReport(ApiModel):
    """Security scan results."""

    scan_id: Uuid
    plugin_id: ShortText
    version: ShortText
    timestamp: DateTime
    status: Annotated[ScanStatus, LAX]
    scanner: Scanner | None = None
    vulnerabilities: Annotated[list[Vulnerability], Field(max_length=MAX_FINDINGS)] | None = None
    licenses: Annotated[list[License], Field(max_length=MAX_FINDINGS)] | None = None
    secrets: Annotated[list[SecretFinding], Field(max_length=MAX_FINDINGS)] | None = None
    summary: ScanSummary | None = None
