"""Client.call against real runtime hosts (host.py and the samples): retries per backoff kind
with exact delays, jitter bounds and attempt numbers; errors that are not retried; the fallback;
the breaker opening, half-opening and closing; the human-review hook at its threshold; abort.
The clock, sleep and jitter source are injected: no test waits for a backoff."""

from __future__ import annotations

import queue
import socket
import uuid
from typing import Any

import pytest

from tests.integration.test_runtime_host import ERRORS, Host
from wayang_client import PluginEntry, State, provenance_ref
from wayang_client.policy import JITTER_LOW
from wayang_operator.api.errors import ErrorPayload

from .conftest import Draws, MakeClient, Time, calls, entry


def retry(**policy: Any) -> dict[str, Any]:
    return {"retryPolicy": {"jitter": False, **policy}}


def dumped(error: ErrorPayload | None) -> dict[str, Any]:
    assert error is not None
    document: dict[str, Any] = error.model_dump(mode="json", by_alias=True, exclude_none=True)
    ERRORS.validate(document)  # still a valid ErrorPayload after the SDK filled it in
    return document


@pytest.mark.parametrize(
    ("backoff", "delays"),
    [
        ("fixed", [0.1, 0.1, 0.1]),
        ("linear", [0.1, 0.2, 0.3]),
        ("exponential", [0.1, 0.2, 0.35]),  # 0.4 capped at maxDelayMs
    ],
)
def test_a_plugin_that_fails_n_times_then_succeeds_is_retried_with_its_backoff(
    hosts: dict[str, Host],
    make_client: MakeClient,
    clock: Time,
    counter: str,
    backoff: str,
    delays: list[float],
) -> None:
    flaky = entry(
        hosts["flaky"],
        "flaky",
        namespace="team-a",
        **retry(maxAttempts=4, backoff=backoff, initialDelayMs=100, maxDelayMs=350),
    )
    run = str(uuid.uuid4())
    result = make_client(flaky).call(
        "flaky", {"text": "hi"}, {"failures": 3, "counterFile": counter}, run_id=run
    )
    assert result.ok, result.error
    assert (result.port, result.output) == ("result", {"text": "hi", "call": 4})
    assert result.attempts == 4
    assert clock.sleeps == pytest.approx(delays)
    assert [e.attempt for e in result.errors] == [0, 1, 2]
    ref = provenance_ref("team-a", flaky.id, "1.0.0", flaky.digest, run)
    for error in result.errors:
        document = dumped(error)
        assert document["type"] == "ToolError"
        assert document["retryable"] is True
        assert document["maxAttempts"] == 4
        assert document["originRunId"] == run
        assert document["provenanceRef"] == ref
    assert calls(counter) == 4


def test_jitter_scales_each_delay_within_its_documented_bounds(
    hosts: dict[str, Host], make_client: MakeClient, clock: Time, counter: str
) -> None:
    flaky = entry(
        hosts["flaky"],
        "flaky",
        retryPolicy={
            "maxAttempts": 4,
            "backoff": "exponential",
            "initialDelayMs": 200,
            "maxDelayMs": 10000,
            "jitter": True,
        },
    )
    draws = Draws([0.0, 0.999999, 0.5])
    result = make_client(flaky, draws=draws).call(
        "flaky", {}, {"failures": 3, "counterFile": counter}
    )
    assert result.ok
    assert result.attempts == 4
    assert draws.drawn == [0.0, 0.999999, 0.5]
    assert clock.sleeps == pytest.approx([0.2 * 0.5, 0.4 * (0.5 + 0.5 * 0.999999), 0.8 * 0.75])
    for sleep, base in zip(clock.sleeps, [0.2, 0.4, 0.8], strict=True):
        assert JITTER_LOW * base <= sleep < base


def test_retries_stop_at_max_attempts_and_the_error_port_carries_the_last_error(
    hosts: dict[str, Host], make_client: MakeClient, clock: Time, counter: str
) -> None:
    flaky = entry(hosts["flaky"], "flaky", **retry(maxAttempts=3, initialDelayMs=100))
    result = make_client(flaky).call("flaky", {}, {"failures": 10, "counterFile": counter})
    assert (result.port, result.attempts, result.reached) == ("error", 3, True)
    assert dumped(result.error)["attempt"] == 2
    assert [e.attempt for e in result.errors] == [0, 1, 2]
    assert clock.sleeps == pytest.approx([0.1, 0.2])
    assert calls(counter) == 3


