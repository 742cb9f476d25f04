"""The Scanned gate's decision: every rule, the reason naming the finding, several policies."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from wayang_operator.api.errors import ErrorPayload, ErrorType
from wayang_operator.api.resources import PluginPolicySpec, ScanReportStatus
from wayang_operator.core.pipeline import ScanFacts
from wayang_operator.core.policy import NamedPolicy
from wayang_operator.core.scanpolicy import decide, parse_duration
from wayang_operator.scanning.report import to_report

NOW = datetime.datetime(2026, 11, 22, 12, 0, tzinfo=datetime.UTC)
FRESH = "2026-11-22T06:00:00.5Z"


def status(*results: dict[str, Any], database: str | None = FRESH) -> ScanReportStatus:
    scanned = to_report(
        {"Results": list(results)},
        plugin_id="acme/p",
        version="1.0.0",
        scanner_version="0.67.2",
        now="2026-11-22T11:00:00Z",
    )
    return ScanReportStatus(
        report=scanned.report, fixable=scanned.fixable, database_updated_at=database
    )


def vulns(*items: tuple[str, str, str | None]) -> dict[str, Any]:
    return {
        "Target": "Python",
        "Vulnerabilities": [
            {
                "VulnerabilityID": cve,
                "Severity": severity,
                "PkgName": "requests",
                "InstalledVersion": "2.19.0",
                "FixedVersion": fixed or "",
            }
            for cve, severity, fixed in items
        ],
    }


def verdict(found: ScanReportStatus, policies: list[NamedPolicy]) -> ScanFacts:
    facts = decide(found, policies, NOW)
    assert facts is not None
    return facts


def policy(name: str = "p", **scan: Any) -> NamedPolicy:
    return NamedPolicy(name, PluginPolicySpec.model_validate({"scan": scan}, by_alias=True))


def test_nothing_to_decide_before_a_scan() -> None:
    assert decide(None, [policy()], NOW) is None
    assert decide(ScanReportStatus(), [policy()], NOW) is None


def test_a_clean_report_passes_with_a_tally() -> None:
    facts = verdict(status(vulns(("CVE-1", "LOW", None))), [policy()])
    assert facts.passed
    assert "1 low" in facts.reason


def test_the_worst_finding_above_the_threshold_is_named() -> None:
    found = vulns(("CVE-M", "MEDIUM", None), ("CVE-H", "HIGH", "2.20.0"), ("CVE-H2", "HIGH", None))
    facts = verdict(status(found), [policy("strict")])
    assert not facts.passed
    assert facts.reason.startswith("CVE-H (HIGH) in requests 2.19.0, fixed in 2.20.0 and 1 more")
    assert "policy allows up to MEDIUM, under policy strict" in facts.reason
    assert facts.error is ErrorType.SECURITY_ERROR


def test_max_severity_none_tolerates_nothing_and_critical_everything() -> None:
    found = status(vulns(("CVE-L", "LOW", None)))
    assert not verdict(found, [policy(maxSeverity="NONE")]).passed
    worst = status(vulns(("CVE-C", "CRITICAL", None)))
    assert verdict(worst, [policy(maxSeverity="CRITICAL")]).passed


def test_ignore_unfixed_leaves_out_what_cannot_be_fixed_yet() -> None:
    found = status(vulns(("CVE-H", "HIGH", None), ("CVE-M", "MEDIUM", "1.0")))
    assert not verdict(found, [policy()]).passed
    facts = verdict(found, [policy(ignoreUnfixed=True, maxCounts={"medium": 0})])
    assert not facts.passed
    assert facts.reason.startswith("1 MEDIUM vulnerabilities; policy allows 0")
    assert verdict(found, [policy(ignoreUnfixed=True)]).passed


def test_counts_per_severity() -> None:
    found = status(vulns(("CVE-1", "LOW", None), ("CVE-2", "LOW", None), ("CVE-3", "LOW", None)))
    facts = verdict(found, [policy(maxCounts={"low": 2})])
    assert facts.reason.startswith("3 LOW vulnerabilities; policy allows 2")


def test_any_secret_blocks_unless_the_policy_says_otherwise() -> None:
    leaky = status(
        {"Target": "/app/deploy.env", "Secrets": [{"RuleID": "aws-access-key-id", "StartLine": 2}]}
    )
    facts = verdict(leaky, [policy()])
    assert not facts.passed
    assert facts.reason.startswith("secret found: aws-access-key-id in /app/deploy.env:2")
    assert verdict(leaky, [policy(blockSecrets=False)]).passed


@pytest.mark.parametrize(
    ("rules", "reason"),
    [
        ({"deniedLicenses": ["GPL-3.0"]}, "license GPL-3.0 is denied by policy"),
        ({"allowedLicenses": ["MIT"]}, "license GPL-3.0 is not among the allowed licenses"),
    ],
)
def test_licenses(rules: dict[str, Any], reason: str) -> None:
    licensed = status({"Target": "Python", "Licenses": [{"Name": "GPL-3.0"}]})
    facts = verdict(licensed, [policy(**rules)])
    assert facts.reason.startswith(reason)
    assert verdict(licensed, [policy(allowedLicenses=["GPL-3.0"])]).passed


def test_an_old_database_is_not_trusted() -> None:
    stale = status(database="2026-11-10T12:00:00Z")
    facts = verdict(stale, [policy()])
    assert not facts.passed
    assert facts.reason.startswith(
        "the vulnerability database is 12.0 days old (policy allows 72h)"
    )
    assert verdict(stale, [policy(maxDatabaseAge="720h")]).passed


def test_every_policy_requiring_a_scan_must_pass() -> None:
    found = status(vulns(("CVE-M", "MEDIUM", None)))
    lenient, strict = policy("lenient"), policy("strict", maxSeverity="LOW")
    facts = verdict(found, [lenient, strict])
    assert facts.reason.endswith("under policy strict")
    not_required = policy("strict", required=False, maxSeverity="LOW")
    assert verdict(found, [lenient, not_required]).passed


def test_a_failed_scan_keeps_its_error_type() -> None:
    error = ErrorPayload(
        type=ErrorType.TIMEOUT,
        message="trivy did not finish within 300s",
        retryable=True,
        origin_node="wayang-operator/scanner",
        timestamp="2026-11-22T11:00:00Z",
    )
    facts = verdict(ScanReportStatus(last_error=error), [policy()])
    assert facts.failed
    assert not facts.passed
    assert facts.error is ErrorType.TIMEOUT
    assert "trivy did not finish" in facts.reason


@pytest.mark.parametrize(
    ("text", "seconds"), [("24h", 86400), ("1h30m", 5400), ("90s", 90), ("1.5h", 5400)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "1d", "h", "10", "1h 30m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)
