"""Real trivy runs (the pinned build) on images the tests build, with a database the tests write.

No Docker, no download: e2e/scanfixtures.py makes three OCI images (clean, vulnerable, leaky) and
trivy's database in its own bbolt format. These tests assert what trivy finds, the report the
operator stores, the decision and its reason, and that failures are ErrorPayload-shaped.
"""

from __future__ import annotations

import asyncio
import datetime
import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
from e2e import scanfixtures

from wayang_operator.api.errors import ErrorType
from wayang_operator.api.resources import PluginPolicySpec, ScanReportStatus
from wayang_operator.core.pipeline import ScanFacts
from wayang_operator.core.policy import DEFAULT_POLICY_NAME, NamedPolicy
from wayang_operator.core.scanpolicy import decide
from wayang_operator.images.oci import File, Image, ImageSpec, build, to_tar
from wayang_operator.scanning import trivy
from wayang_operator.scanning.report import Scanned, to_report


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("trivy")


@pytest.fixture(scope="module")
def images(workdir: Path) -> dict[str, Image]:
    return scanfixtures.images(workdir / "images")


@pytest.fixture(scope="module")
def options(workdir: Path) -> trivy.TrivyOptions:
    cache = scanfixtures.vulnerability_db(workdir / "cache")
    return trivy.TrivyOptions(
        binary=str(scanfixtures.trivy()), cache_dir=cache, offline=True, timeout=120
    )


def scanned(options: trivy.TrivyOptions, image: Image) -> Scanned:
    target = trivy.Target(str(image.layout), image.digest, local=True)
    output = asyncio.run(trivy.scan(options, target))
    return to_report(
        output,
        plugin_id="acme/p",
        version="1.0.0",
        scanner_version="0.67.2",
        now="2026-11-22T10:00:00Z",
    )


def decided(options: trivy.TrivyOptions, result: Scanned) -> ScanFacts:
    database = trivy.database(options.cache_dir)
    assert database is not None
    status = ScanReportStatus(
        report=result.report, fixable=result.fixable, database_updated_at=database.updated_at
    )
    policy = NamedPolicy(DEFAULT_POLICY_NAME, PluginPolicySpec())
    facts = decide(status, [policy], datetime.datetime.now(datetime.UTC))
    assert facts is not None
    return facts


def test_the_clean_image_passes(options: trivy.TrivyOptions, images: dict[str, Image]) -> None:
    result = scanned(options, images["clean"])
    assert result.report.vulnerabilities == []
    assert result.report.secrets == []
    assert [item.spdx_id for item in result.report.licenses or []] == ["BSD-3-Clause"]
    facts = decided(options, result)
    assert facts.passed, facts.reason


def test_the_old_package_is_found_and_named(
    options: trivy.TrivyOptions, images: dict[str, Image]
) -> None:
    result = scanned(options, images["vulnerable"])
    found = [
        (v.cve, v.severity, v.package, v.version, v.fixed_version)
        for v in result.report.vulnerabilities or []
    ]
    assert found == [
        (scanfixtures.FIXED_CVE, "HIGH", "requests", "2.19.0", "2.20.0"),
        (scanfixtures.UNFIXED_ID, "MEDIUM", "requests", "2.19.0", None),
    ]
    assert result.fixable.total_vulnerabilities == 1
    facts = decided(options, result)
    assert not facts.passed
    assert facts.reason.startswith(
        f"{scanfixtures.FIXED_CVE} (HIGH) in requests 2.19.0, fixed in 2.20.0"
    )


def test_the_credential_is_found_and_never_stored(
    options: trivy.TrivyOptions, images: dict[str, Image]
) -> None:
    result = scanned(options, images["leaky"])
    found = [(s.type, s.file, s.line) for s in result.report.secrets or []]
    assert found == [
        ("aws-access-key-id", "/app/deploy.env", 2),
        ("aws-secret-access-key", "/app/deploy.env", 3),
    ]
    stored = result.report.model_dump_json()
    assert scanfixtures.FAKE_SECRET not in stored
    assert scanfixtures.FAKE_KEY_ID not in stored
    facts = decided(options, result)
    assert facts.reason.startswith("secret found: aws-access-key-id in /app/deploy.env:2")