@pytest.mark.parametrize("max_attempts", [0, 1])
def test_max_attempts_zero_or_one_is_a_single_call(
    hosts: dict[str, Host], make_client: MakeClient, clock: Time, counter: str, max_attempts: int
) -> None:
    flaky = entry(hosts["flaky"], "flaky", **retry(maxAttempts=max_attempts))
    result = make_client(flaky).call("flaky", {}, {"failures": 1, "counterFile": counter})
    assert (result.port, result.attempts, clock.sleeps) == ("error", 1, [])
    assert dumped(result.error)["maxAttempts"] == 1


def test_a_non_retryable_error_is_not_retried(
    hosts: dict[str, Host], make_client: MakeClient, clock: Time, counter: str
) -> None:
    failing = entry(hosts["failing"], "failing", **retry(maxAttempts=5))
    result = make_client(failing).call("failing", {"reason": "broken"})
    document = dumped(result.error)
    assert (result.port, result.attempts, clock.sleeps) == ("error", 1, [])
    assert document["type"] == "ToolError"
    assert document["retryable"] is False
    assert "broken" in document["message"]
    assert (document["attempt"], document["maxAttempts"]) == (0, 5)

    flaky = entry(hosts["flaky"], "flaky", **retry(maxAttempts=5))
    result = make_client(flaky).call(
        "flaky", {}, {"failures": 3, "counterFile": counter, "retryable": False}
    )
    assert (result.port, result.attempts, calls(counter)) == ("error", 1, 1)


def test_a_typed_error_from_the_plugin_decides_retries_and_review(
    hosts: dict[str, Host], make_client: MakeClient, clock: Time
) -> None:
    """The plugin's own LLMError is retryable: retried to maxAttempts. Its SecurityError is not
    retried and, being CRITICAL, reaches a hook whose threshold is CRITICAL."""
    failing = entry(hosts["failing"], "failing", **retry(maxAttempts=3, backoff="fixed"))
    result = make_client(failing).call("failing", {}, {"errorType": "LLMError"})
    document = dumped(result.error)
    assert (result.port, result.attempts, len(clock.sleeps)) == ("error", 3, 2)
    assert (document["type"], document["retryable"], document["attempt"]) == ("LLMError", True, 2)

    seen: list[ErrorPayload] = []
    failing = entry(
        hosts["failing"], "failing", humanReviewThreshold="CRITICAL", **retry(maxAttempts=3)
    )
    result = make_client(failing, review=seen.append).call(
        "failing", {}, {"errorType": "SecurityError"}
    )
    assert (result.port, result.attempts, seen) == ("error", 1, [result.error])
    assert dumped(result.error)["suggestedAction"] == "escalate"


def test_a_permanent_failure_goes_to_the_fallback_once_with_the_same_inputs(
    hosts: dict[str, Host], make_client: MakeClient, clock: Time
) -> None:
    fallback = entry(hosts["flaky"], "flaky-fallback", plugin="flaky")
    failing = entry(hosts["failing"], "failing", fallbackNodeId=fallback.id, **retry(maxAttempts=3))
    result = make_client(failing, fallback).call("failing", {})
    assert result.ok, result.error
    assert result.plugin is fallback
    assert result.fallback_from is failing
    assert result.port == "result"
    assert result.output["text"] == ""
    assert [e.origin_node for e in result.errors] == ["io.wayang.samples/failing"]
    assert clock.sleeps == [], "a non-retryable failure is persistent: no retry, fallback at once"


def test_exhausted_retries_go_to_the_fallback_by_name_without_the_first_plugins_properties(
    hosts: dict[str, Host], make_client: MakeClient, clock: Time, counter: str
) -> None:
    echo = entry(hosts["echo"], "echo")
    flaky = entry(
        hosts["flaky"], "flaky", fallbackNodeId="echo", **retry(maxAttempts=2, initialDelayMs=100)
    )
    result = make_client(flaky, echo).call(
        "flaky", {"text": "hi"}, {"failures": 5, "counterFile": counter}
    )
    assert (result.port, result.output["text"]) == ("echoed", "HI!"), result.error
    assert result.plugin is echo
    assert result.attempts == 1
    assert [e.attempt for e in result.errors] == [0, 1]
    assert clock.sleeps == [0.1]


