"""trivy's JSON output turned into the seed's ScanReport, capped and without secret values.

Findings are sorted most severe first before the cap (MAX_FINDINGS per list), so the worst finding
is always kept and a policy's reason can name it; the summary counts everything, capped or not.
A secret's matched text never leaves this module: only its rule, file and line are kept.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ..api.scan import (
    MAX_FINDINGS,
    RANK,
    License,
    Scanner,
    ScanReport,
    ScanStatus,
    ScanSummary,
    SecretFinding,
    Severity,
    Vulnerability,
)


@dataclass(frozen=True)
class Scanned:
    """A report plus what the seed's shape has no room for."""

    report: ScanReport
    fixable: ScanSummary
    """Counts of vulnerabilities that have a fixed version (for `ignoreUnfixed`)."""
    truncated: int
    """Findings left out by the cap, over all lists."""


def severity(value: object) -> Severity:
    """trivy's severity as ours; its UNKNOWN counts as INFO."""
    try:
        return Severity(str(value).upper())
    except ValueError:
        return Severity.INFO


def _summary(vulnerabilities: list[Vulnerability]) -> ScanSummary:
    counts = Counter(v.severity for v in vulnerabilities)
    return ScanSummary(
        total_vulnerabilities=len(vulnerabilities),
        critical_count=counts[Severity.CRITICAL],
        high_count=counts[Severity.HIGH],
        medium_count=counts[Severity.MEDIUM],
        low_count=counts[Severity.LOW],
    )


def _text(value: object, limit: int) -> str | None:
    return None if value in (None, "") else str(value)[:limit]


def _vulnerabilities(results: list[dict[str, Any]]) -> list[Vulnerability]:
    found = {}
    for result in results:
        for item in result.get("Vulnerabilities") or []:
            vulnerability = Vulnerability(
                cve=_text(item.get("VulnerabilityID"), 256),
                severity=severity(item.get("Severity")),
                package=_text(item.get("PkgName"), 256),
                version=_text(item.get("InstalledVersion"), 256),
                fixed_version=_text(item.get("FixedVersion"), 256),
                description=_text(item.get("Title") or item.get("Description"), 1024),
            )
            found[(vulnerability.cve, vulnerability.package, vulnerability.version)] = vulnerability
    return sorted(
        found.values(),
        key=lambda v: (-RANK[v.severity or Severity.INFO], v.cve or "", v.package or ""),
    )


def _secrets(results: list[dict[str, Any]]) -> list[SecretFinding]:
    found = [
        SecretFinding(
            type=_text(item.get("RuleID") or item.get("Category"), 256),
            file=_text(result.get("Target"), 4096),
            line=item.get("StartLine") if isinstance(item.get("StartLine"), int) else None,
        )
        for result in results
        for item in result.get("Secrets") or []
    ]
    return sorted(found, key=lambda s: (s.file or "", s.line or 0, s.type or ""))


def _licenses(results: list[dict[str, Any]]) -> list[License]:
    names = sorted(
        {str(item["Name"]) for r in results for item in r.get("Licenses") or [] if item.get("Name")}
    )
    return [License(name=name[:256], spdx_id=name[:256]) for name in names]


def _status(vulnerabilities: list[Vulnerability], secrets: list[SecretFinding]) -> ScanStatus:
    """A severity summary for `kubectl get`; whether a plugin may run is the policy's call."""
    worst = max((RANK[v.severity or Severity.INFO] for v in vulnerabilities), default=-1)
    if secrets or worst >= RANK[Severity.HIGH]:
        return ScanStatus.FAILED
    return ScanStatus.WARNING if vulnerabilities else ScanStatus.PASSED


def to_report(
    output: dict[str, Any], *, plugin_id: str, version: str, scanner_version: str, now: str
) -> Scanned:
    results = [r for r in output.get("Results") or [] if isinstance(r, dict)]
    vulnerabilities = _vulnerabilities(results)
    secrets = _secrets(results)
    licenses = _licenses(results)
    lists = (vulnerabilities, secrets, licenses)
    truncated = sum(max(0, len(found) - MAX_FINDINGS) for found in lists)
    report = ScanReport(
        scan_id=str(uuid.uuid4()),
        plugin_id=plugin_id,
        version=version,
        timestamp=now,
        status=_status(vulnerabilities, secrets),
        scanner=Scanner(name="trivy", version=scanner_version),
        vulnerabilities=vulnerabilities[:MAX_FINDINGS],
        secrets=secrets[:MAX_FINDINGS],
        licenses=licenses[:MAX_FINDINGS],
        summary=_summary(vulnerabilities),
    )
    fixable = _summary([v for v in vulnerabilities if v.fixed_version])
    return Scanned(report, fixable, truncated)
