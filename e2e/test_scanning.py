"""Scanning on the real control plane: the operator runs trivy on test-built images (served from
a local archive folder, as in an air-gapped cluster) against a test-written database.

publisher-1 publishes three plugins; the clean one waits for approval and approver-1 makes it
Ready, the vulnerable and the leaky one are refused by the scan with reasons naming the finding.
ScanReports are shared per digest, readable with kubectl, carry no secret text, and survive an
operator restart without a rescan.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from e2e import scanfixtures
from e2e.conftest import Kube
from e2e.flow import approval, condition, phase_becomes, plugin, set_policy, tenant_of
from e2e.operator_process import Operator
from e2e.operator_process import running as running_operators
from wayang_operator.images.oci import Image


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Image]:
    return scanfixtures.images(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def operator(
    kube: Kube, images: dict[str, Image], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    folder = tmp_path_factory.mktemp("scanning")
    running = Operator(kube, folder, env=scanfixtures.offline_scanning(images.values(), folder))
    with running_operators(kube, running):
        yield running


@pytest.fixture
def tenant(kube: Kube, namespace: str, operator: Operator) -> Iterator[str]:
    with tenant_of(kube, namespace) as name:
        set_policy(kube, name, {"signing": {"required": False}, "scan": {"required": True}})
        yield name


def container(name: str, image: Image) -> dict[str, Any]:
    repository = image.name.rsplit(":", 1)[0]
    return plugin(
        name,
        id=f"acme/{name}",
        sandboxLevel="untrusted",
        implementation={"type": "container", "coordinate": repository, "digest": image.digest},
    )


def scan_report(kube: Kube, namespace: str, image: Image) -> dict[str, Any]:
    return kube.get("scanreport", image.digest.replace(":", "-"), namespace)


def test_clean_is_approved_vulnerable_and_leaky_are_refused(
    kube: Kube, tenant: str, images: dict[str, Image], operator: Operator
) -> None:
    for name in ("clean", "clean-twin", "vulnerable", "leaky"):
        image = images["clean" if name == "clean-twin" else name]
        kube.apply(container(name, image), user="publisher-1", namespace=tenant)

    awaiting = phase_becomes(kube, tenant, "clean", "AwaitingApproval", timeout=60)
    assert condition(awaiting, "Scanned")["reason"] == "ScanPassed"
    assert approval(kube, tenant, "clean", "approver-1").returncode == 0
    ready = phase_becomes(kube, tenant, "clean", "Ready")
    assert ready["reviewStatus"] == "approved"

    vulnerable = phase_becomes(kube, tenant, "vulnerable", "Blocked", timeout=60)
    assert vulnerable["reviewStatus"] == "rejected"
    scanned = condition(vulnerable, "Scanned")
    assert scanned["reason"] == "ScanFailed"
    assert scanned["message"].startswith(
        f"{scanfixtures.FIXED_CVE} (HIGH) in requests 2.19.0, fixed in 2.20.0"
    )
    assert vulnerable["lastError"]["type"] == "SecurityError"

    leaky = phase_becomes(kube, tenant, "leaky", "Blocked", timeout=60)
    assert "secret found: aws-access-key-id in /app/deploy.env:2" in leaky["lastError"]["message"]

    # one ScanReport per digest: the twin shares the clean image's report and its single run
    phase_becomes(kube, tenant, "clean-twin", "AwaitingApproval", timeout=60)
    listed = kube.run("get", "scanreports", "-o", "json", namespace=tenant).stdout
    reports = json.loads(listed)["items"]
    assert len(reports) == 3
    assert all(report["status"]["runs"] == 1 for report in reports)

    raw = json.dumps(scan_report(kube, tenant, images["leaky"]))
    assert scanfixtures.FAKE_SECRET not in raw
    assert scanfixtures.FAKE_KEY_ID not in raw
    table = kube.run("get", "scanreports", namespace=tenant).stdout
    assert "FAILED" in table
    assert "PASSED" in table

    operator.kill()
    operator.start()
    after = container("clean-after-restart", images["clean"])
    kube.apply(after, user="publisher-1", namespace=tenant)
    phase_becomes(kube, tenant, "clean-after-restart", "AwaitingApproval", timeout=60)
    assert scan_report(kube, tenant, images["clean"])["status"]["runs"] == 1
