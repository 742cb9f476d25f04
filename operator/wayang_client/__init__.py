"""wayang_client: the engine SDK. Find plugins in the plugin index and call them with their own
errorHandling applied (retries with backoff and jitter, a call-level circuit breaker, the
fallback node, the human-review hook, W3C trace context), in a cluster or without one.

    from wayang_client import Client, PluginIndex

    with Client(PluginIndex.from_file("plugins.json")) as client:
        result = client.call("echo", {"text": "hello"})
        result.port, result.output or result.error

docs/sdk.md explains what the SDK does with each errorHandling field. Reading the index from a
cluster, or calling through the API server's service proxy, is in `wayang_client.cluster`
(it needs the `kubernetes` client; nothing else here does).
"""

from .breaker import CallBreaker, State
from .client import CallResult, Client, ReviewHook, SupportsPut
from .discovery import DiscoveryError, PluginEntry, PluginIndex
from .policy import SEVERITY, Severity, Step, backoff_ms, delay_seconds, provenance_ref, severity
from .transport import HttpTransport, Reply, Transport, TransportError

__all__ = [
    "SEVERITY",
    "CallBreaker",
    "CallResult",
    "Client",
    "DiscoveryError",
    "HttpTransport",
    "PluginEntry",
    "PluginIndex",
    "Reply",
    "ReviewHook",
    "Severity",
    "State",
    "Step",
    "SupportsPut",
    "Transport",
    "TransportError",
    "backoff_ms",
    "delay_seconds",
    "provenance_ref",
    "severity",
]
