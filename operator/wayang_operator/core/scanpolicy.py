"""The Scanned gate: does an artifact's scan satisfy every policy that requires one?

Each applicable policy that requires a scan is checked on its own, in a fixed order, and the
first failure is the reason, naming the finding: a failed scan, a database too old to trust, a
secret, the worst vulnerability above the allowed severity, a count over its limit, a denied or
unlisted license. `ignoreUnfixed` leaves out vulnerabilities that have no fixed version yet.
The finding lists are sorted most severe first before they are capped, so the worst finding is
always there to be named.
"""

from __future__ import annotations

import datetime
import re

from ..api.errors import ErrorType
from ..api.resources import ScanPolicy, ScanReportStatus, SeverityThreshold
from ..api.scan import RANK, ScanSummary, Severity, Vulnerability
from .pipeline import ScanFacts
from .policy import NamedPolicy

_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> datetime.timedelta:
    """A Go duration (`24h`, `1h30m`, `90s`), as the CRD's pattern admits them."""
    parts = re.findall(r"([0-9]+(?:\.[0-9]+)?)(ns|us|ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return datetime.timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in parts))


def parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _describe(v: Vulnerability) -> str:
    fix = f", fixed in {v.fixed_version}" if v.fixed_version else ", no fix yet"
    return f"{v.cve} ({v.severity}) in {v.package} {v.version}{fix}"


def _counts(summary: ScanSummary | None) -> dict[str, int]:
    summary = summary or ScanSummary()
    return {
        "CRITICAL": summary.critical_count or 0,
        "HIGH": summary.high_count or 0,
        "MEDIUM": summary.medium_count or 0,
        "LOW": summary.low_count or 0,
    }


def _check(status: ScanReportStatus, policy: ScanPolicy, now: datetime.datetime) -> str | None:
    """Why `status` fails `policy`, or None if it passes."""
    report = status.report
    assert report is not None
    if status.database_updated_at:
        age = now - parse_time(status.database_updated_at)
        if age > parse_duration(policy.max_database_age):
            days = age.total_seconds() / 86400
            return (
                f"the vulnerability database is {days:.1f} days old "
                f"(policy allows {policy.max_database_age})"
            )
    if policy.block_secrets and report.secrets:
        first = report.secrets[0]
        others = len(report.secrets) - 1
        extra = f" and {others} more" if others else ""
        return f"secret found: {first.type} in {first.file}:{first.line}{extra}"
    vulnerabilities = [
        v for v in report.vulnerabilities or [] if v.fixed_version or not policy.ignore_unfixed
    ]
    threshold = SeverityThreshold(policy.max_severity)
    allowed = -1 if threshold is SeverityThreshold.NONE else RANK[Severity(threshold.value)]
    above = [v for v in vulnerabilities if RANK[v.severity or Severity.INFO] > allowed]
    if above:
        more = f" and {len(above) - 1} more" if len(above) > 1 else ""
        return f"{_describe(above[0])}{more}; policy allows up to {policy.max_severity}"
    counts = _counts(status.fixable if policy.ignore_unfixed else report.summary)
    limits = policy.max_counts
    if limits:
        for severity, limit in (
            ("CRITICAL", limits.critical),
            ("HIGH", limits.high),
            ("MEDIUM", limits.medium),
            ("LOW", limits.low),
        ):
            if limit is not None and counts[severity] > limit:
                return f"{counts[severity]} {severity} vulnerabilities; policy allows {limit}"
    for found in report.licenses or []:
        name = found.spdx_id or found.name or ""
        if policy.denied_licenses and name in policy.denied_licenses:
            return f"license {name} is denied by policy"
        if policy.allowed_licenses is not None and name not in policy.allowed_licenses:
            return f"license {name} is not among the allowed licenses"
    return None


def decide(
    status: ScanReportStatus | None, policies: list[NamedPolicy], now: datetime.datetime
) -> ScanFacts | None:
    """The Scanned facts from a ScanReport's status; None while no scan has finished."""
    if status is None or (status.report is None and status.last_error is None):
        return None
    if status.report is None:
        error = status.last_error
        assert error is not None
        return ScanFacts(
            False, f"the scan failed: {error.message}", error=ErrorType(error.type), failed=True
        )
    summary = status.report.summary
    for policy in policies:
        if not policy.scan.required:
            continue
        reason = _check(status, policy.scan, now)
        if reason is not None:
            return ScanFacts(False, f"{reason}, under policy {policy.name}", summary)
    counts = _counts(summary)
    tally = ", ".join(f"{n} {s.lower()}" for s, n in counts.items())
    return ScanFacts(True, f"no finding above policy ({tally})", summary)
