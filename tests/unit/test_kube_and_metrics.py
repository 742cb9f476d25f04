"""The API wrapper retries transient failures with bounded, jittered backoff and gives up on the
rest; the phase gauges move with plugins: the aggregate one labels by phase only, the per-plugin
one keeps exactly one series per plugin, gone with the plugin or the Lease."""

from __future__ import annotations

import asyncio

import pytest
from kubernetes.client.exceptions import ApiException

from wayang_operator import kube, metrics
from wayang_operator.api.resources import PluginPhase
from wayang_operator.controller import webhook_server


def flaky(failures: list[int]) -> tuple[list[int], object]:
    calls: list[int] = []

    def call() -> None:
        calls.append(1)
        if failures:
            raise ApiException(status=failures.pop(0))

    return calls, call


def test_transient_errors_are_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    calls, call = flaky([503, 429, 500])
    asyncio.run(kube._with_retries(call))  # type: ignore[arg-type]
    assert len(calls) == 4
    assert len(sleeps) == 3
    for attempt, slept in enumerate(sleeps):
        ceiling = min(kube.MAX_DELAY, kube.BASE_DELAY * 2**attempt)
        assert ceiling / 2 <= slept <= ceiling


def test_permanent_errors_and_exhaustion_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_sleep(seconds: float) -> None:
        return None

    monkeypatch.setattr(asyncio, "sleep", no_sleep)
    calls, call = flaky([422])
    with pytest.raises(ApiException):
        asyncio.run(kube._with_retries(call))  # type: ignore[arg-type]
    assert len(calls) == 1, "a 422 is not retried"
    calls, call = flaky([503] * 10)
    with pytest.raises(ApiException):
        asyncio.run(kube._with_retries(call))  # type: ignore[arg-type]
    assert len(calls) == kube.ATTEMPTS


def gauge(phase: PluginPhase) -> float:
    return float(metrics.PLUGINS.labels(phase.value)._value.get())


def test_phase_gauge_moves_with_plugins() -> None:
    base_ready, base_awaiting = gauge(PluginPhase.READY), gauge(PluginPhase.AWAITING_APPROVAL)
    metrics.observe_phase("ns", "a", PluginPhase.AWAITING_APPROVAL)
    metrics.observe_phase("ns", "b", PluginPhase.AWAITING_APPROVAL)
    metrics.observe_phase("ns", "a", PluginPhase.READY)
    assert gauge(PluginPhase.AWAITING_APPROVAL) == base_awaiting + 1
    assert gauge(PluginPhase.READY) == base_ready + 1
    metrics.observe_phase("ns", "a", None)
    metrics.observe_phase("ns", "b", None)
    assert (gauge(PluginPhase.READY), gauge(PluginPhase.AWAITING_APPROVAL)) == (
        base_ready,
        base_awaiting,
    )
    (collected,) = list(metrics.PLUGINS.collect())
    labels = {sample.labels.get("phase") for sample in collected.samples}
    assert labels <= {phase.value for phase in PluginPhase}


def plugin_series(namespace: str) -> dict[str, str]:
    """The per-plugin phase series of one namespace: plugin → phase."""
    (collected,) = list(metrics.PLUGIN_PHASE.collect())
    return {
        sample.labels["plugin"]: sample.labels["phase"]
        for sample in collected.samples
        if sample.labels["namespace"] == namespace and sample.value == 1
    }


def test_one_series_per_plugin_follows_its_phase_and_goes_with_it() -> None:
    """A stale series for the old phase would fire a Quarantined alert for a Ready plugin."""
    metrics.observe_phase("per-plugin", "a", PluginPhase.QUARANTINED)
    metrics.observe_phase("per-plugin", "a", PluginPhase.READY)
    metrics.observe_phase("per-plugin", "b", PluginPhase.AWAITING_APPROVAL)
    (collected,) = list(metrics.PLUGIN_PHASE.collect())
    mine = [s for s in collected.samples if s.labels["namespace"] == "per-plugin"]
    assert len(mine) == 2, "one series per plugin, the old phase's is removed"
    assert plugin_series("per-plugin") == {"a": "Ready", "b": "AwaitingApproval"}
    metrics.observe_phase("per-plugin", "a", None)
    assert plugin_series("per-plugin") == {"b": "AwaitingApproval"}


def test_a_standby_reports_no_plugins() -> None:
    """After losing the Lease the old leader would otherwise report phases it no longer sees."""
    metrics.observe_phase("standby", "c", PluginPhase.AWAITING_APPROVAL)
    metrics.set_leader(True)
    assert metrics.LEADER._value.get() == 1
    metrics.set_leader(False)
    assert metrics.LEADER._value.get() == 0
    assert plugin_series("standby") == {}
    assert gauge(PluginPhase.AWAITING_APPROVAL) == 0


def admissions(**labels: str) -> float:
    return float(metrics.ADMISSIONS.labels(**labels)._value.get())


def test_admission_reviews_are_counted_by_resource_and_result() -> None:
    request = {"request": {"uid": "x", "operation": "CREATE", "resource": {"resource": "plugins"}}}
    labels = {"webhook": "check-approval", "resource": "plugins", "operation": "CREATE"}
    before = {r: admissions(**labels, result=r) for r in ("allowed", "denied", "error")}
    webhook_server._count(request, "check-approval", {"response": {"allowed": True}}, 0.0)
    webhook_server._count(request, "check-approval", {"response": {"allowed": False}}, 0.0)
    webhook_server._count(request, "check-approval", {"response": {"allowed": False}}, 0.0)
    webhook_server._count(request, "check-approval", None, 0.0)
    after = {r: admissions(**labels, result=r) - before[r] for r in before}
    assert after == {"allowed": 1, "denied": 2, "error": 1}
