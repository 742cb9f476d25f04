"""The WorkloadAvailable gate: what should run for a plugin, and whether it does.

Pure, like the governance gates: from the plugin's Deployment and pods (as the watches hold
them), its circuit breaker (as its status holds it) and the outcome of the governance gates, it
decides the gate, the replicas to ask for and the breaker's next state.

- Governance not passed: scale to zero (unload), except while a *new* version or a grown surface
  waits for its scan or approval and an earlier approved render is serving: that one keeps
  serving (an upgrade never interrupts service, a grown surface never takes over unapproved) and
  the Deployment is left untouched until the new one passes.
- Disabled: scale to zero, keep every object and the record.
- Cannot be rendered (NotRunnable), or the API server refused the render (RenderRefused): nothing
  runs; the message says why.
- A Secret the plugin mounts does not exist (SecretMissing, seen in its pod's events): it waits
  for the Secret, which the breaker does not count as the plugin's failure.
- Otherwise the breaker decides: open = Quarantined at zero replicas, half-open = one replica on
  trial, closed = the workload, which is Available once the wanted descriptor is rolled out and
  ready. While a new descriptor rolls out, the old pods serve (maxUnavailable 0): RollingOut.
- The breaker is about one descriptor (a new version or configuration starts closed). When a new
  one trips it and the last known-good descriptor (the Deployment's record of the last that was
  Available) may still run (the pipeline checks its approvals, signature and powers), the
  known-good one is rendered instead of scaling to zero, so a failing upgrade never takes the
  serving version down: with `autoHealEnabled` that is a rollback (RolledBack: it stays until
  the spec changes, no trials), without it the new version is quarantined
  (NewVersionQuarantined) and its half-open trials roll it out again while the old pods serve.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, replace
from typing import Any

from ..api.descriptor import PluginDescriptor
from ..api.errors import ErrorType
from ..api.resources import BreakerState as State
from ..api.resources import ConditionType
from . import surface
from .artifacts import NO_RUNTIMES, Runtimes
from .availability import DeploymentRecord, Observation, PodRecord, observe
from .breaker import Breaker, configured, due, replicas, step
from .gates import Gate, Reason
from .policy import NamedPolicy
from .workload import NotRunnable, descriptor_hash, runnable

WANTED = 1
"""Replicas of a plugin: one, the unit the breaker trips; scaling out is a later feature."""
KEEP_SERVING = frozenset({Reason.SCAN_PENDING, Reason.AWAITING_APPROVAL})
"""Governance outcomes of a new version that leave the previous approved digest serving."""
SERVING = frozenset(
    {
        Reason.AVAILABLE,
        Reason.ROLLING_OUT,
        Reason.SERVING_PREVIOUS,
        Reason.ROLLED_BACK,
        Reason.NEW_VERSION_QUARANTINED,
    }
)
"""Workload reasons under which the plugin's pods take calls."""
KIND = ConditionType.WORKLOAD_AVAILABLE


@dataclass(frozen=True)
class WorkloadFacts:
    """What the handler gathered about the workload (None in Facts: workloads not managed)."""

    deployment: DeploymentRecord | None
    pods: list[PodRecord]
    breaker: Breaker
    policies: list[NamedPolicy]
    """The policies governing the plugin: what they grant is what the workload gets."""
    endpoint: str
    approved_since: datetime.datetime | None
    """Creation time of the newest approval: releases a quarantine that needs review."""
    check_interval: float
    grace: float
    missing_secret: str | None = None
    """A Secret the pods cannot mount because it does not exist (from their events)."""
    refused: str | None = None
    """The API server's refusal of the current render, or None."""
    known_good: PluginDescriptor | None = None
    """The Deployment's record of the last descriptor that was Available (unverified: the
    pipeline passes it to `decide` as `fallback` only while it may still run)."""
    runtimes: Runtimes = NO_RUNTIMES
    """The runtime hosts of the hosted types (a type without one cannot run)."""
    pull_secret: str | None = None
    """The Plugin's pull Secret (its policies must allow it)."""


@dataclass(frozen=True)
class Plan:
    replicas: int | None
    """What the workload should be scaled to; None = leave it as it is."""
    breaker: Breaker
    status: dict[str, Any]
    """status.workload."""
    serve: PluginDescriptor | None = None
    """What the pods run when it is not the spec: the known-good descriptor a failing new one
    fell back to."""
    known_good: PluginDescriptor | None = None
    """The descriptor to record as the last known-good (its ConfigMap key stays)."""


