"""Known-good documents for each model, and a way to change one field of a copy.

Tests start from a valid document and break exactly one thing, so each failure names one field.
"""

from __future__ import annotations

import copy
import re
import uuid
from typing import Any

from wayang_operator.api.audit import Actor, ActorType, AuditEventType, PluginAuditEvent

DELETE = object()
"""Pass as a value to `mutated` to remove the field."""

SHA256 = "sha256:" + "ab" * 32
SHA512 = "sha512:" + "cd" * 64
BLAKE3 = "blake3:" + "ef" * 32
UUID = "3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
TIMESTAMP = "2026-11-22T10:00:00Z"


def descriptor() -> dict[str, Any]:
    return {
        "id": "com.example/data-processor",
        "name": "Data Processor",
        "version": "1.2.0",
        "implementation": {
            "type": "maven",
            "coordinate": "com.example:data-processor:1.2.0",
            "digest": SHA256,
        },
        "inputs": [{"name": "records", "schema": {"type": "array"}}],
        "outputs": {
            "success": {"name": "cleaned", "schema": {"type": "array"}},
            "error": {"name": "error", "schema": "/schemas/ErrorPayload.schema.json"},
        },
    }


def plugin() -> dict[str, Any]:
    return {
        "apiVersion": "wayang.io/v1alpha1",
        "kind": "Plugin",
        "metadata": {"name": "data-processor"},
        "spec": descriptor(),
    }


def approval() -> dict[str, Any]:
    return {
        "apiVersion": "wayang.io/v1alpha1",
        "kind": "PluginApproval",
        "metadata": {"name": "approve-1"},
        "spec": {
            "plugin": "data-processor",
            "pluginId": "com.example/data-processor",
            "version": "1.2.0",
            "digest": SHA256,
            "decision": "Approve",
        },
    }


def policy() -> dict[str, Any]:
    return {
        "apiVersion": "wayang.io/v1alpha1",
        "kind": "PluginPolicy",
        "metadata": {"name": "default"},
        "spec": {},
    }


def error_payload() -> dict[str, Any]:
    return {
        "type": "ToolError",
        "message": "the tool failed",
        "timestamp": TIMESTAMP,
        "originNode": "node-1",
        "retryable": True,
    }


def audit_event() -> dict[str, Any]:
    return {
        "auditId": UUID,
        "eventType": "PLUGIN_APPROVED",
        "pluginId": "com.example/data-processor",
        "timestamp": TIMESTAMP,
        "actor": {"type": "user", "id": "approver-1"},
    }


def scan_report() -> dict[str, Any]:
    return {
        "scanId": UUID,
        "pluginId": "com.example/data-processor",
        "version": "1.2.0",
        "timestamp": TIMESTAMP,
        "status": "PASSED",
    }


_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def steps(path: str) -> list[str | int]:
    return [name if name else int(index) for name, index in _STEP.findall(path)]


def mutated(document: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of `document` with the field at `path` (a.b[0].c) set to `value`/deleted."""
    result = copy.deepcopy(document)
    *parents, last = steps(path)
    node: Any = result
    for step in parents:
        if isinstance(step, str) and isinstance(node, dict) and step not in node:
            node[step] = {}
        node = node[step]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return result


def logged_event(number: int, writer: str = "a") -> PluginAuditEvent:
    """A distinct, deterministic audit event: the same (number, writer) is the same audit id."""
    return PluginAuditEvent(
        audit_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{writer}/{number}")),
        event_type=AuditEventType.APPROVED,
        plugin_id="acme/redactor",
        version="1.0.0",
        tenant_id="team-a",
        actor=Actor(type=ActorType.USER, id=f"approver-{number}"),
        timestamp="2026-11-22T10:00:00Z",
        details={"plugin": "redactor", "message": f"decision {number} by {writer}"},
    )
