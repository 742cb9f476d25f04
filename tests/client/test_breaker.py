"""The call-level breaker's state machine, on a fake clock."""

from __future__ import annotations

from typing import Any

from wayang_client.breaker import CallBreaker, Outcome, State
from wayang_operator.api.descriptor import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def breaker(**config: Any) -> tuple[CallBreaker, Clock]:
    clock = Clock()
    settings = {"failureThreshold": 3, "successThreshold": 2, "timeoutMs": 1000, **config}
    return CallBreaker(CircuitBreaker.model_validate(settings, by_alias=True), clock), clock


def state(b: CallBreaker) -> State:
    """The state now (mypy would keep an earlier assertion's narrowing of `b.state`)."""
    return b.state


def call(b: CallBreaker, outcome: Outcome) -> bool:
    admission = b.admit()
    if admission.allowed:
        b.record(admission, outcome)
    return admission.allowed


def test_consecutive_failures_open_it_and_a_success_resets_the_count() -> None:
    b, _ = breaker()
    assert call(b, Outcome.FAILURE)
    assert call(b, Outcome.FAILURE)
    assert call(b, Outcome.SUCCESS)
    assert (b.state, b.failures) == (State.CLOSED, 0)
    for _ in range(3):
        assert call(b, Outcome.FAILURE)
    assert b.state is State.OPEN
    refused = b.admit()
    assert (refused.allowed, refused.state, refused.failures) == (False, State.OPEN, 3)
    assert refused.retry_after_ms == 1000


def test_after_the_timeout_one_trial_at_a_time_then_closed_after_enough_successes() -> None:
    b, clock = breaker(failureThreshold=1)
    call(b, Outcome.FAILURE)
    clock.now += 0.999
    assert b.admit().retry_after_ms == 1
    clock.now += 0.001
    trial = b.admit()
    assert (trial.allowed, trial.trial, b.state) == (True, True, State.HALF_OPEN)
    other = b.admit()
    assert (other.allowed, other.retry_after_ms) == (False, 0), "one trial at a time"
    assert b.record(trial, Outcome.SUCCESS) is State.HALF_OPEN
    assert call(b, Outcome.SUCCESS)
    assert b.state is State.CLOSED


def test_a_failed_trial_opens_it_again_with_a_new_timeout() -> None:
    b, clock = breaker(failureThreshold=1)
    call(b, Outcome.FAILURE)
    clock.now += 1.0
    assert call(b, Outcome.FAILURE)
    assert b.state is State.OPEN
    assert b.admit().retry_after_ms == 1000


def test_a_neutral_outcome_moves_nothing_and_frees_the_trial() -> None:
    b, clock = breaker(failureThreshold=1)
    assert call(b, Outcome.NEUTRAL)
    assert b.state is State.CLOSED
    call(b, Outcome.FAILURE)
    clock.now += 1.0
    assert call(b, Outcome.NEUTRAL)
    assert state(b) is State.HALF_OPEN
    assert b.admit().trial, "the trial slot was given back"


def test_a_call_from_before_the_opening_does_not_steal_the_trial() -> None:
    b, clock = breaker(failureThreshold=1)
    early = b.admit()
    call(b, Outcome.FAILURE)
    clock.now += 1.0
    trial = b.admit()
    b.record(early, Outcome.SUCCESS)
    assert (b.state, b.successes) == (State.HALF_OPEN, 0)
    assert not b.admit().allowed, "the trial is still under way"
    b.record(trial, Outcome.SUCCESS)
    assert b.successes == 1


def test_a_disabled_breaker_lets_everything_through() -> None:
    b, _ = breaker(enabled=False, failureThreshold=1)
    for _ in range(5):
        assert call(b, Outcome.FAILURE)
    assert b.state is State.CLOSED
