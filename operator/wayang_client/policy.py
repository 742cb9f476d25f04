"""What a plugin's own errorHandling means for one call, as pure functions: the backoff schedule,
the severity of an error, what its suggestedAction asks for, and the provenance reference.

Everything here is deterministic given its inputs (the jitter draw is an argument), so the
schedule, the thresholds and the routing are unit-tested without a clock, a random source or a
plugin. client.py strings them together around real calls.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping

from wayang_operator.api.descriptor import Backoff, RetryPolicy, ReviewThreshold
from wayang_operator.api.errors import ErrorPayload, ErrorType, SuggestedAction

JITTER_LOW = 0.5
"""With `jitter: true` a delay is multiplied by a factor drawn uniformly from [JITTER_LOW, 1.0):
half the delay is kept for sure, the other half spreads callers that failed together. The
delay never exceeds maxDelayMs (the cap applies before the jitter)."""


def attempts_allowed(policy: RetryPolicy) -> int:
    """How many times a call is sent in all: `maxAttempts` counts the first call (as in the
    ErrorPayload's 0-based `attempt` < `maxAttempts`); 0 and 1 both mean one call, no retry."""
    return max(1, policy.max_attempts)


def backoff_ms(policy: RetryPolicy, retry: int) -> float:
    """The delay before the `retry`-th retry (1 = the second attempt), without jitter: fixed =
    initialDelayMs; linear = initialDelayMs * retry; exponential = initialDelayMs * 2^(retry-1);
    each capped at maxDelayMs."""
    if retry < 1:
        raise ValueError(f"retries count from 1, got {retry}")
    initial = float(policy.initial_delay_ms)
    growth = {
        Backoff.FIXED: 1.0,
        Backoff.LINEAR: float(retry),
        Backoff.EXPONENTIAL: 2.0 ** (retry - 1),
    }
    return min(initial * growth[policy.backoff], float(policy.max_delay_ms))


def delay_seconds(policy: RetryPolicy, retry: int, draw: float) -> float:
    """The sleep before the `retry`-th retry, in seconds; `draw` in [0, 1) is the jitter source's
    number, used only when the policy has `jitter: true`."""
    delay = backoff_ms(policy, retry)
    if policy.jitter:
        delay *= JITTER_LOW + (1.0 - JITTER_LOW) * min(max(draw, 0.0), 1.0)
    return delay / 1000.0


def schedule(policy: RetryPolicy, draws: Mapping[int, float] | None = None) -> list[float]:
    """Every sleep a call that keeps failing with retryable errors makes, in seconds (`draws`:
    the jitter draw per retry, 0 where missing): a helper for documentation and tests."""
    return [
        delay_seconds(policy, retry, (draws or {}).get(retry, 0.0))
        for retry in range(1, attempts_allowed(policy))
    ]


class Severity(enum.IntEnum):
    """How bad an error is, for humanReviewThreshold (ErrorPayload itself has no severity)."""

    INFO = 1
    WARNING = 2
    ERROR = 3
    CRITICAL = 4


SEVERITY: dict[ErrorType, Severity] = {
    ErrorType.SECURITY_ERROR: Severity.CRITICAL,
    ErrorType.PLUGIN_LOAD_ERROR: Severity.ERROR,
    ErrorType.UNKNOWN_ERROR: Severity.ERROR,
    ErrorType.VALIDATION_ERROR: Severity.ERROR,
    ErrorType.TOOL_ERROR: Severity.WARNING,
    ErrorType.LLM_ERROR: Severity.WARNING,
    ErrorType.NETWORK_ERROR: Severity.WARNING,
    ErrorType.TIMEOUT: Severity.WARNING,
}
"""The severity of each error type: a security failure is critical; a plugin that does not load,
breaks its contract or fails in an unknown way is an error; a tool, model, network or time-out
failure (the kinds retries and fallbacks exist for) is a warning."""


def severity(error: ErrorPayload) -> Severity:
    """`details.severity` when the payload says one (INFO, WARNING, ERROR, CRITICAL, any case),
    else the type's (SEVERITY)."""
    stated = (error.details or {}).get("severity")
    if isinstance(stated, str) and stated.upper() in Severity.__members__:
        return Severity[stated.upper()]
    return SEVERITY.get(ErrorType(error.type), Severity.ERROR)


ASKS_A_HUMAN = frozenset({SuggestedAction.HUMAN_REVIEW, SuggestedAction.ESCALATE})


def needs_review(error: ErrorPayload, threshold: ReviewThreshold) -> bool:
    """Whether the human-review hook gets this error: its severity is at or above the plugin's
    humanReviewThreshold, or it asks for a human (suggestedAction human_review or escalate);
    never with the threshold NEVER."""
    if threshold is ReviewThreshold.NEVER:
        return False
    if error.suggested_action in ASKS_A_HUMAN:
        return True
    return severity(error) >= Severity[threshold.value]


class Step(enum.Enum):
    """What to do after a failed attempt."""

    RETRY = "retry"
    """Send the call again after the backoff (if attempts are left; else FALLBACK)."""
    FALLBACK = "fallback"
    """Persistent failure: route to fallbackNodeId (if any) at once."""
    REVIEW = "review"
    """Hand the error to a human: no retry, no fallback."""
    ABORT = "abort"
    """Stop: no retry, no fallback."""
    SURFACE = "surface"
    """auto_fix: return the error as it is for a self-healing node to act on."""


def next_step(error: ErrorPayload) -> Step:
    """What the error's suggestedAction asks for. retry (or none) retries only a retryable
    error; a non-retryable one without advice is a persistent failure (fallback)."""
    action = error.suggested_action
    if action is SuggestedAction.ABORT:
        return Step.ABORT
    if action in ASKS_A_HUMAN:
        return Step.REVIEW
    if action is SuggestedAction.AUTO_FIX:
        return Step.SURFACE
    if action is SuggestedAction.FALLBACK:
        return Step.FALLBACK
    return Step.RETRY if error.retryable else Step.FALLBACK


PROVENANCE_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://wayang.io/provenance")
"""The UUID5 namespace of provenance references."""


def provenance_ref(namespace: str, plugin_id: str, version: str, digest: str, run_id: str) -> str:
    """The ErrorPayload's `provenanceRef`: UUID5 (PROVENANCE_NAMESPACE) of
    `<namespace>/<plugin id>/<version>/<digest>/<run id>` (namespace empty without a cluster).
    Every attempt of one run of one plugin artifact shares it, so the engine records it once
    beside the call and anyone can recompute it from the audit log's fields."""
    name = f"{namespace}/{plugin_id}/{version}/{digest}/{run_id}"
    return str(uuid.uuid5(PROVENANCE_NAMESPACE, name))
