"""Prometheus metrics of the operator: every one is listed, with its labels and an example alert,
in docs/metrics.md (a test keeps that table and this registry equal).

Naming follows Prometheus conventions: the `wayang_` prefix, `_total` on counters, base units
(`_seconds`). Label values come from closed sets (phases, outcomes, error types, webhook ids),
with one deliberate exception: `wayang_plugin_phase` carries the plugin's namespace and name, one
series per plugin (kube-state-metrics style), so an alert can say *which* plugin is quarantined.
It is bounded by the number of plugins and removed with them; histograms never carry per-plugin
labels, whose series would multiply by the bucket count.
"""

from __future__ import annotations

from typing import Literal

from prometheus_client import Counter, Gauge, Histogram

from .api.resources import PluginPhase

# --------------------------------------------------------------------------------------------
# Plugins

PLUGINS = Gauge("wayang_plugins", "Plugins by phase (on the leader)", ["phase"])
PLUGIN_PHASE = Gauge(
    "wayang_plugin_phase",
    "1 per plugin, labelled with its namespace, name and current phase (on the leader)",
    ["namespace", "plugin", "phase"],
)
ReconcileOutcome = Literal["written", "unchanged", "skipped", "conflict", "error"]
"""written: the status changed and was written; unchanged: nothing to write (the workload may
still have been acted on); skipped: the plugin is gone or being deleted; conflict: the plugin
changed since the version the decision was made from, so the write was refused (its next event,
or at once an evaluation from the index, decides again); error: it raised."""
RECONCILE_SECONDS = Histogram(
    "wayang_reconcile_duration_seconds",
    "Time to reconcile one plugin (gather, decide, audit, act, write status), by outcome",
    ["outcome"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
DECISIONS = Counter("wayang_decisions_total", "Audit-worthy decisions by event type", ["event"])
ERRORS = Counter("wayang_errors_total", "Errors while reconciling or scanning", ["kind"])
"""kind: `reconcile` (a reconcile raised; it is retried) or `scan` (a scan task raised)."""
APPROVALS = Counter(
    "wayang_approvals_total",
    "Approval gate decisions: approved, auto_approved, rejected, revoked",
    ["decision"],
)
BREAKER_TRIPS = Counter(
    "wayang_breaker_trips_total", "Times a plugin's circuit breaker opened (it was quarantined)"
)
EVENTS = Counter(
    "wayang_events_total",
    "Kubernetes Events posted on Plugins, by type and reason",
    ["type", "reason"],
)

# --------------------------------------------------------------------------------------------
# Scans

SCANS = Counter("wayang_scans_total", "trivy runs by outcome", ["outcome"])
"""outcome: `report` (trivy produced a report) or an ErrorPayload type (Timeout, ToolError, ...)."""
SCAN_SECONDS = Histogram(
    "wayang_scan_duration_seconds",
    "Time of one trivy run",
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
)
DATABASE_AGE = Gauge(
    "wayang_scan_database_age_seconds", "Age of trivy's vulnerability database at the last scan"
)

# --------------------------------------------------------------------------------------------
# Audit log

AUDIT_APPENDED = Counter("wayang_audit_entries_appended_total", "Entries appended to the audit log")
AUDIT_APPEND_SECONDS = Histogram(
    "wayang_audit_append_duration_seconds",
    "Time to append a batch to the audit log (retries included)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
AUDIT_FAILURES = Counter(
    "wayang_audit_append_failures_total",
    "Batches the audit store failed to append (their decisions are retried, statuses wait)",
)
AUDIT_CHECKPOINT_SIZE = Gauge(
    "wayang_audit_checkpoint_size", "Entries covered by the latest signed checkpoint"
)

# --------------------------------------------------------------------------------------------
# Admission webhooks and leadership

ADMISSIONS = Counter(
    "wayang_admission_reviews_total",
    "Admission reviews answered, by webhook (handler id), resource, operation and result",
    ["webhook", "resource", "operation", "result"],
)
"""result: `allowed`, `denied` (a handler refused), `error` (the review itself was malformed)."""
ADMISSION_SECONDS = Histogram(
    "wayang_admission_duration_seconds",
    "Time to answer one admission review (the API server waits for it)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
LEADER = Gauge("wayang_leader", "1 while this replica holds the Lease and decides, else 0")

_phases: dict[tuple[str, str], PluginPhase] = {}


def observe_phase(namespace: str, name: str, phase: PluginPhase | None) -> None:
    """Record a plugin's phase (None: the plugin is gone) and move the per-phase gauge and the
    plugin's own series (one per plugin: the old phase's series is removed, not zeroed)."""
    before = _phases.pop((namespace, name), None)
    if before is not None:
        PLUGINS.labels(before.value).dec()
        if before is not phase:
            PLUGIN_PHASE.remove(namespace, name, before.value)
    if phase is not None:
        _phases[(namespace, name)] = phase
        PLUGINS.labels(phase.value).inc()
        PLUGIN_PHASE.labels(namespace, name, phase.value).set(1)


def forget_phases() -> None:
    """On losing the Lease: a standby decides nothing, so it reports no plugins (the new leader
    reports them all once it has re-evaluated them)."""
    for (namespace, name), phase in list(_phases.items()):
        PLUGINS.labels(phase.value).dec()
        PLUGIN_PHASE.remove(namespace, name, phase.value)
    _phases.clear()


def set_leader(leading: bool) -> None:
    LEADER.set(1 if leading else 0)
    if not leading:
        forget_phases()
