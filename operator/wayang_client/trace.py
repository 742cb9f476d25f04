"""W3C trace context (https://www.w3.org/TR/trace-context/) for calls to plugins.

A call carries a `traceparent` header: the caller's, propagated, or a new trace with random ids
when there is none (or it is malformed, as the specification asks). When the OpenTelemetry API
(`opentelemetry-api`) is importable, each call is also a CLIENT span, a child of the given
context (else of the current one), and the header names that span; without it the SDK works the
same and the given header is sent as it is. OpenTelemetry stays an optional dependency.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

HEADER = "traceparent"
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
SAMPLED = "01"


@dataclass(frozen=True)
class TraceContext:
    trace_id: str
    span_id: str
    flags: str = SAMPLED

    @property
    def header(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"


def parse(header: str | None) -> TraceContext | None:
    """The context a traceparent header carries, or None when it is absent or invalid (version
    ff, all-zero ids, wrong lengths or case, or extra fields with version 00)."""
    if not header:
        return None
    found = _TRACEPARENT.match(header.strip())
    if found is None:
        return None
    version, trace_id, span_id, flags, rest = found.groups()
    if version == "ff" or (version == "00" and rest):
        return None
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return TraceContext(trace_id, span_id, flags)


def start() -> TraceContext:
    """A new sampled trace with random ids (never all zeros: 24 random bytes are not)."""
    raw = os.urandom(24).hex()
    return TraceContext(raw[:32], raw[32:], SAMPLED)


_OTEL: list[Any] = []


def available() -> bool:
    """Whether the OpenTelemetry API is importable (then each call is a span)."""
    return _opentelemetry() is not None


def _opentelemetry() -> Any:
    """The `opentelemetry` API modules (propagate, trace), or None; imported once, lazily."""
    if not _OTEL:
        try:
            import opentelemetry.propagate  # noqa: PLC0415 - optional dependency
            import opentelemetry.trace as otel_trace  # noqa: PLC0415

            _OTEL.append((opentelemetry.propagate, otel_trace))
        except ImportError:
            _OTEL.append(None)
    return _OTEL[0]


class Span:
    """The call's span: its traceparent header, and (with OpenTelemetry) the span itself."""

    def __init__(self, header: str, span: Any = None, api: Any = None) -> None:
        self.header = header
        self._span = span
        self._api = api

    def set(self, **attributes: str | int | bool) -> None:
        if self._span is not None:
            for key, value in attributes.items():
                self._span.set_attribute(f"wayang.{key}", value)

    def failed(self, error_type: str, message: str) -> None:
        if self._span is not None:
            self._span.set_attribute("error.type", error_type)
            self._span.set_status(self._api.Status(self._api.StatusCode.ERROR, message[:256]))


@contextlib.contextmanager
def client_span(name: str, given: str | None) -> Iterator[Span]:
    """The span of one call and the traceparent to send with it."""
    api = _opentelemetry()
    if api is None:
        yield Span((parse(given) or start()).header)
        return
    propagate, otel_trace = api
    parent = propagate.extract({HEADER: given}) if parse(given) else None
    tracer = otel_trace.get_tracer("wayang_client")
    with tracer.start_as_current_span(
        name, context=parent, kind=otel_trace.SpanKind.CLIENT, record_exception=False
    ) as span:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        header = parse(carrier.get(HEADER)) or parse(given) or start()
        yield Span(header.header, span, otel_trace)
