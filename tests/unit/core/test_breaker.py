"""The circuit breaker: opening at the threshold, half-opening after the timeout, closing after
successes, and quarantine that only a new approval ends."""

from __future__ import annotations

import datetime
from typing import Any

from wayang_operator.api.descriptor import ErrorHandlingConfig
from wayang_operator.api.resources import BreakerState as State
from wayang_operator.core.breaker import (
    Breaker,
    Severity,
    classify,
    due,
    half_open_after,
    replicas,
    step,
)

T0 = datetime.datetime(2026, 11, 22, 12, 0, tzinfo=datetime.UTC)
CRASH = classify("CrashLoopBackOff", "exit code 3")
NOT_READY = classify("NotReady")
NO_IMAGE = classify("ImagePullBackOff")


def handling(**spec: Any) -> ErrorHandlingConfig:
    return ErrorHandlingConfig.model_validate(spec, by_alias=True)


def later(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def test_severities() -> None:
    assert (NOT_READY.severity, CRASH.severity, NO_IMAGE.severity) == (
        Severity.WARNING, Severity.ERROR, Severity.CRITICAL,
    )  # fmt: skip
    assert classify("OOMKilled").severity is Severity.ERROR


def test_opens_after_the_threshold_of_consecutive_failures() -> None:
    config = handling(circuitBreaker={"failureThreshold": 3}, humanReviewThreshold="CRITICAL")
    breaker = Breaker()
    for _ in range(2):
        breaker = step(breaker, CRASH, config, T0)
        assert breaker.state is State.CLOSED
    assert step(Breaker(failures=2), None, config, T0).failures == 0, "a success resets"
    breaker = step(breaker, CRASH, config, T0)
    assert breaker.quarantined
    assert not breaker.needs_review
    assert replicas(breaker, 1) == 0
    assert breaker.last_failure == CRASH


def test_half_opens_after_the_timeout_and_closes_after_successes() -> None:
    config = handling(
        circuitBreaker={"failureThreshold": 1, "successThreshold": 2, "timeoutMs": 30000}
    )
    opened = step(Breaker(), CRASH, config, T0)
    assert due(opened, config, later(29), 30).state is State.OPEN
    trial = due(opened, config, later(30), 30)
    assert trial.state is State.HALF_OPEN
    assert replicas(trial, 3) == 1, "one replica on trial"
    once = step(trial, None, config, later(31))
    assert once.state is State.HALF_OPEN
    closed = step(once, None, config, later(32))
    assert closed == Breaker()
    assert replicas(closed, 3) == 3


def test_a_failure_on_trial_opens_it_again_and_the_next_trial_waits_longer() -> None:
    config = handling(
        circuitBreaker={"failureThreshold": 1, "timeoutMs": 10000},
        retryPolicy={"maxDelayMs": 60000, "jitter": False},
    )
    opened = step(Breaker(), CRASH, config, T0)
    trial = due(opened, config, later(10), 10)
    reopened = step(trial, NOT_READY, config, later(11))
    assert reopened.quarantined
    assert reopened.trips == 2
    breaker_config = config.circuit_breaker
    assert breaker_config is not None
    assert half_open_after(opened, breaker_config, config.retry_policy) == 10
    assert half_open_after(reopened, breaker_config, config.retry_policy) == 20
    many = Breaker(State.OPEN, trips=10, opened_at=T0)
    assert half_open_after(many, breaker_config, config.retry_policy) == 60, "capped"


def test_at_the_review_threshold_only_a_new_approval_releases_it() -> None:
    config = handling(humanReviewThreshold="ERROR", circuitBreaker={"failureThreshold": 5})
    quarantined = step(Breaker(), CRASH, config, T0)  # one ERROR is enough: it needs a human
    assert quarantined.quarantined
    assert quarantined.needs_review
    assert due(quarantined, config, later(3600), 60) == quarantined, "no timeout release"
    assert step(quarantined, None, config, later(10), approved_since=later(-5)) == quarantined
    released = step(quarantined, None, config, later(10), approved_since=later(5))
    assert released.state is State.HALF_OPEN


def test_never_means_no_human_review_and_disabled_means_no_breaker() -> None:
    config = handling(humanReviewThreshold="NEVER", circuitBreaker={"failureThreshold": 2})
    assert not step(Breaker(), NO_IMAGE, config, T0).quarantined
    off = handling(circuitBreaker={"enabled": False, "failureThreshold": 1})
    assert step(Breaker(), NO_IMAGE, off, T0) == Breaker()


def test_defaults_of_the_seed() -> None:
    breaker = Breaker()
    for _ in range(4):
        breaker = step(breaker, CRASH, None, T0)
    assert breaker.state is State.CLOSED
    assert step(breaker, CRASH, None, T0).quarantined, "failureThreshold 5 by default"
    assert step(Breaker(), NO_IMAGE, None, T0).needs_review, "CRITICAL reaches the default"