def test_the_fallback_is_tried_once_never_in_a_loop(
    hosts: dict[str, Host], make_client: MakeClient
) -> None:
    first = entry(hosts["failing"], "first", plugin="failing", fallbackNodeId="second")
    second = entry(hosts["failing"], "second", plugin="failing", fallbackNodeId="first")
    result = make_client(first, second).call("first", {})
    assert result.port == "error"
    assert result.plugin is second
    assert result.fallback_from is first
    assert len(result.errors) == 2


def test_a_missing_fallback_leaves_the_error(
    hosts: dict[str, Host], make_client: MakeClient
) -> None:
    failing = entry(hosts["failing"], "failing", fallbackNodeId="nowhere")
    result = make_client(failing).call("failing", {})
    assert (result.port, result.plugin, result.fallback_from) == ("error", failing, None)


# ------------------------------------------------------------------------------------------------
# The circuit breaker


def breaking(host: Host, **fallback: Any) -> PluginEntry:
    return entry(
        host,
        "flaky",
        circuitBreaker={"failureThreshold": 2, "successThreshold": 2, "timeoutMs": 1000},
        **retry(maxAttempts=1),
        **fallback,
    )


def test_the_breaker_opens_fails_fast_half_opens_and_closes(
    hosts: dict[str, Host], make_client: MakeClient, clock: Time, counter: str
) -> None:
    flaky = breaking(hosts["flaky"])
    client = make_client(flaky)
    breaker = client.breaker("flaky")
    properties = {"failures": 2, "counterFile": counter}

    def call() -> Any:
        return client.call("flaky", {}, properties)

    assert call().port == "error"
    assert breaker.state is State.CLOSED
    assert call().port == "error"
    assert client.breaker("flaky").state is State.OPEN
    assert calls(counter) == 2

    clock.now += 0.5
    fast = call()
    assert calls(counter) == 2, "open: no request"
    assert (fast.port, fast.attempts, fast.reached) == ("error", 0, False)
    document = dumped(fast.error)
    assert document["type"] == "ToolError"
    assert document["retryable"] is True
    assert document["suggestedAction"] == "fallback"
    assert document["details"]["reason"] == "circuit open"
    assert document["details"]["retryAfterMs"] == 500

    clock.now += 0.5
    trial = call()
    assert trial.ok
    assert calls(counter) == 3
    assert client.breaker("flaky").state is State.HALF_OPEN, (
        "one success of the two successThreshold asks"
    )
    assert call().ok
    assert client.breaker("flaky").state is State.CLOSED


def test_a_failed_trial_opens_the_breaker_again(
    hosts: dict[str, Host], make_client: MakeClient, clock: Time, counter: str
) -> None:
    flaky = breaking(hosts["flaky"])
    client = make_client(flaky)
    properties = {"failures": 3, "counterFile": counter}
    for _ in range(2):
        client.call("flaky", {}, properties)
    clock.now += 1.0
    assert client.call("flaky", {}, properties).attempts == 1, "the trial"
    assert client.breaker("flaky").state is State.OPEN
    assert client.call("flaky", {}, properties).attempts == 0, "failing fast again"
    assert calls(counter) == 3


def test_an_open_breaker_routes_to_the_fallback(
    hosts: dict[str, Host], make_client: MakeClient, counter: str
) -> None:
    echo = entry(hosts["echo"], "echo")
    flaky = breaking(hosts["flaky"], fallbackNodeId="echo")
    client = make_client(flaky, echo)
    properties = {"failures": 10, "counterFile": counter}
    assert [client.call("flaky", {"text": "a"}, properties).plugin.name for _ in range(3)] == [
        "echo",
        "echo",
        "echo",
    ]
    assert calls(counter) == 2, "the third call failed fast, straight to the fallback"


