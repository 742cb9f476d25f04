"""The pure rules: the backoff schedule, jitter bounds, severities, the review threshold, what
each suggestedAction asks for, the provenance reference."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from wayang_client import policy
from wayang_client.policy import SEVERITY, Severity, Step
from wayang_operator.api.descriptor import RetryPolicy, ReviewThreshold
from wayang_operator.api.errors import ErrorPayload, ErrorType


def retry_policy(**fields: Any) -> RetryPolicy:
    return RetryPolicy.model_validate({"jitter": False, **fields}, by_alias=True)


def error(**fields: Any) -> ErrorPayload:
    document = {
        "type": "ToolError",
        "message": "m",
        "retryable": True,
        "originNode": "acme/x",
        "timestamp": "2026-01-01T00:00:00Z",
        **fields,
    }
    return ErrorPayload.model_validate(document, by_alias=True)


@pytest.mark.parametrize(
    ("backoff", "schedule"),
    [
        ("fixed", [500, 500, 500, 500, 500]),
        ("linear", [500, 1000, 1500, 2000, 2500]),
        ("exponential", [500, 1000, 2000, 4000, 8000]),
    ],
)
def test_each_backoff_kind_has_its_schedule(backoff: str, schedule: list[int]) -> None:
    chosen = retry_policy(backoff=backoff, maxAttempts=6)
    assert [policy.backoff_ms(chosen, n) for n in range(1, 6)] == schedule
    assert policy.schedule(chosen) == [ms / 1000 for ms in schedule]


def test_delays_are_capped_at_max_delay() -> None:
    chosen = retry_policy(maxAttempts=10, initialDelayMs=1000, maxDelayMs=5000)
    assert policy.schedule(chosen) == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0]


def test_the_seeds_default_policy() -> None:
    assert policy.schedule(RetryPolicy(jitter=False)) == [0.5, 1.0]
    assert policy.attempts_allowed(RetryPolicy()) == 3


@pytest.mark.parametrize("draw", [0.0, 0.25, 0.5, 0.999999, -1.0, 7.0])
def test_jitter_keeps_a_delay_between_half_and_all_of_it(draw: float) -> None:
    jittered = retry_policy(jitter=True, initialDelayMs=1000)
    seconds = policy.delay_seconds(jittered, 1, draw)
    assert policy.JITTER_LOW * 1.0 <= seconds <= 1.0
    if 0 <= draw < 1:
        assert seconds == pytest.approx(0.5 + 0.5 * draw)
    assert policy.delay_seconds(retry_policy(initialDelayMs=1000), 1, draw) == 1.0


def test_retries_count_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        policy.backoff_ms(RetryPolicy(), 0)


@pytest.mark.parametrize(("attempts", "allowed"), [(0, 1), (1, 1), (2, 2), (10, 10)])
def test_max_attempts_counts_the_first_call(attempts: int, allowed: int) -> None:
    assert policy.attempts_allowed(retry_policy(maxAttempts=attempts)) == allowed


def test_every_error_type_has_a_severity() -> None:
    assert set(SEVERITY) == set(ErrorType)
    assert SEVERITY[ErrorType.SECURITY_ERROR] is Severity.CRITICAL
    assert {t for t, s in SEVERITY.items() if s is Severity.ERROR} == {
        ErrorType.PLUGIN_LOAD_ERROR,
        ErrorType.UNKNOWN_ERROR,
        ErrorType.VALIDATION_ERROR,
    }
    assert {t for t, s in SEVERITY.items() if s is Severity.WARNING} == {
        ErrorType.TOOL_ERROR,
        ErrorType.LLM_ERROR,
        ErrorType.NETWORK_ERROR,
        ErrorType.TIMEOUT,
    }


def test_details_severity_wins_over_the_type() -> None:
    assert policy.severity(error(details={"severity": "critical"})) is Severity.CRITICAL
    assert policy.severity(error(details={"severity": "INFO"})) is Severity.INFO
    assert policy.severity(error(details={"severity": "fatal"})) is Severity.WARNING
    assert policy.severity(error(details={"severity": 4})) is Severity.WARNING


@pytest.mark.parametrize(
    ("kind", "threshold", "reviewed"),
    [
        ("ToolError", "INFO", True),
        ("ToolError", "WARNING", True),
        ("ToolError", "ERROR", False),
        ("ValidationError", "ERROR", True),
        ("ValidationError", "CRITICAL", False),
        ("SecurityError", "CRITICAL", True),
        ("SecurityError", "NEVER", False),
    ],
)
def test_the_review_threshold(kind: str, threshold: str, reviewed: bool) -> None:
    assert policy.needs_review(error(type=kind), ReviewThreshold(threshold)) is reviewed


@pytest.mark.parametrize("action", ["human_review", "escalate"])
def test_an_error_that_asks_for_a_human_is_reviewed_below_the_threshold_but_not_never(
    action: str,
) -> None:
    asking = error(suggestedAction=action)
    assert policy.needs_review(asking, ReviewThreshold.CRITICAL)
    assert not policy.needs_review(asking, ReviewThreshold.NEVER)


@pytest.mark.parametrize(
    ("action", "retryable", "step"),
    [
        (None, True, Step.RETRY),
        (None, False, Step.FALLBACK),
        ("retry", True, Step.RETRY),
        ("retry", False, Step.FALLBACK),
        ("fallback", True, Step.FALLBACK),
        ("human_review", True, Step.REVIEW),
        ("escalate", True, Step.REVIEW),
        ("abort", True, Step.ABORT),
        ("auto_fix", True, Step.SURFACE),
    ],
)
def test_suggested_actions(action: str | None, retryable: bool, step: Step) -> None:
    fields: dict[str, Any] = {"retryable": retryable}
    if action:
        fields["suggestedAction"] = action
    assert policy.next_step(error(**fields)) is step


def test_the_provenance_reference_is_a_documented_uuid5() -> None:
    run = "0b6f9c1e-8d3f-4a57-9b1d-2c4e6f8a0b1c"
    digest = "sha256:" + "ab" * 32
    ref = policy.provenance_ref("team-a", "acme/echo", "1.0.0", digest, run)
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, "https://wayang.io/provenance")
    assert ref == str(uuid.uuid5(namespace, f"team-a/acme/echo/1.0.0/{digest}/{run}"))
    assert uuid.UUID(ref).version == 5
    assert ref == policy.provenance_ref("team-a", "acme/echo", "1.0.0", digest, run)
    assert ref != policy.provenance_ref("team-b", "acme/echo", "1.0.0", digest, run)
