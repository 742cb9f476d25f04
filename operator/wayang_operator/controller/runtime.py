"""The process-wide collaborators of the handlers, set once at startup by the entry point.

kopf handlers are module-level functions, so they reach the settings, the API wrapper and the
audit sink through this one holder rather than through globals scattered over modules.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from ..audit import AuditSink, LogSink
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
            self._scanner = Scanner(self.settings, self.api)
        return self._scanner


RUNTIME = Runtime()
