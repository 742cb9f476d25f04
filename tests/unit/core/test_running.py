"""The WorkloadAvailable gate as data: observations of Deployments and pods, the breaker counting
each failure once, unloading, serving the previous version during an upgrade, rolling out, and
the audit decisions (LOADED / UNLOADED) the pipeline derives from the gate."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest
from tests import documents as d
from tests.unit.core.test_approval import record, stamped
from tests.unit.core.test_pipeline import RELAXED

from wayang_operator.api.audit import AuditEventType
from wayang_operator.api.descriptor import PluginDescriptor
from wayang_operator.api.resources import BreakerState, ConditionType, PluginPhase
from wayang_operator.controller.reconcile import merge_patch
from wayang_operator.core import surface
from wayang_operator.core.approval import Publishers
from wayang_operator.core.availability import DeploymentRecord, PodRecord, observe
from wayang_operator.core.breaker import Breaker, Failure, Severity
from wayang_operator.core.gates import Gate, Reason
from wayang_operator.core.pipeline import Facts, evaluate
from wayang_operator.core.running import Plan, WorkloadFacts, decide
from wayang_operator.core.workload import descriptor_hash

T0 = datetime.datetime(2026, 11, 22, 12, 0, tzinfo=datetime.UTC)
DIGEST = d.SHA256
OLD = "sha256:" + "b" * 64


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def stamp(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def spec(**changes: Any) -> PluginDescriptor:
    document = d.descriptor()
    document["implementation"] = {
        "type": "container",
        "coordinate": "registry.example/acme/echo",
        "digest": DIGEST,
    }
    document.update(changes)
    return PluginDescriptor.model_validate(document, by_alias=True)


CURRENT = descriptor_hash(spec())


def at_digest(digest: str) -> PluginDescriptor:
    """The plugin at another digest (an earlier version's artifact)."""
    plugin = spec()
    implementation = plugin.implementation.model_copy(update={"digest": digest})
    return plugin.model_copy(update={"implementation": implementation})


def hashed(digest: str, of: PluginDescriptor | None) -> str:
    return descriptor_hash(of or at_digest(digest))


def deployment(
    digest: str = DIGEST,
    replicas: int = 1,
    ready: int = 0,
    version: str = "1.0.0",
    *,
    of: PluginDescriptor | None = None,
    template: str = "t1",
    generation: int = 2,
) -> DeploymentRecord:
    """The plugin's Deployment, its template loading the descriptor `of` (default: the plugin
    at `digest`)."""
    return DeploymentRecord.of(
        {
            "metadata": {
                "name": "wayang-echo",
                "generation": generation,
                "labels": {"wayang.io/plugin": "echo"},
                "annotations": {"wayang.io/rendered": "h"},
            },
            "spec": {
                "replicas": replicas,
                "template": {
                    "metadata": {
                        "annotations": {
                            "wayang.io/digest": digest,
                            "wayang.io/version": version,
                            "wayang.io/descriptor-hash": hashed(digest, of),
                            "wayang.io/template-hash": template,
                        }
                    },
                    "spec": {"runtimeClassName": "gvisor"},
                },
            },
            "status": {
                "observedGeneration": 2,
                "readyReplicas": ready,
                "availableReplicas": ready,
                "updatedReplicas": replicas,
            },
        }
    ) or pytest.fail("not a plugin Deployment")


def pod(
    name: str = "echo-1",
    digest: str = DIGEST,
    *,
    ready: bool = False,
    restarts: int = 0,
    waiting: str | None = None,
    last: dict[str, Any] | None = None,
    running_since: datetime.datetime | None = None,
    of: PluginDescriptor | None = None,
    template: str = "t1",
    unready_since: datetime.datetime | None = None,
) -> PodRecord:
    state: dict[str, Any] = {}
    if waiting:
        state = {"waiting": {"reason": waiting, "message": f"{waiting} happened"}}
    elif running_since:
        state = {"running": {"startedAt": stamp(running_since)}}
    return PodRecord.of(
        {
            "metadata": {
                "name": name,
                "labels": {"wayang.io/plugin": "echo"},
                "annotations": {
                    "wayang.io/digest": digest,
                    "wayang.io/descriptor-hash": hashed(digest, of),
                    "wayang.io/template-hash": template,
                },
            },
            "status": {
                "containerStatuses": [
                    {
                        "ready": ready,
                        "restartCount": restarts,
                        "state": state,
                        "lastState": {"terminated": last} if last else {},
                    }
                ],
                "conditions": [
                    {"type": "Ready", "status": "False", "lastTransitionTime": stamp(when)}
                    for when in [unready_since]
                    if when is not None and not ready
                ],
            },
        }
    ) or pytest.fail("not a plugin pod")


CRASHED = {"reason": "Error", "exitCode": 2, "message": ""}


def facts(
    dep: DeploymentRecord | None = None,
    pods: list[PodRecord] | None = None,
    breaker: Breaker | None = None,
    **changes: Any,
) -> WorkloadFacts:
    values: dict[str, Any] = {
        "deployment": dep,
        "pods": pods or [],
        "breaker": breaker or Breaker(),
        "policies": [RELAXED],
        "endpoint": "http://wayang-echo.team-a.svc:80",
        "approved_since": None,
        "check_interval": 10.0,
        "grace": 60.0,
    }
    return WorkloadFacts(**(values | changes))


def gate(
    workload: WorkloadFacts, plugin: PluginDescriptor | None = None, now: float = 0, **kw: Any
) -> tuple[Gate, Any]:
    return decide(workload, plugin or spec(), kw.get("blocking"), kw.get("enabled", True), at(now))


# ------------------------------------------------------------------------------------------------
# Observations


def test_records_keep_what_the_decisions_need() -> None:
    record = deployment(ready=1)
    assert (record.plugin, record.digest, record.version, record.runtime_class) == (
        "echo", DIGEST, "1.0.0", "gvisor",
    )  # fmt: skip
    assert DeploymentRecord.of({"metadata": {"name": "other"}}) is None, "not ours: no label"
    crashed = pod(restarts=3, waiting="CrashLoopBackOff", last=CRASHED)
    failure = crashed.failure()
    assert failure is not None
    assert failure.reason == "CrashLoopBackOff"
    assert "exit code 2" in failure.message
    assert crashed.failures() == 3
    oom = pod(restarts=1, last={"reason": "OOMKilled", "exitCode": 137})
    assert oom.failure() == Failure(
        "OOMKilled", Severity.ERROR, "exit code 137 (restarted 1 times)"
    )
    no_image = pod(waiting="ErrImageNeverPull")
    assert no_image.failures() == 1, "an image that cannot be had counts once"
    assert no_image.failure() is not None
    assert no_image.failure().severity is Severity.CRITICAL  # type: ignore[union-attr]


def test_a_restart_is_counted_once_however_often_it_is_seen() -> None:
    crashed = pod(restarts=2, last=CRASHED)
    first = observe(
        deployment(), [crashed], descriptor=CURRENT, wanted=1, counted={}, now=T0, grace=60
    )
    assert (first.new_failures, first.counted) == (2, {"echo-1": 2})
    again = observe(
        deployment(),
        [crashed],
        descriptor=CURRENT,
        wanted=1,
        counted=first.counted,
        now=T0,
        grace=60,
    )
    assert again.new_failures == 0


def test_rolled_out_means_every_wanted_replica_of_the_digest_is_ready_and_nothing_else() -> None:
    def rolled(dep: DeploymentRecord, pods: list[PodRecord], wanted: int = 1) -> bool:
        seen = observe(dep, pods, descriptor=CURRENT, wanted=wanted, counted={}, now=T0, grace=60)
        return seen.rolled_out

    assert rolled(deployment(ready=1), [pod(ready=True)])
    assert not rolled(deployment(ready=0), [pod(ready=False)])
    assert not rolled(deployment(OLD, ready=1), [pod(digest=OLD, ready=True)]), "old digest"
    assert not rolled(deployment(ready=1), [pod(ready=True), pod("old", OLD, ready=True)])
    assert rolled(deployment(replicas=0), [], wanted=0)


def test_rolled_out_follows_the_pod_template_not_the_deployments_generation() -> None:
    """The API server bumps a Deployment's generation for a change of its own annotations (the
    known-good record, the render hash) before the controller observes it: pods made from the
    same template still serve (the e2e disable/revoke test saw Available, Deploying, Available
    in 200 ms, audited as LOADED, UNLOADED, LOADED). A changed template is not rolled out
    until pods of it are ready."""

    def rolled(dep: DeploymentRecord, pods: list[PodRecord]) -> bool:
        seen = observe(dep, pods, descriptor=CURRENT, wanted=1, counted={}, now=T0, grace=60)
        return seen.rolled_out

    unobserved = deployment(ready=1, generation=3)
    assert unobserved.generation > unobserved.observed_generation
    assert rolled(unobserved, [pod(ready=True)])
    changed = deployment(ready=1, generation=3, template="t2")
    assert not rolled(changed, [pod(ready=True)]), "the pods run the previous template"
    assert not rolled(changed, [pod(ready=True), pod("new", template="t2")])
    assert rolled(changed, [pod("new", ready=True, template="t2")])


def test_a_pod_running_unready_past_its_grace_is_stuck() -> None:
    young = pod(running_since=at(-30))
    old = pod(running_since=at(-90))
    assert not observe(
        None, [young], descriptor=CURRENT, wanted=1, counted={}, now=T0, grace=60
    ).stuck
    seen = observe(None, [old], descriptor=CURRENT, wanted=1, counted={}, now=T0, grace=60)
    assert seen.stuck
    assert seen.failure is not None
    assert seen.failure.reason == "NotReady"


def test_a_pod_that_served_then_turned_unready_counts_without_the_grace() -> None:
    """The runtime host turns unready when its calls keep failing: that counts at once. A pod
    whose Ready condition dates from before its container started never served: the grace."""
    fell = pod(running_since=at(-20), unready_since=at(-5))
    seen = observe(None, [fell], descriptor=CURRENT, wanted=1, counted={}, now=T0, grace=60)
    assert seen.stuck
    assert seen.failure is not None
    assert seen.failure.reason == "NotReady"
    assert "served, then stopped passing its readiness probe" in seen.failure.message
    starting = pod(running_since=at(-20), unready_since=at(-25))
    assert not observe(
        None, [starting], descriptor=CURRENT, wanted=1, counted={}, now=T0, grace=60
    ).stuck


def test_failing_calls_quarantine_a_serving_plugin() -> None:
    """Seed §13: call-level failures feed the operator's breaker through readiness."""
    plugin = spec(errorHandling=handling(2))
    fell = [pod(of=plugin, running_since=at(-300), unready_since=at(-1))]
    result, plan = gate(facts(deployment(of=plugin), fell), plugin)
    assert (result.reason, plan.breaker.failures) == (Reason.FAILING, 1)
    result, plan = gate(facts(deployment(of=plugin), fell, plan.breaker), plugin, now=10)
    assert (result.reason, plan.replicas) == (Reason.QUARANTINED, 0)
    assert "its calls keep failing" in result.message


# ------------------------------------------------------------------------------------------------
# The gate


def test_not_managed_passes_and_plans_nothing() -> None:
    result, plan = decide(None, spec(), None, True, T0)
    assert (result.passed, result.reason, plan) == (True, Reason.NOT_MANAGED, None)


def test_available_once_rolled_out() -> None:
    result, plan = gate(facts(deployment(ready=1), [pod(ready=True)]))
    assert (result.passed, result.reason) == (True, Reason.AVAILABLE)
    assert "on gvisor" in result.message
    assert plan.replicas == 1
    assert plan.status["digest"] == DIGEST
    assert plan.status["endpoint"] == "http://wayang-echo.team-a.svc:80"


def test_deploying_until_then() -> None:
    result, plan = gate(facts(None))
    assert (result.passed, result.reason, plan.replicas) == (False, Reason.DEPLOYING, 1)
    result, _ = gate(facts(deployment(), [pod(waiting="ContainerCreating")]))
    assert "ContainerCreating" in result.message


def test_governance_not_passed_unloads_it() -> None:
    blocking = Gate(ConditionType.APPROVED, False, Reason.REVOKED, "revoked by approver-1")
    result, plan = gate(facts(deployment(ready=1), [pod(ready=True)]), blocking=blocking)
    assert (result.passed, result.reason, plan.replicas) == (False, Reason.UNLOADED, 0)
    assert "Approved has not passed" in result.message


def test_disabled_scales_to_zero() -> None:
    result, plan = gate(facts(deployment(ready=1)), enabled=False)
    assert (result.reason, plan.replicas) == (Reason.DISABLED, 0)


def test_a_new_version_awaiting_approval_leaves_the_previous_one_serving() -> None:
    waiting = Gate(ConditionType.APPROVED, False, Reason.AWAITING_APPROVAL, "needs 1 approver")
    serving = facts(deployment(OLD, ready=1, version="0.9.0"), [pod(digest=OLD, ready=True)])
    result, plan = gate(serving, blocking=waiting)
    assert (result.passed, result.reason, plan.replicas) == (True, Reason.SERVING_PREVIOUS, None)
    assert "0.9.0" in result.message
    assert plan.status["digest"] == OLD
    same_digest = facts(deployment(ready=1), [pod(ready=True)])
    assert gate(same_digest, blocking=waiting)[0].reason is Reason.UNLOADED, (
        "the same digest awaiting approval again (approval withdrawn) is not an upgrade"
    )


def test_a_grown_surface_leaves_the_approved_render_serving_only_while_it_is_approved() -> None:
    """Same digest, more powers: the render of the approved surface keeps serving, but only
    while an approval of that surface still exists (a withdrawn one unloads it)."""
    waiting = Gate(ConditionType.APPROVED, False, Reason.AWAITING_APPROVAL, "grown")
    approved = surface.digest_for(spec(), [RELAXED])
    rendered = dataclasses.replace(deployment(ready=1), surface=approved)
    grown = spec(capabilities=["network"])
    serving = facts(rendered, [pod(ready=True)])
    result, plan = decide(
        serving, grown, waiting, True, at(0), earlier_surfaces=frozenset({approved})
    )
    assert plan is not None
    assert (result.reason, plan.replicas) == (Reason.SERVING_PREVIOUS, None)
    assert "until the grown surface passes Approved" in result.message
    withdrawn = decide(serving, grown, waiting, True, at(0))[0]
    assert withdrawn.reason is Reason.UNLOADED


def test_a_refused_render_and_a_missing_secret_are_statuses() -> None:
    refused, plan = gate(facts(refused="exceeded quota: count/deployments.apps=0"))
    assert (refused.reason, refused.passed, plan.replicas) == (Reason.RENDER_REFUSED, False, None)
    assert "exceeded quota" in refused.message
    waiting = facts(deployment(), [pod(waiting="ContainerCreating")], missing_secret="db-readonly")
    missing, plan = gate(waiting)
    assert missing.reason is Reason.SECRET_MISSING
    assert "Secret 'db-readonly'" in missing.message
    assert plan.breaker.failures == 0, "a missing Secret is not the plugin's failure"


def test_rolling_out_while_the_old_pods_serve() -> None:
    during = facts(deployment(OLD, ready=1), [pod("old", OLD, ready=True), pod(running_since=T0)])
    result, plan = gate(during)
    assert (result.passed, result.reason, plan.replicas) == (True, Reason.ROLLING_OUT, 1)


def test_not_runnable_says_why() -> None:
    maven = spec(
        implementation={"type": "maven", "coordinate": "a:b:1", "digest": "sha256:" + "1" * 64}
    )
    result, plan = gate(facts(), maven)
    assert (result.reason, result.error, plan.replicas) == (
        Reason.NOT_RUNNABLE, "PluginLoadError", 0,
    )  # fmt: skip


def handling(threshold: int = 2, **more: Any) -> dict[str, Any]:
    return {"circuitBreaker": {"failureThreshold": threshold, "timeoutMs": 5000, **more}}


def test_crashes_fail_then_quarantine_at_the_threshold_and_half_open_later() -> None:
    plugin = spec(errorHandling=handling(3))
    once = facts(
        deployment(of=plugin),
        [pod(of=plugin, restarts=1, waiting="CrashLoopBackOff", last=CRASHED)],
    )
    result, plan = gate(once, plugin)
    assert (result.reason, result.retryable, result.cause) == (
        Reason.FAILING, True, "CrashLoopBackOff",
    )  # fmt: skip
    assert plan.breaker.failures == 1
    again = facts(once.deployment, once.pods, plan.breaker)
    assert gate(again, plugin)[1].breaker.failures == 1, "the same restart is not counted again"
    crashed = [pod(of=plugin, restarts=3, waiting="CrashLoopBackOff", last=CRASHED)]
    result, plan = gate(facts(once.deployment, crashed, plan.breaker), plugin, now=5)
    assert (result.reason, plan.replicas) == (Reason.QUARANTINED, 0)
    assert plan.breaker.state is BreakerState.OPEN
    assert "until a trial" in result.message
    delay = plan.breaker.delay
    assert delay is not None
    assert 4.0 <= delay <= 5.0, "timeoutMs with jitter"
    still, _ = gate(facts(deployment(of=plugin, replicas=0), [], plan.breaker), plugin, now=6)
    assert still.reason is Reason.QUARANTINED
    trial, trial_plan = gate(
        facts(deployment(of=plugin, replicas=0), [], plan.breaker), plugin, now=11
    )
    assert trial_plan.breaker.state is BreakerState.HALF_OPEN
    assert trial_plan.replicas == 1
    assert trial.reason is Reason.DEPLOYING


def test_a_trial_closes_after_healthy_observations_one_interval_apart() -> None:
    plugin = spec(errorHandling=handling(2, successThreshold=2))
    breaker = Breaker(BreakerState.HALF_OPEN, trips=1)
    healthy = facts(deployment(of=plugin, ready=1), [pod(of=plugin, ready=True)], breaker)
    result, plan = gate(healthy, plugin, now=0)
    assert (result.reason, plan.breaker.successes) == (Reason.HALF_OPEN, 1)
    soon = facts(healthy.deployment, healthy.pods, plan.breaker)
    assert gate(soon, plugin, now=3)[1].breaker.successes == 1, "within the interval: not again"
    result, plan = gate(soon, plugin, now=10)
    assert (result.reason, plan.breaker.state) == (Reason.AVAILABLE, BreakerState.CLOSED)


def test_a_stuck_readiness_counts_once_per_interval() -> None:
    plugin = spec(errorHandling=handling(2))
    stuck = [pod(of=plugin, running_since=at(-100))]
    result, plan = gate(facts(deployment(of=plugin), stuck), plugin)
    assert (result.reason, plan.breaker.failures) == (Reason.FAILING, 1)
    later = facts(deployment(of=plugin), stuck, plan.breaker)
    assert gate(later, plugin, now=5)[1].breaker.failures == 1
    result, plan = gate(later, plugin, now=10)
    assert (result.reason, plan.breaker.failures) == (Reason.QUARANTINED, 2)


def test_an_image_that_cannot_be_had_needs_a_new_approval() -> None:
    plugin = spec(errorHandling=handling(5))
    result, plan = gate(
        facts(deployment(of=plugin), [pod(of=plugin, waiting="ErrImageNeverPull")]), plugin
    )
    assert (result.reason, result.retryable) == (Reason.QUARANTINED, False)
    assert "approved again" in result.message
    held = facts(deployment(of=plugin, replicas=0), [], plan.breaker, approved_since=at(-60))
    assert gate(held, plugin, now=3600)[0].reason is Reason.QUARANTINED, "no timeout release"
    released = facts(deployment(of=plugin, replicas=0), [], plan.breaker, approved_since=at(30))
    assert gate(released, plugin, now=60)[1].replicas == 1


def decided(
    workload: WorkloadFacts,
    plugin: PluginDescriptor,
    now: float,
    fallback: PluginDescriptor | None = None,
) -> tuple[Gate, Plan]:
    result, plan = decide(workload, plugin, None, True, at(now), fallback=fallback)
    assert plan is not None
    return result, plan


def upgrade(auto_heal: bool = False) -> tuple[PluginDescriptor, PluginDescriptor]:
    """Version 1.2.0 at OLD was Available; 2.0.0 at DIGEST crashes (breaker trips at 2)."""
    good = at_digest(OLD)
    errors = handling(2) | {"autoHealEnabled": auto_heal}
    return good, spec(version="2.0.0", errorHandling=errors)


def crashing_upgrade(good: PluginDescriptor, new: PluginDescriptor) -> WorkloadFacts:
    """The new version's pod crash-loops beside the old one, which still serves."""
    pods = [
        pod("old", OLD, ready=True, of=good),
        pod("new", restarts=2, waiting="CrashLoopBackOff", last=CRASHED, of=new),
    ]
    return facts(deployment(of=new, ready=1), pods, known_good=good)


def test_a_failing_upgrade_never_takes_the_serving_version_down() -> None:
    """Without autoHealEnabled: the new version is quarantined, the known-good is rendered at
    full strength (never zero), and the half-open trial rolls the new one out again beside it."""
    good, new = upgrade()
    during = crashing_upgrade(good, new)
    rolling, plan = decided(during, new, 0, fallback=good)
    assert rolling.reason is Reason.NEW_VERSION_QUARANTINED, "two crashes: the breaker opened"
    assert rolling.passed is True, "the known-good serves"
    assert (plan.replicas, plan.serve, plan.known_good) == (1, good, good)
    assert "version 1.2.0" in rolling.message
    assert "keeps serving" in rolling.message
    assert "until a trial" in rolling.message
    assert rolling.error == "PluginLoadError"
    assert plan.breaker.descriptor == descriptor_hash(new), "the breaker is the new version's"
    back = facts(deployment(OLD, ready=1, of=good), [pod("old", OLD, ready=True, of=good)])
    back = dataclasses.replace(back, breaker=plan.breaker, known_good=good)
    still, plan = decided(back, new, 1, fallback=good)
    assert (still.reason, plan.serve, plan.replicas) == (Reason.NEW_VERSION_QUARANTINED, good, 1)
    trial, plan = decided(back, new, 60, fallback=good)
    assert plan.breaker.state is BreakerState.HALF_OPEN
    assert (plan.serve, plan.known_good, plan.replicas) == (None, good, 1), (
        "the trial renders the new version and keeps the known-good's descriptor for its pods"
    )
    assert trial.reason is Reason.ROLLING_OUT, "the old pods serve during the trial"
    no_fallback, plan = decided(during, new, 0)
    assert (no_fallback.reason, plan.replicas) == (Reason.QUARANTINED, 0), (
        "without a known-good that may run, a quarantine is zero replicas"
    )


def test_auto_heal_rolls_back_and_stays_until_the_spec_changes() -> None:
    good, new = upgrade(auto_heal=True)
    rolled, plan = decided(crashing_upgrade(good, new), new, 0, fallback=good)
    assert (rolled.reason, rolled.passed) == (Reason.ROLLED_BACK, True)
    assert (plan.replicas, plan.serve) == (1, good)
    assert "rolled back to version 1.2.0" in rolled.message
    assert "autoHealEnabled" in rolled.message
    back = facts(deployment(OLD, ready=1, of=good), [pod("old", OLD, ready=True, of=good)])
    back = dataclasses.replace(back, breaker=plan.breaker, known_good=good)
    later, plan = decided(back, new, 3600, fallback=good)
    assert (later.reason, plan.serve) == (Reason.ROLLED_BACK, good), "no trials of the failed one"
    fixed = spec(version="2.0.1", errorHandling=handling(2) | {"autoHealEnabled": True})
    retried, plan = decided(back, fixed, 3601, fallback=good)
    assert plan.breaker.state is BreakerState.CLOSED, "a new descriptor starts a new breaker"
    assert (retried.reason, plan.serve, plan.known_good) == (Reason.ROLLING_OUT, None, good)


def test_the_breaker_starts_over_for_a_new_descriptor_but_a_review_is_not_skipped() -> None:
    plugin = spec(errorHandling=handling(2))
    opened = Breaker(
        BreakerState.OPEN, failures=2, opened_at=T0, trips=1, delay=60,
        descriptor=descriptor_hash(at_digest(OLD)),
    )  # fmt: skip
    _, plan = decided(facts(breaker=opened), plugin, 1)
    assert plan.breaker.state is BreakerState.CLOSED
    assert plan.breaker.descriptor == descriptor_hash(plugin)
    review = dataclasses.replace(opened, needs_review=True)
    held, plan = decided(facts(breaker=review), plugin, 1)
    assert (held.reason, plan.breaker.state) == (Reason.QUARANTINED, BreakerState.OPEN), (
        "a quarantine that needs review is not released by editing the configuration"
    )
    adopted = dataclasses.replace(opened, descriptor=None)
    _, plan = decided(facts(breaker=adopted), plugin, 1)
    assert plan.breaker.state is BreakerState.OPEN, "a breaker from before the hash is kept"


def test_available_records_the_known_good_and_rolling_out_keeps_it() -> None:
    good = at_digest(OLD)
    up, plan = gate(facts(deployment(ready=1), [pod(ready=True)]))
    assert (up.reason, plan.known_good) == (Reason.AVAILABLE, spec())
    rolling = facts(
        deployment(ready=1), [pod("old", OLD, ready=True, of=good), pod()], known_good=good
    )
    result, plan = decided(rolling, spec(), 0, fallback=good)
    assert (result.reason, plan.known_good) == (Reason.ROLLING_OUT, good)
    _, plan = decided(rolling, spec(), 0)
    assert plan.known_good is None, "a record that may no longer run is dropped"


def upgrade_facts(
    workload: WorkloadFacts, approvals: list[Any], new: PluginDescriptor | None = None
) -> Facts:
    return Facts(
        name="data-processor",
        namespace="team-a",
        generation=2,
        spec=(new or upgrade()[1]).model_dump(mode="json", by_alias=True, exclude_none=True),
        publishers=Publishers(("publisher-1",)),
        policies=[RELAXED],
        approvals=approvals,
        previous=[],
        workload=workload,
    )


def test_the_known_good_record_serves_only_while_its_approval_holds() -> None:
    """The pipeline hands the record to the gate only while the earlier artifact is still
    approved: a revoked one, or a record forged by whoever can edit the Deployment, is never
    rendered (the new version's quarantine is then zero replicas)."""
    good, new = upgrade()
    approve_new = stamped([record("b", "approver-1", version="2.0.0", digest=DIGEST)], new)
    approve_good = stamped([record("a", "approver-1", version="1.2.0", digest=OLD)], good)
    during = crashing_upgrade(good, new)
    served = evaluate(upgrade_facts(during, approve_new + approve_good), stamp(T0))
    assert served.workload is not None
    assert served.workload.serve == good
    assert served.phase is PluginPhase.QUARANTINED
    revoke = record("r", "approver-2", "Revoke", version="1.2.0", digest=OLD)
    revoked = evaluate(upgrade_facts(during, [*approve_new, *approve_good, revoke]), stamp(T0))
    assert revoked.workload is not None
    assert (revoked.workload.serve, revoked.workload.replicas) == (None, 0)
    forged = at_digest("sha256:" + "f" * 64)
    planted = dataclasses.replace(during, known_good=forged)
    evaluated = evaluate(upgrade_facts(planted, approve_new + approve_good), stamp(T0))
    assert evaluated.workload is not None
    assert (evaluated.workload.serve, evaluated.workload.replicas) == (None, 0), (
        "a record naming an artifact nobody approved is never rendered"
    )
    audited = [d.kind for d in served.decisions]
    assert AuditEventType.ERROR in audited, "the new version's quarantine is audited"


def test_a_rollback_is_audited_and_announced() -> None:
    good, healing = upgrade(auto_heal=True)
    approve_new = stamped([record("b", "approver-1", version="2.0.0", digest=DIGEST)], healing)
    approve_good = stamped([record("a", "approver-1", version="1.2.0", digest=OLD)], good)
    during = crashing_upgrade(good, healing)
    rolled = evaluate(upgrade_facts(during, approve_new + approve_good, healing), stamp(T0))
    assert rolled.phase is PluginPhase.DEGRADED
    assert AuditEventType.ROLLED_BACK in [d.kind for d in rolled.decisions]
    assert any(t.reason == "RolledBack" for t in rolled.transitions), "an Event announces it"


def test_the_breaker_survives_the_status_round_trip() -> None:
    breaker = Breaker(
        BreakerState.OPEN,
        failures=3,
        opened_at=T0,
        trips=2,
        last_failure=Failure("OOMKilled", Severity.ERROR, "exit code 137"),
        needs_review=True,
        delay=4.5,
        checked_at=T0,
        restarts={"echo-1": 3},
    )
    assert Breaker.from_status(breaker.to_status()) == breaker
    assert Breaker.from_status({"state": "Sideways"}) == Breaker(), "unreadable: closed"


# ------------------------------------------------------------------------------------------------
# In the pipeline


def approved_facts(workload: WorkloadFacts, previous: list[Any] | None = None) -> Facts:
    return Facts(
        name="data-processor",
        namespace="team-a",
        generation=1,
        spec=spec().model_dump(mode="json", by_alias=True, exclude_none=True),
        publishers=Publishers(("publisher-1",)),
        policies=[RELAXED],
        approvals=stamped([record("a", "approver-1")], spec()),
        previous=previous or [],
        workload=workload,
    )


def test_the_pipeline_is_ready_only_with_the_workload_and_audits_loading() -> None:
    deploying = evaluate(approved_facts(facts(None)), stamp(T0))
    assert deploying.phase is PluginPhase.DEPLOYING
    ready_condition = deploying.conditions[-1]
    assert ready_condition.status.value == "False"
    assert ready_condition.message.startswith("WorkloadAvailable:")
    up = evaluate(
        approved_facts(facts(deployment(ready=1), [pod(ready=True)]), deploying.conditions),
        stamp(at(5)),
    )
    assert up.phase is PluginPhase.READY
    assert [decision.kind for decision in up.decisions] == [AuditEventType.LOADED]
    disabled = approved_facts(facts(deployment(ready=1), [pod(ready=True)]), up.conditions)
    off = evaluate(
        Facts(**{**disabled.__dict__, "spec": {**disabled.spec, "enabled": False}}), stamp(at(9))
    )
    assert off.phase is PluginPhase.DISABLED
    assert [decision.kind for decision in off.decisions] == [AuditEventType.UNLOADED]


def test_a_merge_patch_removes_what_the_new_status_dropped() -> None:
    old = {"phase": "Ready", "workload": {"breaker": {"restarts": {"a": 1}, "failures": 1}}}
    new = {"phase": "Ready", "workload": {"breaker": {"restarts": {}}}}
    assert merge_patch(old, new) == {
        "phase": "Ready",
        "workload": {"breaker": {"restarts": {"a": None}, "failures": None}},
    }