def test_an_oci_tar_is_scanned_like_its_folder(
    options: trivy.TrivyOptions, images: dict[str, Image], workdir: Path
) -> None:
    image = images["vulnerable"]
    archive = to_tar(image.layout, workdir / "vulnerable.tar")
    output = asyncio.run(trivy.scan(options, trivy.Target(str(archive), image.digest, local=True)))
    ids = [v["VulnerabilityID"] for r in output["Results"] for v in r.get("Vulnerabilities") or []]
    assert scanfixtures.FIXED_CVE in ids


def failure(options: trivy.TrivyOptions, target: trivy.Target) -> trivy.ScanError:
    with pytest.raises(trivy.ScanError) as caught:
        asyncio.run(trivy.scan(options, target))
    return caught.value


def test_a_swapped_archive_is_refused_before_trivy_runs(
    options: trivy.TrivyOptions, images: dict[str, Image]
) -> None:
    swapped = trivy.Target(str(images["vulnerable"].layout), images["clean"].digest, local=True)
    error = failure(options, swapped)
    assert error.kind is ErrorType.SECURITY_ERROR
    assert f"not the pinned {images['clean'].digest}" in error.message
    assert not error.retryable


def test_a_timeout_is_a_timeout_error(
    options: trivy.TrivyOptions, images: dict[str, Image]
) -> None:
    impatient = trivy.TrivyOptions(
        binary=options.binary, cache_dir=options.cache_dir, offline=True, timeout=0.001
    )
    image = images["clean"]
    error = failure(impatient, trivy.Target(str(image.layout), image.digest, local=True))
    assert error.kind is ErrorType.TIMEOUT
    assert error.retryable
    assert "did not finish within 0.001s" in error.message


def test_a_corrupt_image_is_a_tool_error_not_a_crash(
    options: trivy.TrivyOptions, images: dict[str, Image], workdir: Path
) -> None:
    # its own content: trivy caches layer analyses by content, and must really read this one
    spec = ImageSpec("localhost/wayang-test/broken:1.0", [[File("app/x.py", b"broken = 1\n")]])
    broken = build(spec, workdir / "broken")
    blobs = broken.layout / "blobs" / "sha256"
    layer = next(p for p in blobs.iterdir() if p.read_bytes()[:2] == b"\x1f\x8b")
    layer.write_bytes(gzip.compress(b"this is not a tar")[:20])  # truncated and not a tar
    error = failure(options, trivy.Target(str(broken.layout), broken.digest, local=True))
    assert error.kind is ErrorType.TOOL_ERROR
    assert error.message.startswith("trivy exited with 1:")
    garbage = workdir / "garbage"
    garbage.mkdir()
    (garbage / "index.json").write_text("{not json")
    error = failure(options, trivy.Target(str(garbage), broken.digest, local=True))
    assert error.kind is ErrorType.VALIDATION_ERROR
    assert "not an OCI image layout" in error.message


def wayang_scan(options: trivy.TrivyOptions, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "wayang"),
            "scan",
            f"--trivy={options.binary}",
            f"--cache-dir={options.cache_dir}",
            "--offline",
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_cli_prints_the_same_decision(
    options: trivy.TrivyOptions, images: dict[str, Image], workdir: Path
) -> None:
    clean = wayang_scan(options, str(images["clean"].layout))
    assert clean.returncode == 0, clean.stderr
    assert "decision: PASSED" in clean.stdout
    vulnerable = wayang_scan(options, str(images["vulnerable"].layout), "-o", "json")
    assert vulnerable.returncode == 1
    document = json.loads(vulnerable.stdout)
    assert document["digest"] == images["vulnerable"].digest
    assert document["decision"]["passed"] is False
    assert document["decision"]["reason"].startswith(scanfixtures.FIXED_CVE)
    lenient = workdir / "lenient.yaml"
    lenient.write_text(
        "apiVersion: wayang.io/v1alpha1\nkind: PluginPolicy\nmetadata: {name: lenient}\n"
        "spec: {scan: {maxSeverity: HIGH}}\n"
    )
    allowed = wayang_scan(options, str(images["vulnerable"].layout), "--policy", str(lenient))
    assert allowed.returncode == 0, allowed.stdout
    bad = workdir / "bad.yaml"
    bad.write_text("kind: PluginPolicy\nspec: {scan: {maxSeverity: SEVERE}}\n")
    refused = wayang_scan(options, str(images["clean"].layout), "--policy", str(bad))
    assert refused.returncode == 2
    assert "spec.scan.maxSeverity" in refused.stderr
    unpinned = wayang_scan(options, "ghcr.io/acme/redactor:1.0")
    assert unpinned.returncode == 2
    assert "pin the image by digest" in unpinned.stderr
