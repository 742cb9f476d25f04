"""The WorkloadAvailable gate: what should run for a plugin, and whether it does.

Pure, like the governance gates: from the plugin's Deployment and pods (as the watches hold
them), its circuit breaker (as its status holds it) and the outcome of the governance gates, it
decides the gate, the replicas to ask for and the breaker's next state.

- Governance not passed: scale to zero (unload), except while a *new* version waits for its scan
  or approval and an earlier approved digest is serving: that one keeps serving (an upgrade
  never interrupts service) and the Deployment is left untouched until the new digest passes.
- Disabled: scale to zero, keep every object and the record.
- Cannot be rendered (NotRunnable): nothing runs; the message says why.
- Otherwise the breaker decides: open = Quarantined at zero replicas, half-open = one replica on
  trial, closed = the workload, which is Available once the wanted digest is rolled out and
  ready. While a new digest rolls out, the old pods serve (maxUnavailable 0): RollingOut.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, replace
from typing import Any

from ..api.descriptor import PluginDescriptor
from ..api.errors import ErrorType
from ..api.resources import BreakerState as State
from ..api.resources import ConditionType
from .availability import DeploymentRecord, Observation, PodRecord, observe
from .breaker import Breaker, configured, due, replicas, step
from .gates import Gate, Reason

WANTED = 1
"""Replicas of a plugin: one, the unit the breaker trips; scaling out is a later feature."""
KEEP_SERVING = frozenset({Reason.SCAN_PENDING, Reason.AWAITING_APPROVAL})
"""Governance outcomes of a new version that leave the previous approved digest serving."""
SERVING = frozenset({Reason.AVAILABLE, Reason.ROLLING_OUT, Reason.SERVING_PREVIOUS})
"""Workload reasons under which the plugin's pods take calls."""
KIND = ConditionType.WORKLOAD_AVAILABLE


@dataclass(frozen=True)
class WorkloadFacts:
    """What the handler gathered about the workload (None in Facts: workloads not managed)."""

    deployment: DeploymentRecord | None
    pods: list[PodRecord]
    breaker: Breaker
    render_error: str | None
    """Why no workload can be rendered (NotRunnable), or None."""
    runtime_class: str
    """The sandbox's RuntimeClass ("" = the node's default runtime, runc)."""
    endpoint: str
    approved_since: datetime.datetime | None
    """Creation time of the newest approval: releases a quarantine that needs review."""
    check_interval: float
    grace: float


@dataclass(frozen=True)
class Plan:
    replicas: int | None
    """What the workload should be scaled to; None = leave it as it is."""
    breaker: Breaker
    status: dict[str, Any]
    """status.workload."""


def _status(facts: WorkloadFacts, wanted: int | None, breaker: Breaker) -> dict[str, Any]:
    deployment = facts.deployment
    status: dict[str, Any] = {
        "replicas": wanted if wanted is not None else (deployment.replicas if deployment else 0),
        "readyReplicas": deployment.ready if deployment else 0,
        "runtimeClass": facts.runtime_class or None,
        "endpoint": facts.endpoint,
        "breaker": breaker.to_status(),
    }
    if deployment is not None:
        status |= {
            "deployment": deployment.name,
            "digest": deployment.digest,
            "version": deployment.version,
        }
    return {key: value for key, value in status.items() if value is not None}


def _observe_breaker(
    facts: WorkloadFacts, spec: PluginDescriptor, now: datetime.datetime
) -> tuple[Breaker, Observation, int]:
    """Release (new approval), half-open (timer), then count what the workload shows: restarts
    and image errors at once, a stuck readiness and half-open successes once per interval."""
    handling = spec.error_handling
    breaker = facts.breaker
    if breaker.state is State.OPEN:
        breaker = step(breaker, None, handling, now, approved_since=facts.approved_since)
    breaker = due(breaker, handling, now)
    wanted = replicas(breaker, WANTED)
    seen = observe(
        facts.deployment,
        facts.pods,
        digest=spec.implementation.digest,
        wanted=wanted,
        counted=breaker.restarts,
        now=now,
        grace=facts.grace,
    )
    checked = breaker.checked_at
    interval_passed = checked is None or (now - checked).total_seconds() >= facts.check_interval
    failures = seen.new_failures or (1 if seen.stuck and interval_passed else 0)
    if breaker.state is State.OPEN:
        breaker = replace(breaker, restarts=seen.counted)
    elif failures and seen.failure is not None:
        for _ in range(failures):
            breaker = step(breaker, seen.failure, handling, now)
        breaker = replace(breaker, checked_at=now, restarts=seen.counted)
    elif (
        seen.rolled_out
        and wanted
        and (breaker.failures or breaker.state is State.HALF_OPEN)
        and (breaker.state is State.CLOSED or interval_passed)
    ):
        breaker = replace(step(breaker, None, handling, now), checked_at=now)
    if breaker.restarts != seen.counted and breaker.state is not State.OPEN:
        breaker = replace(breaker, restarts=seen.counted)
    return breaker, seen, replicas(breaker, WANTED)


