"""The WorkloadAvailable gate as data: observations of Deployments and pods, the breaker counting
each failure once, unloading, serving the previous version during an upgrade, rolling out, and
the audit decisions (LOADED / UNLOADED) the pipeline derives from the gate."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from tests import documents as d
from tests.unit.core.test_approval import record
from tests.unit.core.test_pipeline import RELAXED

from wayang_operator.api.audit import AuditEventType
from wayang_operator.api.descriptor import PluginDescriptor
from wayang_operator.api.resources import BreakerState, ConditionType, PluginPhase
from wayang_operator.controller.reconcile import merge_patch
from wayang_operator.core.approval import Requester
from wayang_operator.core.availability import DeploymentRecord, PodRecord, observe
from wayang_operator.core.breaker import Breaker, Failure, Severity
from wayang_operator.core.gates import Gate, Reason
from wayang_operator.core.pipeline import Facts, evaluate
from wayang_operator.core.running import WorkloadFacts, decide

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


def deployment(
    digest: str = DIGEST, replicas: int = 1, ready: int = 0, version: str = "1.0.0"
) -> DeploymentRecord:
    return DeploymentRecord.of(
        {
            "metadata": {
                "name": "wayang-echo",
                "generation": 2,
                "labels": {"wayang.io/plugin": "echo"},
                "annotations": {"wayang.io/rendered": "h"},
            },
            "spec": {
                "replicas": replicas,
                "template": {
                    "metadata": {
                        "annotations": {"wayang.io/digest": digest, "wayang.io/version": version}
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
                "annotations": {"wayang.io/digest": digest},
            },
            "status": {
                "containerStatuses": [
                    {
                        "ready": ready,
                        "restartCount": restarts,
                        "state": state,
                        "lastState": {"terminated": last} if last else {},
                    }
                ]
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
        "render_error": None,
        "runtime_class": "gvisor",
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
    first = observe(deployment(), [crashed], digest=DIGEST, wanted=1, counted={}, now=T0, grace=60)
    assert (first.new_failures, first.counted) == (2, {"echo-1": 2})
    again = observe(
        deployment(), [crashed], digest=DIGEST, wanted=1, counted=first.counted, now=T0, grace=60
    )
    assert again.new_failures == 0


def test_rolled_out_means_every_wanted_replica_of_the_digest_is_ready_and_nothing_else() -> None:
    def rolled(dep: DeploymentRecord, pods: list[PodRecord], wanted: int = 1) -> bool:
        seen = observe(dep, pods, digest=DIGEST, wanted=wanted, counted={}, now=T0, grace=60)
        return seen.rolled_out

    assert rolled(deployment(ready=1), [pod(ready=True)])
    assert not rolled(deployment(ready=0), [pod(ready=False)])
    assert not rolled(deployment(OLD, ready=1), [pod(digest=OLD, ready=True)]), "old digest"
    assert not rolled(deployment(ready=1), [pod(ready=True), pod("old", OLD, ready=True)])
    assert rolled(deployment(replicas=0), [], wanted=0)


def test_a_pod_running_unready_past_its_grace_is_stuck() -> None:
    young = pod(running_since=at(-30))
    old = pod(running_since=at(-90))
    assert not observe(None, [young], digest=DIGEST, wanted=1, counted={}, now=T0, grace=60).stuck
    seen = observe(None, [old], digest=DIGEST, wanted=1, counted={}, now=T0, grace=60)
    assert seen.stuck
    assert seen.failure is not None
    assert seen.failure.reason == "NotReady"


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


def test_rolling_out_while_the_old_pods_serve() -> None:
    during = facts(deployment(OLD, ready=1), [pod("old", OLD, ready=True), pod(running_since=T0)])
    result, plan = gate(during)
    assert (result.passed, result.reason, plan.replicas) == (True, Reason.ROLLING_OUT, 1)


def test_not_runnable_says_why() -> None:
    result, plan = gate(facts(render_error="policies disagree on the RuntimeClass"))
    assert (result.reason, result.error, plan.replicas) == (
        Reason.NOT_RUNNABLE, "PluginLoadError", 0,
    )  # fmt: skip


def handling(threshold: int = 2, **more: Any) -> dict[str, Any]:
    return {"circuitBreaker": {"failureThreshold": threshold, "timeoutMs": 5000, **more}}


def test_crashes_fail_then_quarantine_at_the_threshold_and_half_open_later() -> None:
    plugin = spec(errorHandling=handling(3))
    once = facts(deployment(), [pod(restarts=1, waiting="CrashLoopBackOff", last=CRASHED)])
    result, plan = gate(once, plugin)
    assert (result.reason, result.retryable, result.cause) == (
        Reason.FAILING, True, "CrashLoopBackOff",
    )  # fmt: skip
    assert plan.breaker.failures == 1
    again = facts(once.deployment, once.pods, plan.breaker)
    assert gate(again, plugin)[1].breaker.failures == 1, "the same restart is not counted again"
    crashed = [pod(restarts=3, waiting="CrashLoopBackOff", last=CRASHED)]
    result, plan = gate(facts(once.deployment, crashed, plan.breaker), plugin, now=5)
    assert (result.reason, plan.replicas) == (Reason.QUARANTINED, 0)
    assert plan.breaker.state is BreakerState.OPEN
    assert "until a trial" in result.message
    delay = plan.breaker.delay
    assert delay is not None
    assert 4.0 <= delay <= 5.0, "timeoutMs with jitter"
    still, _ = gate(facts(deployment(replicas=0), [], plan.breaker), plugin, now=6)
    assert still.reason is Reason.QUARANTINED
    trial, trial_plan = gate(facts(deployment(replicas=0), [], plan.breaker), plugin, now=11)
    assert trial_plan.breaker.state is BreakerState.HALF_OPEN
    assert trial_plan.replicas == 1
    assert trial.reason is Reason.DEPLOYING


def test_a_trial_closes_after_healthy_observations_one_interval_apart() -> None:
    plugin = spec(errorHandling=handling(2, successThreshold=2))
    breaker = Breaker(BreakerState.HALF_OPEN, trips=1)
    healthy = facts(deployment(ready=1), [pod(ready=True)], breaker)
    result, plan = gate(healthy, plugin, now=0)
    assert (result.reason, plan.breaker.successes) == (Reason.HALF_OPEN, 1)
    soon = facts(healthy.deployment, healthy.pods, plan.breaker)
    assert gate(soon, plugin, now=3)[1].breaker.successes == 1, "within the interval: not again"
    result, plan = gate(soon, plugin, now=10)
    assert (result.reason, plan.breaker.state) == (Reason.AVAILABLE, BreakerState.CLOSED)


def test_a_stuck_readiness_counts_once_per_interval() -> None:
    plugin = spec(errorHandling=handling(2))
    stuck = [pod(running_since=at(-100))]
    result, plan = gate(facts(deployment(), stuck), plugin)
    assert (result.reason, plan.breaker.failures) == (Reason.FAILING, 1)
    later = facts(deployment(), stuck, plan.breaker)
    assert gate(later, plugin, now=5)[1].breaker.failures == 1
    result, plan = gate(later, plugin, now=10)
    assert (result.reason, plan.breaker.failures) == (Reason.QUARANTINED, 2)


def test_an_image_that_cannot_be_had_needs_a_new_approval() -> None:
    plugin = spec(errorHandling=handling(5))
    result, plan = gate(facts(deployment(), [pod(waiting="ErrImageNeverPull")]), plugin)
    assert (result.reason, result.retryable) == (Reason.QUARANTINED, False)
    assert "approved again" in result.message
    held = facts(deployment(replicas=0), [], plan.breaker, approved_since=at(-60))
    assert gate(held, plugin, now=3600)[0].reason is Reason.QUARANTINED, "no timeout release"
    released = facts(deployment(replicas=0), [], plan.breaker, approved_since=at(30))
    assert gate(released, plugin, now=60)[1].replicas == 1


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
        publisher=Requester("publisher-1"),
        policies=[RELAXED],
        approvals=[record("a", "approver-1")],
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
    assert [kind for kind, _ in up.decisions] == [AuditEventType.LOADED]
    disabled = approved_facts(facts(deployment(ready=1), [pod(ready=True)]), up.conditions)
    off = evaluate(
        Facts(**{**disabled.__dict__, "spec": {**disabled.spec, "enabled": False}}), stamp(at(9))
    )
    assert off.phase is PluginPhase.DISABLED
    assert [kind for kind, _ in off.decisions] == [AuditEventType.UNLOADED]


def test_a_merge_patch_removes_what_the_new_status_dropped() -> None:
    old = {"phase": "Ready", "workload": {"breaker": {"restarts": {"a": 1}, "failures": 1}}}
    new = {"phase": "Ready", "workload": {"breaker": {"restarts": {}}}}
    assert merge_patch(old, new) == {
        "phase": "Ready",
        "workload": {"breaker": {"restarts": {"a": None}, "failures": None}},
    }