def _status(
    facts: WorkloadFacts, wanted: int | None, breaker: Breaker, runtime_class: str = ""
) -> dict[str, Any]:
    deployment = facts.deployment
    status: dict[str, Any] = {
        "replicas": wanted if wanted is not None else (deployment.replicas if deployment else 0),
        "readyReplicas": deployment.ready if deployment else 0,
        "runtimeClass": runtime_class or None,
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
    facts: WorkloadFacts, spec: PluginDescriptor, now: datetime.datetime, *, trials: bool
) -> tuple[Breaker, Observation, int]:
    """Release (new approval), half-open (timer, unless `trials` is off: a rollback stays),
    then count what the workload shows: restarts and image errors at once, a stuck readiness
    and half-open successes once per interval."""
    handling = spec.error_handling
    current = descriptor_hash(spec)
    breaker = facts.breaker
    held = breaker.quarantined and breaker.needs_review  # a review is not skipped by an edit
    if breaker.descriptor not in (None, current) and not held:
        breaker = Breaker(restarts=breaker.restarts)
    if breaker.state is State.OPEN:
        breaker = step(breaker, None, handling, now, approved_since=facts.approved_since)
    if trials:
        breaker = due(breaker, handling, now)
    wanted = replicas(breaker, WANTED)
    seen = observe(
        facts.deployment,
        facts.pods,
        descriptor=current,
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
    return replace(breaker, descriptor=current), seen, replicas(breaker, WANTED)


def _quarantine_message(breaker: Breaker) -> str:
    failure = breaker.last_failure
    what = f"{failure.reason}: {failure.message}" if failure else "failures"
    if breaker.needs_review:
        release = "until the plugin is approved again (the failure reached humanReviewThreshold)"
    else:
        release = f"until a trial in {breaker.delay or 0:.0f} s after it opened"
    return f"quarantined (scaled to zero) after {breaker.failures} failure(s), {what}; {release}"


def _kept(
    facts: WorkloadFacts, spec: PluginDescriptor, fallback: PluginDescriptor | None
) -> PluginDescriptor | None:
    """The known-good record to keep while the spec is not (yet) Available: the spec itself when
    the record is about it, else the verified fallback (a record that may no longer run is
    dropped with its ConfigMap key)."""
    known = facts.known_good
    if known is not None and descriptor_hash(known) == descriptor_hash(spec):
        return spec
    return fallback


def _fallen_back(  # noqa: PLR0917 - the facts, the two descriptors and the breaker's verdict
    facts: WorkloadFacts,
    spec: PluginDescriptor,
    fallback: PluginDescriptor,
    breaker: Breaker,
    runtime_class: str,
    now: datetime.datetime,
) -> tuple[Gate, Plan]:
    """The breaker of a new descriptor is open and a known-good one may run: it serves."""
    seen = observe(
        facts.deployment,
        facts.pods,
        descriptor=descriptor_hash(fallback),
        wanted=WANTED,
        counted=breaker.restarts,
        now=now,
        grace=facts.grace,
    )
    status = _status(facts, WANTED, breaker, runtime_class)
    plan = Plan(WANTED, breaker, status, serve=fallback, known_good=fallback)
    failure = breaker.last_failure
    what = f"{failure.reason}: {failure.message}" if failure else "failures"
    new = f"version {spec.version} ({spec.implementation.digest})"
    old = f"version {fallback.version} ({fallback.implementation.digest})"
    serves = "serves" if seen.serving else "is starting again"
    keeps = "keeps serving" if seen.serving else "is starting again to serve"
    cause = failure.reason if failure else None
    handling = spec.error_handling
    if handling is not None and handling.auto_heal_enabled:
        message = (
            f"{new} tripped its breaker after {breaker.failures} failure(s), {what}; rolled back "
            f"to {old}, the last known-good, which {serves} (autoHealEnabled); it stays until "
            "the spec changes (a fixed version or configuration)"
        )
        return Gate(KIND, bool(seen.serving), Reason.ROLLED_BACK, message, cause=cause), plan
    if breaker.needs_review:
        release = "until this version is approved again (the failure reached humanReviewThreshold)"
    else:
        release = f"until a trial in {breaker.delay or 0:.0f} s after it opened"
    message = (
        f"{new} quarantined after {breaker.failures} failure(s), {what}; {old} {keeps}; {release}"
    )
    gate = Gate(
        KIND,
        bool(seen.serving),
        Reason.NEW_VERSION_QUARANTINED,
        message,
        ErrorType.PLUGIN_LOAD_ERROR,
        retryable=not breaker.needs_review,
        cause=cause,
    )
    return gate, plan


def decide(  # noqa: PLR0912 - one branch per outcome of the gate, in order
    facts: WorkloadFacts | None,
    spec: PluginDescriptor | None,
    blocking: Gate | None,
    enabled: bool,
    now: datetime.datetime,
    *,
    earlier_surfaces: frozenset[str] = frozenset(),
    fallback: PluginDescriptor | None = None,
) -> tuple[Gate, Plan | None]:
    """The WorkloadAvailable gate and the plan (None when workloads are not managed).
    `earlier_surfaces`: surfaces of this very artifact that approvals were made for before the
    Plugin's powers grew; a workload rendered from one of them keeps serving. `fallback`: the
    known-good descriptor, when the pipeline found that it may still run."""
    if facts is None:
        message = "this operator does not run workloads (WAYANG_WORKLOADS=false)"
        return Gate(KIND, True, Reason.NOT_MANAGED, message), None
    deployment = facts.deployment
    if blocking is not None or spec is None:
        gate_type = blocking.type.value if blocking else ConditionType.VALIDATED.value
        serving = deployment is not None and deployment.replicas > 0 and deployment.available > 0
        upgrading = (
            blocking is not None
            and spec is not None
            and blocking.reason in KEEP_SERVING
            and serving
            and deployment is not None
            and (
                deployment.digest != spec.implementation.digest
                or (
                    deployment.surface != surface.digest_for(spec, facts.policies)
                    and deployment.surface in earlier_surfaces
                )
            )
        )
        if upgrading and deployment is not None:
            what = (
                "the new digest"
                if spec is not None and deployment.digest != spec.implementation.digest
                else "the grown surface"
            )
            message = (
                f"version {deployment.version} ({deployment.digest}, approved surface "
                f"{deployment.surface}) keeps serving until {what} passes {gate_type}"
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
    try:
        runtime_class = runnable(
            spec, facts.policies, facts.runtimes, facts.pull_secret
        ).runtime_class
    except NotRunnable as error:
        gate = Gate(KIND, False, Reason.NOT_RUNNABLE, str(error), ErrorType.PLUGIN_LOAD_ERROR)
        return gate, Plan(0, facts.breaker, _status(facts, 0, facts.breaker))
    if facts.refused is not None:
        message = f"the API server refused the plugin's objects: {facts.refused}"
        gate = Gate(KIND, False, Reason.RENDER_REFUSED, message, ErrorType.PLUGIN_LOAD_ERROR)
        return gate, Plan(None, facts.breaker, _status(facts, None, facts.breaker))
    handling = spec.error_handling
    healing = fallback is not None and handling is not None and handling.auto_heal_enabled
    # a rollback stays: no half-open trials of the version that failed (a new descriptor, a
    # fixed version or configuration, starts a new breaker)
    breaker, seen, wanted = _observe_breaker(facts, spec, now, trials=not healing)
    if breaker.state is State.OPEN and fallback is not None:
        return _fallen_back(facts, spec, fallback, breaker, runtime_class, now)
    kept = _kept(facts, spec, fallback)
    plan = Plan(wanted, breaker, _status(facts, wanted, breaker, runtime_class), known_good=kept)
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
    on = f"on {runtime_class}" if runtime_class else "on the node's default runtime"
    if seen.rolled_out and breaker.state is State.HALF_OPEN:
        message = (
            f"on trial after a quarantine: {breaker.successes} of "
            f"{configured(spec.error_handling)[0].success_threshold} healthy observations"
        )
        return Gate(KIND, False, Reason.HALF_OPEN, message), plan
    if seen.rolled_out:
        message = f"{wanted}/{wanted} ready {on}, digest {spec.implementation.digest}"
        gate = Gate(KIND, True, Reason.AVAILABLE, message)
        return gate, replace(plan, known_good=spec)
    if seen.others_serving:
        message = (
            f"rolling out version {spec.version} ({spec.implementation.digest}, descriptor "
            f"{descriptor_hash(spec)}): the previous pods serve meanwhile; the new ones: "
            f"{seen.waiting}"
        )
        if seen.failure is not None and breaker.failures:
            threshold = configured(spec.error_handling)[0].failure_threshold
            message += (
                f"; {seen.failure.reason}: {seen.failure.message} ({breaker.failures} "
                f"consecutive failure(s); quarantined at {threshold})"
            )
        return Gate(KIND, True, Reason.ROLLING_OUT, message), plan
    if facts.missing_secret is not None:
        message = (
            f"waiting for Secret {facts.missing_secret!r}, which the plugin mounts and which does "
            f"not exist in this namespace; create it (the pods start once it exists)"
        )
        return Gate(KIND, False, Reason.SECRET_MISSING, message, ErrorType.PLUGIN_LOAD_ERROR), plan
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