def _quarantine_message(breaker: Breaker) -> str:
    failure = breaker.last_failure
    what = f"{failure.reason}: {failure.message}" if failure else "failures"
    if breaker.needs_review:
        release = "until the plugin is approved again (the failure reached humanReviewThreshold)"
    else:
        release = f"until a trial in {breaker.delay or 0:.0f} s after it opened"
    return f"quarantined (scaled to zero) after {breaker.failures} failure(s), {what}; {release}"


def decide(
    facts: WorkloadFacts | None,
    spec: PluginDescriptor | None,
    blocking: Gate | None,
    enabled: bool,
    now: datetime.datetime,
) -> tuple[Gate, Plan | None]:
    """The WorkloadAvailable gate and the plan (None when workloads are not managed)."""
    if facts is None:
        message = "this operator does not run workloads (WAYANG_WORKLOADS=false)"
        return Gate(KIND, True, Reason.NOT_MANAGED, message), None
    deployment = facts.deployment
    if blocking is not None or spec is None:
        gate_type = blocking.type.value if blocking else ConditionType.VALIDATED.value
        upgrading = (
            blocking is not None
            and spec is not None
            and blocking.reason in KEEP_SERVING
            and deployment is not None
            and deployment.digest != spec.implementation.digest
            and deployment.replicas > 0
            and deployment.available > 0
        )
        if upgrading and deployment is not None:
            message = (
                f"version {deployment.version} ({deployment.digest}) keeps serving until the new "
                f"digest passes {gate_type}"
            )
            return Gate(KIND, True, Reason.SERVING_PREVIOUS, message), Plan(
                None, facts.breaker, _status(facts, None, facts.breaker)
            )
        message = f"no workload: {gate_type} has not passed"
        return Gate(KIND, False, Reason.UNLOADED, message), Plan(
            0, facts.breaker, _status(facts, 0, facts.breaker)
        )
    if not enabled:
        message = "scaled to zero: spec.enabled is false"
        return Gate(KIND, False, Reason.DISABLED, message), Plan(
            0, facts.breaker, _status(facts, 0, facts.breaker)
        )
    if facts.render_error is not None:
        gate = Gate(
            KIND, False, Reason.NOT_RUNNABLE, facts.render_error, ErrorType.PLUGIN_LOAD_ERROR
        )
        return gate, Plan(0, facts.breaker, _status(facts, 0, facts.breaker))
    breaker, seen, wanted = _observe_breaker(facts, spec, now)
    plan = Plan(wanted, breaker, _status(facts, wanted, breaker))
    cause = breaker.last_failure.reason if breaker.last_failure else None
    if breaker.state is State.OPEN:
        gate = Gate(
            KIND,
            False,
            Reason.QUARANTINED,
            _quarantine_message(breaker),
            ErrorType.PLUGIN_LOAD_ERROR,
            retryable=not breaker.needs_review,
            cause=cause,
        )
        return gate, plan
    on = f"on {facts.runtime_class}" if facts.runtime_class else "on the node's default runtime"
    if seen.rolled_out and breaker.state is State.HALF_OPEN:
        message = (
            f"on trial after a quarantine: {breaker.successes} of "
            f"{configured(spec.error_handling)[0].success_threshold} healthy observations"
        )
        return Gate(KIND, False, Reason.HALF_OPEN, message), plan
    if seen.rolled_out:
        message = f"{wanted}/{wanted} ready {on}, digest {spec.implementation.digest}"
        return Gate(KIND, True, Reason.AVAILABLE, message), plan
    if seen.serving and deployment is not None and deployment.digest != spec.implementation.digest:
        message = f"rolling out {spec.implementation.digest}: the previous pods serve meanwhile"
        return Gate(KIND, True, Reason.ROLLING_OUT, message), plan
    if seen.failure is not None and breaker.failures:
        message = (
            f"{seen.failure.reason}: {seen.failure.message} ({breaker.failures} consecutive "
            f"failure(s); quarantined at {configured(spec.error_handling)[0].failure_threshold})"
        )
        gate = Gate(
            KIND,
            False,
            Reason.FAILING,
            message,
            ErrorType.PLUGIN_LOAD_ERROR,
            retryable=True,
            cause=seen.failure.reason,
        )
        return gate, plan
    return Gate(KIND, False, Reason.DEPLOYING, seen.waiting), plan
