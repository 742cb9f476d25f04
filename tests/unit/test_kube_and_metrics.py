"""The API wrapper retries transient failures with bounded, jittered backoff and gives up on the
rest; the phase gauge moves with plugins and never labels by name."""

from __future__ import annotations

import asyncio

import pytest
from kubernetes.client.exceptions import ApiException

from wayang_operator import kube, metrics
from wayang_operator.api.resources import PluginPhase


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
