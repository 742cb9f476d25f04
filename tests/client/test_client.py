"""Client.call on a scripted transport: what the real samples cannot produce (a retryable error
that suggests abort, fallback or auto_fix, a stated severity, a proxy's 5xx, a client-side
time-out), the attempt field a newer host accepts, and the trace context sent."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from wayang_client import Client, PluginEntry, PluginIndex, Reply, TransportError
from wayang_client import trace as tracing
from wayang_operator.api.errors import ErrorPayload

from .conftest import Draws, Ids, Time

ENTRY = PluginEntry(
    name="tool", id="acme/tool", version="1.0.0", digest="sha256:" + "0" * 64,
    endpoint="http://tool", success_port="done",
)  # fmt: skip
FALLBACK = PluginEntry(
    name="spare", id="acme/spare", version="1.0.0", digest="", endpoint="http://spare"
)


def failure(**fields: Any) -> Reply:
    payload = {
        "type": "ToolError",
        "message": "it broke",
        "retryable": True,
        "originNode": "acme/tool",
        "timestamp": "2026-01-01T00:00:00Z",
        **fields,
    }
    return Reply(200, json.dumps({"port": "error", "error": payload}).encode())


SUCCESS = Reply(200, b'{"port": "done", "output": {"ok": true}, "runId": "x"}')


@dataclass
class Scripted:
    """Answers in turn; records each request's document and headers."""

    answers: list[Reply | TransportError]
    sent: list[tuple[str, dict[str, Any], dict[str, str]]] = field(default_factory=list)

    def post(
        self,
        entry: PluginEntry,
        document: Mapping[str, Any],
        headers: Mapping[str, str],
        timeout: float,
    ) -> Reply:
        self.sent.append((entry.name, dict(document), dict(headers)))
        answer = self.answers.pop(0) if self.answers else SUCCESS
        if isinstance(answer, TransportError):
            raise answer
        return answer

    def close(self) -> None:
        pass


def client(transport: Scripted, *entries: PluginEntry, **options: Any) -> tuple[Client, Time]:
    clock = Time()
    made = Client(
        PluginIndex(entries or (ENTRY, FALLBACK)),
        transport=transport,
        sleep=clock.sleep,
        clock=clock,
        random=Draws(),
        ids=Ids(),
        **options,
    )
    return made, clock


def with_fallback(**handling: Any) -> PluginEntry:
    return PluginEntry.from_index(
        ENTRY.to_index() | {"errorHandling": {"fallbackNodeId": "spare", **handling}}
    )


def test_a_host_that_takes_the_attempt_field_gets_every_attempt_number() -> None:
    transport = Scripted([failure(), failure()])
    result = client(transport)[0].call("tool", {"a": 1}, {"p": 2})
    assert result.ok
    assert result.output == {"ok": True}
    assert [doc["attempt"] for _, doc, _ in transport.sent] == [0, 1, 2]
    assert transport.sent[0][1] == {
        "inputs": {"a": 1},
        "properties": {"p": 2},
        "runId": result.run_id,
        "attempt": 0,
    }
    assert len({doc["runId"] for _, doc, _ in transport.sent}) == 1, "one run id for all"


def test_a_host_from_before_the_attempt_field_is_called_without_it() -> None:
    """Such a host answers 400 naming the unknown field: the call is sent again without it, and
    that endpoint never gets it again."""
    old = {
        "type": "ValidationError",
        "message": "unknown request field(s) attempt: expected inputs, properties, runId",
        "retryable": False,
        "originNode": "acme/tool",
        "timestamp": "2026-01-01T00:00:00Z",
        "details": {"stage": "request"},
    }
    refusal = Reply(400, json.dumps({"error": old}).encode())
    transport = Scripted([refusal])
    made = client(transport)[0]
    assert made.call("tool", {}).ok
    assert made.call("tool", {}).ok
    assert ["attempt" in doc for _, doc, _ in transport.sent] == [True, False, False]


def test_the_attempt_field_is_not_sent_when_turned_off() -> None:
    transport = Scripted([])
    client(transport, send_attempt=False)[0].call("tool", {})
    assert "attempt" not in transport.sent[0][1]


def test_a_retryable_error_that_suggests_abort_is_not_retried_nor_routed() -> None:
    transport = Scripted([failure(suggestedAction="abort")])
    made, clock = client(transport, with_fallback(), FALLBACK)
    result = made.call("tool", {})
    assert (result.port, result.attempts, result.plugin.name, clock.sleeps) == (
        "error", 1, "tool", [],
    )  # fmt: skip
    assert len(transport.sent) == 1


