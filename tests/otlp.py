"""An OTLP/HTTP trace receiver for tests: what a collector's port 4318 gets, decoded; and the
in-memory recording of this process's own spans.

The runtime host exports its spans with OpenTelemetry's own OTLP exporter (http/protobuf, the
real wire format), so the tests that follow a trace across processes (SDK in the test, host in a
subprocess or a pod) read the host's spans here instead of from an in-memory exporter.
"""

from __future__ import annotations

import gzip
import http.server
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.trace import export as exporting
from opentelemetry.sdk.trace.export import in_memory_span_exporter as in_memory


def in_memory_spans() -> in_memory.InMemorySpanExporter:
    """This process's spans (the engine SDK's), recorded in memory: the global tracer provider,
    which OpenTelemetry lets a process set once (a module fixture calls this)."""
    exporter = in_memory.InMemorySpanExporter()
    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(exporting.SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    service: str
    trace_id: str
    span_id: str
    parent_span_id: str
    """"" for a root span."""
    kind: str
    """SERVER, INTERNAL, CLIENT, ... (the SpanKind's name without the prefix)."""
    attributes: dict[str, Any]


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


def decode(body: bytes) -> list[ReceivedSpan]:
    request = trace_service_pb2.ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource in request.resource_spans:
        attributes = {a.key: _value(a.value) for a in resource.resource.attributes}
        service = str(attributes.get("service.name", ""))
        for scope in resource.scope_spans:
            for span in scope.spans:
                kind = trace_pb2.Span.SpanKind.Name(span.kind)
                spans.append(
                    ReceivedSpan(
                        name=span.name,
                        service=service,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        kind=kind.removeprefix("SPAN_KIND_"),
                        attributes={a.key: _value(a.value) for a in span.attributes},
                    )
                )
    return spans


class Receiver:
    """`with Receiver("0.0.0.0") as receiver:` serves POST /v1/traces on a free port;
    `receiver.spans` holds what came, `receiver.wait(check)` waits for spans that pass `check`."""

    def __init__(self, bind: str = "127.0.0.1") -> None:
        self.spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                with receiver._lock:
                    receiver.spans.extend(decode(body))
                answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = http.server.ThreadingHTTPServer((bind, 0), Handler)
        self.port = int(self.server.server_address[1])

    def url(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}"

    def __enter__(self) -> Receiver:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait(
        self, check: Callable[[list[ReceivedSpan]], bool], timeout: float = 30
    ) -> list[ReceivedSpan]:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                spans = list(self.spans)
            if check(spans):
                return spans
            assert time.monotonic() < deadline, f"spans never arrived as expected: {spans}"
            time.sleep(0.1)
