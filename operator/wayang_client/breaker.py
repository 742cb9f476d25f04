"""The call-level circuit breaker of one plugin (errorHandling.circuitBreaker), as the engine
sees it: a state machine over the outcomes of whole calls (after their retries), with the clock
injected so every transition is tested without waiting.

- closed → open: `failureThreshold` consecutive failed calls;
- open → half-open: once `timeoutMs` has passed (checked when the next call comes);
- half-open → closed: `successThreshold` successful trial calls; → open: a failed trial.

While open, calls fail fast (no request). Half-open admits one trial call at a time; the others
fail fast until it ends. A disabled breaker admits everything. (The operator's own breaker,
core/breaker.py, watches the plugin's pods; this one watches the calls the engine makes.)
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from dataclasses import dataclass

from wayang_operator.api.descriptor import CircuitBreaker


class State(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class Outcome(enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    NEUTRAL = "neutral"
    """The call says nothing about the plugin's health (the caller's own invalid input): the
    breaker does not move, a trial slot is given back."""


@dataclass(frozen=True)
class Admission:
    allowed: bool
    state: State
    """The state the call was admitted (or refused) in."""
    retry_after_ms: int = 0
    """When refused: how long until the breaker half-opens (0 while a trial is under way)."""
    failures: int = 0
    """When refused: the consecutive failed calls that opened it."""
    trial: bool = False
    """Admitted as the half-open breaker's trial call."""


class CallBreaker:
    """One plugin's breaker; thread-safe (an engine calls a plugin from many threads)."""

    def __init__(self, config: CircuitBreaker, clock: Callable[[], float]) -> None:
        self.config = config
        self._clock = clock
        self._lock = threading.Lock()
        self.state = State.CLOSED
        self.failures = 0
        """Consecutive failed calls (closed), or those that opened it (open)."""
        self.successes = 0
        """Successful trials so far (half-open)."""
        self.opened_at: float | None = None
        self._trial = False

    def admit(self) -> Admission:
        """May a call go out now? Moves open to half-open once timeoutMs has passed."""
        if not self.config.enabled:
            return Admission(True, State.CLOSED)
        with self._lock:
            if self.state is State.OPEN:
                assert self.opened_at is not None
                waited_ms = (self._clock() - self.opened_at) * 1000.0
                if waited_ms < self.config.timeout_ms:
                    left = max(1, round(self.config.timeout_ms - waited_ms))
                    return Admission(False, State.OPEN, left, self.failures)
                self.state, self.successes, self._trial = State.HALF_OPEN, 0, False
            if self.state is State.HALF_OPEN:
                if self._trial:
                    return Admission(False, State.HALF_OPEN, 0, self.failures)
                self._trial = True
                return Admission(True, State.HALF_OPEN, trial=True)
            return Admission(True, State.CLOSED)

    def record(self, admission: Admission, outcome: Outcome) -> State:
        """The end of a call `admit` let through; returns the state after it."""
        if not self.config.enabled:
            return State.CLOSED
        with self._lock:
            if admission.trial:
                self._trial = False
            if outcome is Outcome.NEUTRAL:
                return self.state
            if self.state is State.HALF_OPEN and admission.trial:
                if outcome is Outcome.FAILURE:
                    self._open()
                else:
                    self.successes += 1
                    if self.successes >= self.config.success_threshold:
                        self.state, self.failures, self.successes = State.CLOSED, 0, 0
                return self.state
            if self.state is State.CLOSED:
                if outcome is Outcome.SUCCESS:
                    self.failures = 0
                else:
                    self.failures += 1
                    if self.failures >= self.config.failure_threshold:
                        self._open()
            # A call admitted while closed that ends after another opened the breaker changes
            # nothing: the open breaker already counts.
            return self.state

    def _open(self) -> None:
        self.state, self.opened_at, self.successes = State.OPEN, self._clock(), 0