def test_suggested_fallback_goes_to_the_fallback_at_once() -> None:
    transport = Scripted([failure(suggestedAction="fallback")])
    result = client(transport, with_fallback(), FALLBACK)[0].call("tool", {"x": 1})
    assert [name for name, _, _ in transport.sent] == ["tool", "spare"]
    assert transport.sent[1][1]["inputs"] == {"x": 1}
    assert result.ok
    assert result.plugin.name == "spare"
    assert result.fallback_from is not None


@pytest.mark.parametrize("action", ["human_review", "escalate"])
def test_asking_for_a_human_goes_to_the_hook_without_retry_or_fallback(action: str) -> None:
    seen: list[ErrorPayload] = []
    transport = Scripted([failure(suggestedAction=action)])
    made, _ = client(transport, with_fallback(), FALLBACK, review=seen.append)
    result = made.call("tool", {})
    assert len(transport.sent) == 1
    assert seen == [result.error]


def test_auto_fix_surfaces_the_error_as_it_is() -> None:
    transport = Scripted([failure(suggestedAction="auto_fix")])
    made, _ = client(transport, with_fallback(), FALLBACK)
    result = made.call("tool", {})
    assert len(transport.sent) == 1
    assert result.error is not None
    assert result.error.suggested_action == "auto_fix"


def test_a_stated_severity_decides_the_review() -> None:
    seen: list[ErrorPayload] = []
    critical = failure(retryable=False, details={"severity": "CRITICAL"})
    made, _ = client(Scripted([critical, failure(retryable=False)]), review=seen.append)
    made.call("tool", {})
    made.call("tool", {})
    assert len(seen) == 1, "CRITICAL by details.severity; a plain ToolError is a WARNING"


@pytest.mark.parametrize(
    ("answer", "kind", "retryable"),
    [
        (Reply(502, b"<html>bad gateway</html>"), "NetworkError", True),
        (
            Reply(503, b'{"kind": "Status", "message": "no endpoints available"}'),
            "NetworkError",
            True,
        ),
        (Reply(429, b""), "NetworkError", True),
        (Reply(403, b'{"kind": "Status", "message": "forbidden"}'), "SecurityError", False),
        (Reply(404, b"not found"), "NetworkError", False),
        (TransportError("timeout", "no answer", timeout=True), "Timeout", True),
        (TransportError("reset", "connection reset"), "NetworkError", True),
    ],
)
def test_answers_from_no_plugin_become_payloads(
    answer: Reply | TransportError, kind: str, retryable: bool
) -> None:
    transport = Scripted([answer, answer, answer])
    result = client(transport)[0].call("tool", {})
    assert result.error is not None
    assert (result.error.type, result.error.retryable, result.reached) == (kind, retryable, False)
    assert len(transport.sent) == (3 if retryable else 1)
    assert result.error.origin_node == "acme/tool"


def test_an_invalid_payload_is_an_unknown_error() -> None:
    broken = Reply(200, b'{"port": "error", "error": {"type": "Oops"}}')
    result = client(Scripted([broken]))[0].call("tool", {})
    assert result.error is not None
    assert result.error.type == "UnknownError"
    assert result.reached


def test_a_run_id_must_be_a_uuid() -> None:
    with pytest.raises(ValueError, match="UUID"):
        client(Scripted([]))[0].call("tool", {}, run_id="run-1")


def test_a_given_traceparent_is_propagated_and_a_new_trace_started_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without OpenTelemetry (test_tracing.py has it with): the header as given, or new."""
    monkeypatch.setattr(tracing, "_OTEL", [None])
    given = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    transport = Scripted([failure(), SUCCESS])
    made, _ = client(transport)
    result = made.call("tool", {}, traceparent=given)
    assert result.traceparent == given
    assert [headers["traceparent"] for _, _, headers in transport.sent] == [given, given]
    fresh = made.call("tool", {}, traceparent="00-garbage")
    context = tracing.parse(fresh.traceparent)
    assert context is not None
    assert context.flags == "01"
    assert context.trace_id != "0af7651916cd43dd8448eb211c80319c"


@pytest.mark.parametrize(
    "header",
    [
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
        "",
    ],
)
def test_invalid_traceparents_are_refused(header: str) -> None:
    assert tracing.parse(header) is None


def test_a_future_version_with_more_fields_is_read() -> None:
    context = tracing.parse("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00-more")
    assert context is not None
    assert context.header.startswith("00-0af7651916cd43dd")
