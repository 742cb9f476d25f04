"""Prometheus metrics. Label values come from closed sets (phases, event types, error kinds), never
from plugin or namespace names, so cardinality stays bounded however many plugins there are."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from .api.resources import PluginPhase

PLUGINS = Gauge("wayang_plugins", "Plugins by phase", ["phase"])
RECONCILE_SECONDS = Histogram(
    "wayang_reconcile_duration_seconds",
    "Time to evaluate one plugin",
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5),
)
DECISIONS = Counter("wayang_decisions_total", "Audit-worthy decisions", ["event"])
ERRORS = Counter("wayang_errors_total", "Errors while reconciling or admitting", ["kind"])
SCANS = Counter("wayang_scans_total", "trivy runs by outcome", ["outcome"])
"""outcome: `report` (trivy produced a report) or an ErrorPayload type (Timeout, ToolError, ...)."""
SCAN_SECONDS = Histogram(
    "wayang_scan_duration_seconds",
    "Time of one trivy run",
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
)
AUDIT_APPENDED = Counter("wayang_audit_entries_appended_total", "Entries appended to the audit log")
AUDIT_APPEND_SECONDS = Histogram(
    "wayang_audit_append_duration_seconds",
    "Time to append a batch to the audit log (retries included)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
AUDIT_CHECKPOINT_SIZE = Gauge(
    "wayang_audit_checkpoint_size", "Entries covered by the latest signed checkpoint"
)
DATABASE_AGE = Gauge(
    "wayang_scan_database_age_seconds", "Age of trivy's vulnerability database at the last scan"
)

_phases: dict[tuple[str, str], PluginPhase] = {}


def observe_phase(namespace: str, name: str, phase: PluginPhase | None) -> None:
    """Record a plugin's phase (None: the plugin is gone) and move the per-phase gauge."""
    before = _phases.pop((namespace, name), None)
    if before is not None:
        PLUGINS.labels(before.value).dec()
    if phase is not None:
        _phases[(namespace, name)] = phase
        PLUGINS.labels(phase.value).inc()
