"""Two operator replicas on the real control plane: the Lease holder decides, the other stands by
with live indexes and still serves admission; when the holder dies the standby takes over without
deciding anything twice, and a graceful stop hands the Lease back.

The replicas share one webhook port (SO_REUSEPORT, standing in for the chart's Service) and one
serving certificate.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from e2e.conftest import Kube
from e2e.flow import approval, phase_becomes, plugin, tenant_of
from e2e.localcluster.cluster import free_port
from e2e.operator_process import Operator, running

DURATION = 6
"""Lease duration in seconds: short, so the takeover is quick to test."""


@pytest.fixture(scope="module")
def replicas(kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Operator]]:
    folder = tmp_path_factory.mktemp("replicas")
    port = free_port()
    pair = [
        Operator(
            kube,
            folder / name,
            webhook_port=port,
            cert_dir=folder / "webhook",
            env={
                "WAYANG_STANDALONE": "false",
                "WAYANG_LEASE_NAME": f"wayang-e2e-{port}",
                "WAYANG_LEASE_DURATION": str(DURATION),
            },
        )
        for name in ("first", "second")
    ]
    try:
        with running(kube, *pair):
            yield pair
    finally:
        kube.run("delete", "lease", f"wayang-e2e-{port}", "-n", "default", check=False)


@pytest.fixture
def tenant(kube: Kube, namespace: str, replicas: list[Operator]) -> Iterator[str]:
    with tenant_of(kube, namespace) as name:
        yield name


def logged(replica: Operator, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in replica.logs():
        assert time.monotonic() < deadline, f"not logged: {text!r}\n{replica.logs()[-2000:]}"
        time.sleep(0.3)


def holder(kube: Kube, replicas: list[Operator]) -> str:
    lease = replicas[0].env["WAYANG_LEASE_NAME"]
    return kube.get("lease", lease, "default")["spec"].get("holderIdentity") or ""


def test_the_lease_holder_decides_and_a_standby_takes_over(
    kube: Kube, tenant: str, replicas: list[Operator]
) -> None:
    first, second = replicas
    logged(first, "leading:")  # started first, so it created the Lease
    kube.apply(plugin("one"), user="publisher-1", namespace=tenant)
    phase_becomes(kube, tenant, "one", "AwaitingApproval")
    for user in ("approver-1", "approver-2"):  # admission may be served by either replica
        assert approval(kube, tenant, "one", user).returncode == 0
    phase_becomes(kube, tenant, "one", "Ready")
    assert "leading:" not in second.logs()

    first.kill()  # a crash: the Lease is not released and must expire
    kube.apply(plugin("two"), user="publisher-1", namespace=tenant)
    logged(second, "leading:", timeout=DURATION * 3)
    phase_becomes(kube, tenant, "two", "AwaitingApproval")
    assert approval(kube, tenant, "two", "approver-1").returncode == 0
    phase_becomes(kube, tenant, "two", "Ready")

    audit = [e for replica in replicas for e in replica.audit() if e["tenantId"] == tenant]
    approved = [e["details"]["plugin"] for e in audit if e["eventType"] == "PLUGIN_APPROVED"]
    assert sorted(approved) == ["one", "two"], audit  # each decided once, by one replica
    # the new leader re-evaluated "one" from live indexes: nothing to decide, nothing recorded
    assert [e for e in second.audit() if e["details"]["plugin"] == "one"] == []

    identity = second.logs().split("leading: ", 1)[1].split(" ", 1)[0]
    assert holder(kube, replicas) == identity
    second.stop()  # graceful: the Lease is handed back at once
    assert holder(kube, replicas) == ""
