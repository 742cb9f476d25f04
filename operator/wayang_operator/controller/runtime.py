"""The process-wide collaborators of the handlers, set once at startup by the entry point.

kopf handlers are module-level functions, so they reach the settings, the API wrapper and the
audit sink through this one holder rather than through globals scattered over modules.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from ..audit import AuditSink, LogSink
from ..core.attestation import Attestor
from ..kube import KubeApi
from ..settings import OperatorSettings
from .leadership import Leadership
from .scans import Scanner


@dataclass
class Runtime:
    settings: OperatorSettings = field(default_factory=OperatorSettings)
    sink: AuditSink = field(default_factory=LogSink)
    leadership: Leadership = field(default_factory=Leadership)
    election: asyncio.Task[None] | None = None
    rescans: asyncio.Task[None] | None = None
    observations: asyncio.Task[None] | None = None
    attestor: Attestor = field(default_factory=Attestor.generate)
    """Signs the ScanReports the operator writes; the audit log's key once that is open."""
    identity: str = ""
    """The operator's own user name, as the API server authenticates it (SelfSubjectReview at
    startup): the only requester the webhooks let write what only the operator writes."""
    tracer: trace.Tracer = field(default_factory=trace.NoOpTracer)
    """Spans of the operator's decisions (tracing.py); the no-op tracer unless OTEL_* ask."""
    tracing: TracerProvider | None = None
    """The provider behind `tracer`, flushed at shutdown."""
    _scanner: Scanner | None = None
    _api: KubeApi | None = None

    @property
    def api(self) -> KubeApi:
        if self._api is None:
            self._api = KubeApi()
        return self._api

    @property
    def scanner(self) -> Scanner:
        if self._scanner is None:
            self._scanner = Scanner(self.settings, self.api, self.attestor)
        return self._scanner


RUNTIME = Runtime()
