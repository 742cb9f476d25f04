"""The circuit breaker around a plugin's workload (the seed's errorHandling.circuitBreaker).

Each observation of the workload is a success (ready, no new restarts) or a failure with a
severity: a failing readiness probe is a WARNING, a crash, an OOM kill or a configuration error
is an ERROR, an image that cannot be had (the approved digest is not there) is CRITICAL.
`failureThreshold` consecutive failures open the breaker: the plugin is Quarantined and scaled to
zero. After `timeoutMs` it half-opens (one replica on trial); `successThreshold` successes close
it, one failure opens it again. A failure at or above the plugin's `humanReviewThreshold` keeps it
quarantined until someone approves the plugin again (an approval newer than the quarantine), not
just until the timeout. Restarts in between are left to the kubelet's own exponential backoff;
the operator adds jittered exponential delays to its half-open trials.
"""

from __future__ import annotations

import datetime
import enum
import random
from dataclasses import dataclass, replace

from ..api.descriptor import CircuitBreaker, ErrorHandlingConfig, RetryPolicy, ReviewThreshold


class State(enum.StrEnum):
    CLOSED = "Closed"
    OPEN = "Open"
    HALF_OPEN = "HalfOpen"


class Severity(enum.IntEnum):
    INFO = 1
    WARNING = 2
    ERROR = 3
    CRITICAL = 4


_THRESHOLD = {
    ReviewThreshold.INFO: Severity.INFO,
    ReviewThreshold.WARNING: Severity.WARNING,
    ReviewThreshold.ERROR: Severity.ERROR,
    ReviewThreshold.CRITICAL: Severity.CRITICAL,
}


@dataclass(frozen=True)
class Failure:
    reason: str
    """Machine-readable (CrashLoopBackOff, OOMKilled, ImagePullBackOff, NotReady, ...)."""
    severity: Severity
    message: str


@dataclass(frozen=True)
class Breaker:
    """What the plugin's status remembers between observations."""

    state: State = State.CLOSED
    failures: int = 0
    """Consecutive failures (closed) ..."""
    successes: int = 0
    """... or consecutive successes while half-open."""
    opened_at: datetime.datetime | None = None
    trips: int = 0
    """How many times it opened since the last close (drives the half-open backoff)."""
    last_failure: Failure | None = None
    needs_review: bool = False
    """Opened by a failure at or above humanReviewThreshold: only a new approval releases it."""

    @property
    def quarantined(self) -> bool:
        return self.state is State.OPEN


def classify(reason: str, message: str = "") -> Failure:
    """A workload's waiting/terminated reason as a failure with its severity."""
    critical = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
    errors = {"CrashLoopBackOff", "OOMKilled", "Error", "CreateContainerConfigError",
              "CreateContainerError", "RunContainerError", "ContainerCannotRun"}  # fmt: skip
    if reason in critical:
        severity = Severity.CRITICAL
    elif reason in errors:
        severity = Severity.ERROR
    else:
        severity = Severity.WARNING
    return Failure(reason, severity, message or reason)


def _settings(handling: ErrorHandlingConfig | None) -> tuple[CircuitBreaker, ReviewThreshold]:
    handling = handling or ErrorHandlingConfig()
    return handling.circuit_breaker or CircuitBreaker(), handling.human_review_threshold


def half_open_after(breaker: Breaker, config: CircuitBreaker, retry: RetryPolicy | None) -> float:
    """Seconds after opening until the trial: timeoutMs, doubled per repeated trip (capped by
    the retry policy's maxDelayMs when larger), with jitter so plugins do not retry in step."""
    base = config.timeout_ms / 1000
    cap = max(base, (retry.max_delay_ms / 1000) if retry else base)
    delay = float(min(cap, base * 2.0 ** max(0, breaker.trips - 1)))
    if retry is None or retry.jitter:
        delay *= random.uniform(0.8, 1.0)  # noqa: S311 - jitter, not crypto
    return delay


def step(
    breaker: Breaker,
    failure: Failure | None,
    handling: ErrorHandlingConfig | None,
    now: datetime.datetime,
    *,
    approved_since: datetime.datetime | None = None,
) -> Breaker:
    """The breaker after one observation (`failure` None = a success).

    `approved_since` is the newest approval's creation time: an approval after the quarantine
    began releases a breaker that needs review.
    """
    config, threshold = _settings(handling)
    if not config.enabled:
        return Breaker()
    if breaker.state is State.OPEN:
        if breaker.needs_review:
            released = approved_since and breaker.opened_at and approved_since > breaker.opened_at
            return Breaker(State.HALF_OPEN, trips=breaker.trips) if released else breaker
        return breaker  # the timer (`due`) moves it to half-open, not an observation
    if failure is None:
        if breaker.state is State.HALF_OPEN:
            successes = breaker.successes + 1
            if successes >= config.success_threshold:
                return Breaker()
            return replace(breaker, successes=successes)
        return replace(breaker, failures=0)
    review = threshold != ReviewThreshold.NEVER and failure.severity >= _THRESHOLD[threshold]
    failures = breaker.failures + 1
    if breaker.state is State.HALF_OPEN or failures >= config.failure_threshold or review:
        return Breaker(
            State.OPEN,
            failures=failures,
            opened_at=now,
            trips=breaker.trips + 1,
            last_failure=failure,
            needs_review=review,
        )
    return replace(breaker, failures=failures, last_failure=failure)


def due(
    breaker: Breaker,
    handling: ErrorHandlingConfig | None,
    now: datetime.datetime,
    delay: float,
) -> Breaker:
    """Half-open an open breaker whose `delay` (from `half_open_after`) has passed, unless it
    waits for a human."""
    if breaker.state is not State.OPEN or breaker.needs_review or breaker.opened_at is None:
        return breaker
    if (now - breaker.opened_at).total_seconds() >= delay:
        return Breaker(State.HALF_OPEN, trips=breaker.trips, last_failure=breaker.last_failure)
    return breaker


def replicas(breaker: Breaker, wanted: int) -> int:
    """Open: none; half-open: one on trial; closed: what the plugin wants."""
    if breaker.state is State.OPEN:
        return 0
    return min(wanted, 1) if breaker.state is State.HALF_OPEN else wanted