def test_the_callers_own_invalid_input_does_not_count_for_the_breaker(
    hosts: dict[str, Host], make_client: MakeClient
) -> None:
    echo = entry(hosts["echo"], "echo", circuitBreaker={"failureThreshold": 1})
    client = make_client(echo)
    for _ in range(3):
        assert client.call("echo", {"text": 42}).port == "error"
    assert client.breaker("echo").state is State.CLOSED


# ------------------------------------------------------------------------------------------------
# Human review and suggestedAction


@pytest.mark.parametrize(
    ("threshold", "reviewed"),
    [("INFO", True), ("WARNING", True), ("ERROR", False), ("CRITICAL", False), ("NEVER", False)],
)
def test_the_review_hook_gets_errors_at_or_above_the_threshold(
    hosts: dict[str, Host], make_client: MakeClient, threshold: str, reviewed: bool
) -> None:
    """failing raises a ToolError: severity WARNING."""
    seen: list[ErrorPayload] = []
    failing = entry(hosts["failing"], "failing", humanReviewThreshold=threshold)
    result = make_client(failing, review=seen.append).call("failing", {})
    assert result.port == "error"
    assert seen == ([result.error] if reviewed else [])
    assert list(result.reviewed) == seen


def test_a_queue_receives_an_error_at_the_threshold_and_abort_stops_everything(
    hosts: dict[str, Host], make_client: MakeClient, clock: Time
) -> None:
    """echo refuses a number for its text input: a ValidationError (severity ERROR) that
    suggests abort. It is not retried, not routed to the fallback, and a human sees it."""
    review: queue.Queue[ErrorPayload] = queue.Queue()
    fallback = entry(hosts["flaky"], "flaky")
    echo = entry(
        hosts["echo"],
        "echo",
        humanReviewThreshold="ERROR",
        fallbackNodeId="flaky",
        **retry(maxAttempts=3),
    )
    result = make_client(echo, fallback, review=review).call("echo", {"text": 42})
    document = dumped(result.error)
    assert (document["type"], document["suggestedAction"]) == ("ValidationError", "abort")
    assert (result.attempts, result.plugin, result.fallback_from) == (1, echo, None)
    assert clock.sleeps == []
    assert review.get_nowait() is result.error
    assert review.empty()


def test_a_retryable_time_out_is_retried_then_reviewed_at_warning(
    hosts: dict[str, Host], make_client: MakeClient, clock: Time
) -> None:
    seen: list[ErrorPayload] = []
    slow = entry(hosts["slow"], "slow", humanReviewThreshold="WARNING", **retry(maxAttempts=2))
    result = make_client(slow, review=seen.append).call("slow", {"seconds": 30})
    assert [e.type for e in result.errors] == ["Timeout", "Timeout"]
    assert result.attempts == 2
    assert clock.sleeps == [0.5]
    assert seen == [result.error]


# ------------------------------------------------------------------------------------------------
# The wire


def test_the_host_takes_the_attempt_number_into_its_error_and_log(
    hosts: dict[str, Host], make_client: MakeClient, counter: str
) -> None:
    """One request per attempt (none refused), each attempt's number in the host's log line and
    in the ErrorPayload it answers."""
    flaky = entry(hosts["flaky"], "flaky", **retry(maxAttempts=3, backoff="fixed"))
    before = len([log for log in hosts["flaky"].logs() if log["event"] == "execute"])
    result = make_client(flaky).call("flaky", {}, {"failures": 2, "counterFile": counter})
    assert (result.port, result.attempts) == ("result", 3)
    executed = [log for log in hosts["flaky"].logs() if log["event"] == "execute"][before:]
    assert [(log["status"], log["attempt"]) for log in executed] == [(200, 0), (200, 1), (200, 2)]
    assert [error.attempt for error in result.errors] == [0, 1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_refused_connection_is_a_retryable_network_error_reaching_no_plugin(
    make_client: MakeClient, clock: Time
) -> None:
    nowhere = PluginEntry.at(f"http://127.0.0.1:{free_port()}")
    result = make_client(nowhere).call(nowhere, {})
    document = dumped(result.error)
    assert document["type"] == "NetworkError"
    assert document["details"]["transport"] == "refused"
    assert (result.attempts, result.reached) == (3, False), "the seed's default: 3 attempts"
    assert len(clock.sleeps) == 2
