"""OpenTelemetry traces of the operator's decisions, off unless the standard variables ask.

`configure` reads the standard OTEL_* variables: an OTLP endpoint
(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT) or OTEL_TRACES_EXPORTER
(`otlp`, `console` or `none`) turns tracing on; OTEL_SDK_DISABLED=true turns it off; with none
of them there is no exporter and no overhead beyond the no-op API. The OTLP exporter speaks
http/protobuf and reads its own variables (headers, timeout, certificate, compression);
OTEL_SERVICE_NAME (default `wayang-operator`) and OTEL_RESOURCE_ATTRIBUTES name the resource.

Each reconcile of a Plugin is a span `wayang.reconcile` with the children `wayang.evaluate`
(the phase and every gate's reason as attributes), `wayang.act` (the workload), `wayang.audit`
(one per audit entry) and `wayang.status` (the status write). A Plugin annotated
`wayang.io/traceparent` (a W3C traceparent, set by the CI job or GitOps tool that applied it)
makes its reconciles children of that trace, so a pipeline's trace shows the operator's
decisions about what it shipped.

The tracer lives in the runtime state (RUNTIME.tracer) and is passed to what traces, not read
from this module: tests hand in one that records to memory.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

SERVICE = "wayang-operator"
INSTRUMENTATION = "wayang.operator"
TRACEPARENT_ANNOTATION = "wayang.io/traceparent"
"""On a Plugin: the W3C traceparent its reconciles continue."""
EXPORTERS = ("otlp", "console", "none")
PROTOCOLS = ("http/protobuf", "")


class TracingError(ValueError):
    """The OTEL_* variables ask for something this operator does not ship; says which."""


def _exporter(name: str, environ: Mapping[str, str]) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or ""
    )
    if protocol not in PROTOCOLS:
        raise TracingError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: the operator exports OTLP over "
            "http/protobuf only (the collector's port 4318)"
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
        OTLPSpanExporter,  # imported only when tracing is on: it brings protobuf and requests
    )

    return OTLPSpanExporter()


def configure(environ: Mapping[str, str]) -> TracerProvider | None:
    """The tracer provider the variables ask for, exporting in batches, or None (tracing off)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    name = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if name == "none" or (not name and not endpoint):
        return None
    if name and name not in EXPORTERS:
        raise TracingError(
            f"OTEL_TRACES_EXPORTER={name!r}: use one of {', '.join(EXPORTERS)} (comma-separated "
            "lists are not supported)"
        )
    resource = Resource.create({"service.name": environ.get("OTEL_SERVICE_NAME") or SERVICE})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(_exporter(name or "otlp", environ)))
    return provider


def tracer_of(provider: TracerProvider | None) -> trace.Tracer:
    """The operator's tracer from `provider`, or the no-op tracer when tracing is off."""
    if provider is None:
        return trace.NoOpTracer()
    return provider.get_tracer(INSTRUMENTATION)


def parent_of(annotations: Mapping[str, str] | None) -> otel_context.Context | None:
    """The trace a Plugin's TRACEPARENT_ANNOTATION continues (None: a new trace; an invalid
    value is ignored, as the W3C specification asks)."""
    value = (annotations or {}).get(TRACEPARENT_ANNOTATION)
    if not value:
        return None
    extracted = TraceContextTextMapPropagator().extract({"traceparent": value})
    span = trace.get_current_span(extracted)
    return extracted if span.get_span_context().is_valid else None
