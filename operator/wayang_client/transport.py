"""How a call reaches a plugin's runtime host: `POST <endpoint>/execute` (runtime-images/README.md).

`HttpTransport` talks HTTP/1.1 straight to the endpoint with keep-alive connections (the engine
in the cluster, a standalone agent beside its hosts); cluster.py's `ServiceProxyTransport` goes
through the API server's service proxy (`kubectl wayang call` from outside the cluster). A
transport returns whatever the host or the proxy answered, any status, and raises
`TransportError` only when no answer came: the client turns those into NetworkError and Timeout
payloads and retries them like the plugin's own retryable errors.
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from .discovery import PluginEntry

EXECUTE = "/execute"


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes


class TransportError(Exception):
    """No answer: the connection was refused or reset, the host is unknown, or the time ran out
    (`timeout`)."""

    def __init__(self, reason: str, message: str, *, timeout: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        """A short machine-readable reason: refused, reset, timeout, unreachable, proxy."""
        self.message = message
        self.timeout = timeout


class Transport(Protocol):
    def post(
        self,
        entry: PluginEntry,
        document: Mapping[str, Any],
        headers: Mapping[str, str],
        timeout: float,
    ) -> Reply:
        """POST the request document to the plugin's /execute; the answer as it came."""
        ...

    def close(self) -> None: ...


def encode(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document).encode()  # the default encoder is cached: the fastest


_Key = tuple[str, str, int]


class HttpTransport:
    """Keep-alive HTTP(S) connections to each endpoint, reused across calls and threads (one
    call per connection at a time). A reused connection the host has closed meanwhile (it
    restarted) is replaced once, transparently: the request never reached a plugin."""

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl = ssl_context
        self._idle: dict[_Key, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    def _take(self, key: _Key, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            idle = self._idle.get(key)
            connection = idle.pop() if idle else None
        if connection is not None:
            connection.timeout = timeout
            if connection.sock is not None:
                connection.sock.settimeout(timeout)
            return connection, True
        return self._new(key, timeout), False

    def _new(self, key: _Key, timeout: float) -> http.client.HTTPConnection:
        scheme, host, port = key
        if scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=timeout, context=self._ssl)
        return http.client.HTTPConnection(host, port, timeout=timeout)

    def _give(self, key: _Key, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            self._idle.setdefault(key, []).append(connection)

    def post(
        self,
        entry: PluginEntry,
        document: Mapping[str, Any],
        headers: Mapping[str, str],
        timeout: float,
    ) -> Reply:
        parts = urlsplit(entry.endpoint)
        scheme = parts.scheme or "http"
        if scheme not in ("http", "https") or not parts.hostname:
            raise TransportError("unreachable", f"not an http(s) endpoint: {entry.endpoint!r}")
        key = (scheme, parts.hostname, parts.port or (443 if scheme == "https" else 80))
        path = parts.path.rstrip("/") + EXECUTE
        url = f"{entry.endpoint}{EXECUTE}"
        body = encode(document)
        sent = {"Content-Type": "application/json", **headers}
        connection, reused = self._take(key, timeout)
        while True:
            try:
                connection.request("POST", path, body=body, headers=sent)
                response = connection.getresponse()
                data = response.read()
            except TimeoutError as error:
                connection.close()
                raise TransportError(
                    "timeout", f"{url} did not answer within {timeout:g} s", timeout=True
                ) from error
            except ConnectionRefusedError as error:
                connection.close()
                raise TransportError("refused", f"{url}: connection refused") from error
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as error:
                connection.close()
                if reused:
                    connection, reused = self._new(key, timeout), False
                    continue
                raise TransportError("reset", f"{url}: connection reset ({error})") from error
            except (OSError, http.client.HTTPException) as error:
                connection.close()
                raise TransportError("unreachable", f"{url}: {error}") from error
            if response.will_close:
                connection.close()
            else:
                self._give(key, connection)
            return Reply(response.status, data)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()
