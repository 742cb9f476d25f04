"""With the OpenTelemetry API and SDK installed (the optional `tracing` extra), each call is a
CLIENT span, a child of the given traceparent, and the header names that span (the dev tools
install the OpenTelemetry SDK; the path without it is tested in test_client.py)."""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_runtime_host import SAMPLES, running, sample
from tests.otlp import ReceivedSpan, Receiver, in_memory_spans
from wayang_client import Client, PluginEntry
from wayang_client import trace as tracing

from .test_client import SUCCESS, Scripted, client, failure

GIVEN = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture(scope="module")
def spans() -> Any:
    return in_memory_spans()


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


def test_one_trace_spans_the_sdk_the_host_and_the_plugin(spans: Any, tmp_path: Path) -> None:
    """The SDK's CLIENT span (in memory here) is the parent of the host's SERVER span (exported
    by the host over OTLP/HTTP to a receiver), whose INTERNAL span around the plugin's run is the
    parent the plugin sees (wayang_plugin.traceparent(), reported by the introspect sample)."""
    spans.clear()
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "", "OTEL_BSP_SCHEDULE_DELAY": "50"}
    with Receiver() as receiver:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.url()
        with running(tmp_path, sample("introspect"), SAMPLES / "introspect", env) as host:
            host.wait_ready()
            entry = PluginEntry.from_descriptor(
                sample("introspect"), f"http://127.0.0.1:{host.port}", name="introspect"
            )
            result = Client([entry]).call("introspect", {}, traceparent=GIVEN)
            assert result.port == "report", result

            def both(got: list[ReceivedSpan]) -> bool:
                return {s.kind for s in got} >= {"SERVER", "INTERNAL"}

            received = receiver.wait(both)
    [client_span] = spans.get_finished_spans()
    sdk = client_span.get_span_context()
    [server] = [s for s in received if s.kind == "SERVER"]
    [inner] = [s for s in received if s.kind == "INTERNAL"]
    assert server.trace_id == inner.trace_id == f"{sdk.trace_id:032x}" == GIVEN.split("-")[1]
    assert server.parent_span_id == f"{sdk.span_id:016x}", "host under the SDK's span"
    assert inner.parent_span_id == server.span_id, "the plugin's run under the host's span"
    assert server.name == "wayang.execute io.wayang.samples/introspect"
    assert server.service == "io.wayang.samples/introspect"
    assert (server.attributes["wayang.outcome"], server.attributes["wayang.port"]) == (
        "success",
        "report",
    )
    assert server.attributes["wayang.run_id"] == result.run_id
    assert inner.name == "wayang.plugin introspect_plugin:execute"
    seen = result.output["traceparent"]
    assert seen == f"00-{inner.trace_id}-{inner.span_id}-01", "the plugin gets its span's context"
    [line] = [r for r in host.logs() if r["event"] == "execute"]
    assert (line["traceId"], line["spanId"]) == (server.trace_id, server.span_id)


def test_without_tracing_the_plugin_gets_the_callers_traceparent(tmp_path: Path) -> None:
    with running(tmp_path, sample("introspect"), SAMPLES / "introspect") as host:
        host.wait_ready()
        connection = http.client.HTTPConnection("127.0.0.1", host.port, timeout=30)
        connection.request("POST", "/execute", b'{"inputs": {}}', {"traceparent": GIVEN})
        response = connection.getresponse()
        body = json.loads(response.read())
        connection.close()
    assert response.status == 200
    assert body["output"]["traceparent"] == GIVEN
    [line] = [r for r in host.logs() if r["event"] == "execute"]
    assert line["traceId"] == GIVEN.split("-")[1]
    assert "spanId" not in line
