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
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..api.descriptor import CircuitBreaker, ErrorHandlingConfig, RetryPolicy, ReviewThreshold
from ..api.resources import BreakerState as State
from ..api.resources import BreakerStatus, WorkloadFailure


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
    delay: float | None = None
    """Seconds from opening to the half-open trial, chosen (with jitter) when it opened."""
    checked_at: datetime.datetime | None = None
    """When an observation last counted (see availability.py: at most one per interval)."""
    restarts: Mapping[str, int] = field(default_factory=dict)
    """Failures already counted per pod, so a restart is counted once however often it is seen."""
    descriptor: str | None = None
    """The hash of the descriptor whose pods it watches (workload.descriptor_hash)."""

    @property
    def quarantined(self) -> bool:
        return self.state is State.OPEN

    def to_status(self) -> dict[str, Any]:
        """The breaker as `status.workload.breaker` (BreakerStatus)."""
        failure = self.last_failure
        return BreakerStatus(
            state=self.state,
            failures=self.failures,
            successes=self.successes,
            trips=self.trips,
            opened_at=_stamp(self.opened_at),
            half_open_after_seconds=self.delay,
            needs_review=self.needs_review,
            last_failure=None
            if failure is None
            else WorkloadFailure(
                reason=failure.reason[:253],
                severity=failure.severity.name,  # type: ignore[arg-type] # the same four names
                message=failure.message[:4096],
            ),
            checked_at=_stamp(self.checked_at),
            restarts=dict(self.restarts),
            descriptor=self.descriptor,
        ).model_dump(mode="json", by_alias=True, exclude_none=True)

    @classmethod
    def from_status(cls, status: Mapping[str, Any] | None) -> Breaker:
        """The breaker a status holds; a missing or unreadable one is a closed breaker."""
        try:
            model = BreakerStatus.model_validate(dict(status or {}), by_alias=True, by_name=False)
        except ValueError:
            return cls()
        failure = model.last_failure
        return cls(
            state=model.state,
            failures=model.failures,
            successes=model.successes,
            opened_at=_parse(model.opened_at),
            trips=model.trips,
            last_failure=None
            if failure is None
            else Failure(failure.reason, Severity[failure.severity], failure.message),
            needs_review=model.needs_review,
            delay=model.half_open_after_seconds,
            checked_at=_parse(model.checked_at),
            restarts=dict(model.restarts),
            descriptor=model.descriptor,
        )


def _stamp(moment: datetime.datetime | None) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(stamp: str | None) -> datetime.datetime | None:
    if stamp is None:
        return None
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


FETCH_REFUSED = "ArtifactRefused"
"""A hosted plugin's pod refused its artifact (its bytes are not the pinned digest, or it
cannot be fetched): critical, like an image that cannot be pulled."""


def classify(reason: str, message: str = "") -> Failure:
    """A workload's waiting/terminated reason as a failure with its severity."""
    critical = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
                FETCH_REFUSED}  # fmt: skip
    errors = {"CrashLoopBackOff", "OOMKilled", "Error", "CreateContainerConfigError",
              "CreateContainerError", "RunContainerError", "ContainerCannotRun"}  # fmt: skip
    if reason in critical:
        severity = Severity.CRITICAL
    elif reason in errors:
        severity = Severity.ERROR
    else:
        severity = Severity.WARNING
    return Failure(reason, severity, message or reason)


def configured(handling: ErrorHandlingConfig | None) -> tuple[CircuitBreaker, ReviewThreshold]:
    """The breaker's settings and review threshold, with the seed's defaults where unset."""
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
    config, threshold = configured(handling)
    if not config.enabled:
        return Breaker()
    if breaker.state is State.OPEN:
        if breaker.needs_review:
            released = approved_since and breaker.opened_at and approved_since > breaker.opened_at
            trial = Breaker(State.HALF_OPEN, trips=breaker.trips, restarts=breaker.restarts)
            return trial if released else breaker
        return breaker  # the timer (`due`) moves it to half-open, not an observation
    if failure is None:
        if breaker.state is State.HALF_OPEN:
            successes = breaker.successes + 1
            if successes >= config.success_threshold:
                return Breaker(restarts=breaker.restarts)
            return replace(breaker, successes=successes)
        return replace(breaker, failures=0)
    review = threshold != ReviewThreshold.NEVER and failure.severity >= _THRESHOLD[threshold]
    failures = breaker.failures + 1
    if breaker.state is State.HALF_OPEN or failures >= config.failure_threshold or review:
        opened = Breaker(
            State.OPEN,
            failures=failures,
            opened_at=now,
            trips=breaker.trips + 1,
            last_failure=failure,
            needs_review=review,
            restarts=breaker.restarts,
        )
        retry = handling.retry_policy if handling else None
        return replace(opened, delay=half_open_after(opened, config, retry))
    return replace(breaker, failures=failures, last_failure=failure)


def due(
    breaker: Breaker,
    handling: ErrorHandlingConfig | None,
    now: datetime.datetime,
    delay: float | None = None,
) -> Breaker:
    """Half-open an open breaker whose `delay` (default: the one chosen when it opened) has
    passed, unless it waits for a human."""
    if breaker.state is not State.OPEN or breaker.needs_review or breaker.opened_at is None:
        return breaker
    wait = delay if delay is not None else breaker.delay or 0.0
    if (now - breaker.opened_at).total_seconds() >= wait:
        return Breaker(
            State.HALF_OPEN,
            trips=breaker.trips,
            last_failure=breaker.last_failure,
            restarts=breaker.restarts,
        )
    return breaker


def replicas(breaker: Breaker, wanted: int) -> int:
    """Open: none; half-open: one on trial; closed: what the plugin wants."""
    if breaker.state is State.OPEN:
        return 0
    return min(wanted, 1) if breaker.state is State.HALF_OPEN else wanted
