"""trivy's JSON → the seed's ScanReport: order, cap, counts, and secrets without their values."""

from __future__ import annotations

from typing import Any

from wayang_operator.api.scan import MAX_FINDINGS, ScanStatus, Severity
from wayang_operator.scanning.report import to_report

SECRET_VALUE = "wJ8rX2u9Qm4tZp7Lk1Vb6Nc3Hd5Gf0Sa8Ye2Rw4T"


def vulnerability(cve: str, severity: str, fixed: str | None = None) -> dict[str, Any]:
    return {
        "VulnerabilityID": cve,
        "PkgName": "requests",
        "InstalledVersion": "2.19.0",
        "FixedVersion": fixed or "",
        "Severity": severity,
        "Title": f"title of {cve}",
    }


def report(*results: dict[str, Any]) -> Any:
    return to_report(
        {"Results": list(results)},
        plugin_id="acme/p",
        version="1.0.0",
        scanner_version="0.67.2",
        now="2026-11-22T10:00:00Z",
    )


def test_most_severe_first_and_counted() -> None:
    scanned = report(
        {
            "Target": "Python",
            "Vulnerabilities": [
                vulnerability("CVE-1", "LOW"),
                vulnerability("CVE-2", "CRITICAL", "2.0"),
                vulnerability("CVE-3", "MEDIUM"),
                vulnerability("CVE-4", "UNKNOWN"),
            ],
        }
    )
    found = scanned.report.vulnerabilities
    assert [v.cve for v in found] == ["CVE-2", "CVE-3", "CVE-1", "CVE-4"]
    assert found[-1].severity is Severity.INFO  # trivy's UNKNOWN
    summary = scanned.report.summary
    assert (summary.total_vulnerabilities, summary.critical_count, summary.low_count) == (4, 1, 1)
    assert scanned.fixable.total_vulnerabilities == 1
    assert scanned.report.status is ScanStatus.FAILED


def test_the_cap_keeps_the_worst_and_counts_the_rest() -> None:
    many = [vulnerability(f"CVE-{i:04}", "LOW") for i in range(MAX_FINDINGS + 50)]
    many.append(vulnerability("CVE-WORST", "HIGH"))
    scanned = report({"Target": "Python", "Vulnerabilities": many})
    assert len(scanned.report.vulnerabilities or []) == MAX_FINDINGS
    assert scanned.report.vulnerabilities[0].cve == "CVE-WORST"
    assert scanned.truncated == 51
    assert scanned.report.summary.total_vulnerabilities == MAX_FINDINGS + 51


def test_a_secret_keeps_rule_file_and_line_but_never_its_text() -> None:
    scanned = report(
        {
            "Target": "/app/deploy.env",
            "Class": "secret",
            "Secrets": [
                {
                    "RuleID": "aws-secret-access-key",
                    "StartLine": 3,
                    "Match": f"AWS_SECRET_ACCESS_KEY={SECRET_VALUE}",
                    "Code": {"Lines": [{"Content": SECRET_VALUE}]},
                }
            ],
        }
    )
    secret = scanned.report.secrets[0]
    assert (secret.type, secret.file, secret.line) == (
        "aws-secret-access-key",
        "/app/deploy.env",
        3,
    )
    assert SECRET_VALUE not in scanned.report.model_dump_json()
    assert scanned.report.status is ScanStatus.FAILED


def test_licenses_are_listed_once_and_a_clean_report_passes() -> None:
    licensed = {"Target": "Python", "Class": "license", "Licenses": [{"Name": "MIT"}] * 3}
    scanned = report(licensed)
    assert [item.spdx_id for item in scanned.report.licenses or []] == ["MIT"]
    assert scanned.report.status is ScanStatus.PASSED
    assert report().report.status is ScanStatus.PASSED


def test_duplicate_findings_across_results_count_once() -> None:
    same = {"Target": "a", "Vulnerabilities": [vulnerability("CVE-1", "HIGH")]}
    assert report(same, {**same, "Target": "b"}).report.summary.total_vulnerabilities == 1
