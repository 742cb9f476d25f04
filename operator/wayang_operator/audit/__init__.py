"""Where audit decisions go. The tamper-evident log implements `AuditSink`; until then decisions
are written as structured log lines, so nothing the operator decides goes unrecorded."""

from __future__ import annotations

import datetime
import json
import logging
import uuid
from typing import Protocol

from ..api.audit import Actor, ActorType, AuditEventType, PluginAuditEvent

logger = logging.getLogger("wayang.audit")


class AuditSink(Protocol):
    async def append(self, event: PluginAuditEvent) -> None: ...


class LogSink:
    """Writes each event as one JSON log line (the interim sink)."""

    async def append(self, event: PluginAuditEvent) -> None:
        logger.info(json.dumps(event.model_dump(mode="json", exclude_none=True), sort_keys=True))


def event(
    kind: AuditEventType,
    *,
    plugin_id: str,
    version: str | None,
    tenant: str,
    details: dict[str, object],
    actor: Actor | None = None,
) -> PluginAuditEvent:
    """A PluginAuditEvent for a decision of the operator (the actor unless another is given)."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return PluginAuditEvent(
        audit_id=str(uuid.uuid4()),
        event_type=kind,
        plugin_id=plugin_id,
        version=version,
        tenant_id=tenant,
        actor=actor or Actor(type=ActorType.SYSTEM, id="wayang-operator"),
        timestamp=now,
        details=details,
    )
