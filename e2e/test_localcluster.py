"""The local control plane keeps its promises: a crashed run is cleaned up by the next start,
`down` leaves no process behind, and the kubeconfig's users are who they claim to be.

These start a second, private cluster in a temporary folder, so they do not disturb the session's.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.localcluster import cluster as local


@pytest.fixture
def private(tmp_path: Path) -> Iterator[local.Layout]:
    layout = local.Layout(tmp_path / "cluster")
    yield layout
    local.down(layout)


def pids(layout: local.Layout) -> dict[str, int]:
    return {name: pid for name, pid, alive in local.status(layout) if alive and pid}


def test_a_crashed_run_is_cleaned_up_by_the_next_start(private: local.Layout) -> None:
    local.up(private)
    first = pids(private)
    assert set(first) == set(local.ORDER)
    # a crash: the API server dies hard, the rest keeps running with stale pid files
    os.killpg(first["kube-apiserver"], signal.SIGKILL)
    cluster = local.up(private)
    second = pids(private)
    assert set(second) == set(local.ORDER)
    for name in local.ORDER:
        assert second[name] != first[name], f"{name} was not restarted"
        with pytest.raises(ProcessLookupError):
            os.kill(first[name], 0)
    assert "team-a" in cluster.run_kubectl("get", "namespaces", "-o", "name")


def test_down_leaves_no_process(private: local.Layout) -> None:
    local.up(private)
    running = pids(private)
    local.down(private)
    for pid in running.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert pids(private) == {}
    assert local.current(private) is None


def test_users_are_authenticated_by_their_certificates(kube_local: local.Cluster) -> None:
    for user in ("approver-1", "publisher-1"):
        who = kube_local.run_kubectl(
            "auth", "whoami", "-o", "jsonpath={.status.userInfo}", context=user
        )
        assert f'"username":"{user}"' in who
    groups = kube_local.run_kubectl(
        "auth", "whoami", "-o", "jsonpath={.status.userInfo.groups}", context="approver-2"
    )
    assert "wayang:approvers" in groups


@pytest.fixture
def kube_local(private: local.Layout) -> local.Cluster:
    return local.up(private)
