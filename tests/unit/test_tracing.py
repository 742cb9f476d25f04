"""Tracing is off unless the standard OTEL_* variables ask for it, and asks for nothing the
operator does not ship without saying which variable is wrong."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import ConsoleSpanExporter

from wayang_operator import tracing

ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector.observability:4318"}


def exporter_of(environ: dict[str, str]) -> object:
    provider = tracing.configure(environ)
    assert provider is not None
    processor = provider._active_span_processor._span_processors[0]
    exporter: object = processor.span_exporter  # type: ignore[attr-defined]
    provider.shutdown()
    return exporter


def test_off_without_the_variables_and_when_disabled() -> None:
    assert tracing.configure({}) is None
    assert tracing.configure({"OTEL_SERVICE_NAME": "x"}) is None, "a name alone exports nothing"
    assert tracing.configure({**ENDPOINT, "OTEL_SDK_DISABLED": "true"}) is None
    assert tracing.configure({**ENDPOINT, "OTEL_TRACES_EXPORTER": "none"}) is None
    assert isinstance(tracing.tracer_of(None), trace.NoOpTracer)


def test_an_endpoint_or_an_exporter_turns_it_on() -> None:
    assert isinstance(exporter_of(ENDPOINT), OTLPSpanExporter)
    traces_only = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}
    assert isinstance(exporter_of(traces_only), OTLPSpanExporter)
    assert isinstance(exporter_of({"OTEL_TRACES_EXPORTER": "console"}), ConsoleSpanExporter)
    provider = tracing.configure({**ENDPOINT, "OTEL_SERVICE_NAME": "wayang-operator-eu"})
    assert provider is not None
    assert provider.resource.attributes["service.name"] == "wayang-operator-eu"
    provider.shutdown()
    default = tracing.configure(ENDPOINT)
    assert default is not None
    assert default.resource.attributes["service.name"] == "wayang-operator"
    default.shutdown()


def test_what_is_not_shipped_is_refused_by_name() -> None:
    with pytest.raises(tracing.TracingError, match="OTEL_TRACES_EXPORTER='jaeger'"):
        tracing.configure({"OTEL_TRACES_EXPORTER": "jaeger"})
    with pytest.raises(tracing.TracingError, match="http/protobuf only"):
        tracing.configure({**ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})


def test_a_plugins_traceparent_is_continued_and_a_bad_one_ignored() -> None:
    header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    parent = tracing.parent_of({tracing.TRACEPARENT_ANNOTATION: header})
    assert parent is not None
    context = trace.get_current_span(parent).get_span_context()
    assert (f"{context.trace_id:032x}", f"{context.span_id:016x}") == (
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "00f067aa0ba902b7",
    )
    assert tracing.parent_of(None) is None
    assert tracing.parent_of({}) is None
    zeros = "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
    assert tracing.parent_of({tracing.TRACEPARENT_ANNOTATION: zeros}) is None
    assert tracing.parent_of({tracing.TRACEPARENT_ANNOTATION: "garbage"}) is None
