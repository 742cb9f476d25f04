"""With the OpenTelemetry API and SDK installed (the optional `tracing` extra), each call is a
CLIENT span, a child of the given traceparent, and the header names that span (the dev tools
install the OpenTelemetry SDK; the path without it is tested in test_client.py)."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.trace import export as exporting
from opentelemetry.sdk.trace.export import in_memory_span_exporter as in_memory

from wayang_client import trace as tracing

from .test_client import SUCCESS, Scripted, client, failure

GIVEN = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture(scope="module")
def spans() -> Any:
    import opentelemetry.trace as trace  # noqa: PLC0415 - optional

    exporter = in_memory.InMemorySpanExporter()
    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(exporting.SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


def test_a_call_is_a_client_span_under_the_given_trace(spans: Any) -> None:
    assert tracing.available()
    spans.clear()
    transport = Scripted([failure(), SUCCESS])
    result = client(transport)[0].call("tool", {}, traceparent=GIVEN)
    [span] = spans.get_finished_spans()
    assert span.name == "wayang.call acme/tool"
    assert span.kind.name == "CLIENT"
    assert span.parent.span_id == int("b7ad6b7169203331", 16)
    context = span.get_span_context()
    assert context.trace_id == int("0af7651916cd43dd8448eb211c80319c", 16)
    sent = f"00-{context.trace_id:032x}-{context.span_id:016x}-01"
    assert result.traceparent == sent
    assert [headers["traceparent"] for _, _, headers in transport.sent] == [sent, sent]
    assert span.attributes["wayang.attempts"] == 2
    assert span.attributes["wayang.port"] == "done"


def test_a_failed_call_marks_its_span(spans: Any) -> None:
    spans.clear()
    client(Scripted([failure(retryable=False)]))[0].call("tool", {})
    [span] = spans.get_finished_spans()
    assert span.status.status_code.name == "ERROR"
    assert span.attributes["error.type"] == "ToolError"
    assert span.parent is None, "no traceparent given: a new trace"
