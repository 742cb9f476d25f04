"""What a plugin's workload is doing, read from its Deployment and pods as the watches hold them.

The records keep only what the decisions need (a pod is a few fields, not its whole body), and
`observe` turns them into one Observation: how many replicas serve, whether the wanted digest is
rolled out and ready, and the failures to count. A failure is a container restart (crash, OOM
kill, failed liveness probe: the kubelet restarts with its own exponential backoff), an image
that cannot be had, or a pod that has run past its readiness grace without becoming ready. Each
is counted per pod against the restarts already counted, so the same restart seen in ten events
is still one failure.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .breaker import FETCH_REFUSED, Failure, classify

PLUGIN_LABEL = "wayang.io/plugin"
DIGEST_ANNOTATION = "wayang.io/digest"
VERSION_ANNOTATION = "wayang.io/version"
RENDERED_ANNOTATION = "wayang.io/rendered"
"""On the Deployment: a hash of every object rendered for the plugin, so an unchanged render is
not applied again (and a Deployment edited or deleted by hand is put back)."""
DESCRIPTOR_ANNOTATION = "wayang.io/descriptor-hash"
"""On the pod template: a hash of the descriptor the pods load (a change rolls them); the
breaker and the observations are about the pods of one descriptor."""
TEMPLATE_ANNOTATION = "wayang.io/template-hash"
"""On the pod template, so on every pod: a hash of the rest of the template. A pod runs what
the Deployment asks for when the two agree, whether or not the Deployment's generation has
been observed: the API server bumps a Deployment's generation for an annotation change of its
own metadata too (the known-good record, the render hash), and waiting for the controller to
observe that would show a serving plugin as Deploying for a moment."""
SURFACE_ANNOTATION = "wayang.io/approved-surface"
"""The digest of the approved surface a Deployment was rendered from."""
KNOWN_GOOD_ANNOTATION = "wayang.io/known-good"
"""On the Deployment: the last descriptor that was Available (JSON), the one a new version that
trips its breaker falls back to. Trusted only as far as its approvals still hold."""
IMAGE_ERRORS = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName"}
)


def _time(value: Any) -> datetime.datetime | None:
    if not isinstance(value, str):
        return None
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True)
class DeploymentRecord:
    name: str
    plugin: str
    generation: int
    observed_generation: int
    replicas: int
    ready: int
    available: int
    updated: int
    digest: str | None
    version: str | None
    rendered: str | None
    runtime_class: str | None
    surface: str | None = None
    descriptor: str | None = None
    """The hash of the descriptor its pod template loads."""
    template: str | None = None
    """TEMPLATE_ANNOTATION of its pod template."""
    known_good: str | None = None
    """KNOWN_GOOD_ANNOTATION as written (parsed and checked by the gate, never trusted here)."""

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> DeploymentRecord | None:
        meta = body.get("metadata") or {}
        plugin = (meta.get("labels") or {}).get(PLUGIN_LABEL)
        if not plugin:
            return None
        spec, status = body.get("spec") or {}, body.get("status") or {}
        template = spec.get("template") or {}
        annotations = (template.get("metadata") or {}).get("annotations") or {}
        return cls(
            name=str(meta.get("name", "")),
            plugin=str(plugin),
            generation=int(meta.get("generation") or 0),
            observed_generation=int(status.get("observedGeneration") or 0),
            replicas=int(spec.get("replicas", 1) or 0),
            ready=int(status.get("readyReplicas") or 0),
            available=int(status.get("availableReplicas") or 0),
            updated=int(status.get("updatedReplicas") or 0),
            digest=annotations.get(DIGEST_ANNOTATION),
            version=annotations.get(VERSION_ANNOTATION),
            rendered=(meta.get("annotations") or {}).get(RENDERED_ANNOTATION),
            runtime_class=(template.get("spec") or {}).get("runtimeClassName"),
            surface=annotations.get(SURFACE_ANNOTATION),
            descriptor=annotations.get(DESCRIPTOR_ANNOTATION),
            template=annotations.get(TEMPLATE_ANNOTATION),
            known_good=(meta.get("annotations") or {}).get(KNOWN_GOOD_ANNOTATION),
        )


@dataclass(frozen=True)
class ContainerRecord:
    restarts: int
    ready: bool
    waiting: str | None
    """Why it is not running (ContainerCreating, CrashLoopBackOff, ErrImageNeverPull, ...)."""
    waiting_message: str
    last_exit: str | None
    """Why its last run ended (Error, OOMKilled, ...), with the message below."""
    last_message: str
    running_since: datetime.datetime | None


@dataclass(frozen=True)
class PodRecord:
    name: str
    plugin: str
    digest: str | None
    ip: str | None
    deleting: bool
    containers: tuple[ContainerRecord, ...]
    descriptor: str | None = None
    template: str | None = None
    """TEMPLATE_ANNOTATION: the pod template it was made from."""
    unready_since: datetime.datetime | None = None
    """When its Ready condition last turned False (None: it is ready, or no condition yet)."""
    init: tuple[ContainerRecord, ...] = ()
    """Its init containers: a hosted plugin's fetcher, which refuses an artifact whose bytes
    are not the pinned digest (each refusal is a restart with its message)."""

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> PodRecord | None:
        meta = body.get("metadata") or {}
        plugin = (meta.get("labels") or {}).get(PLUGIN_LABEL)
        if not plugin:
            return None
        status = body.get("status") or {}
        return cls(
            name=str(meta.get("name", "")),
            plugin=str(plugin),
            digest=(meta.get("annotations") or {}).get(DIGEST_ANNOTATION),
            ip=status.get("podIP"),
            deleting=bool(meta.get("deletionTimestamp")),
            containers=tuple(_container(c) for c in status.get("containerStatuses") or []),
            init=tuple(_container(c) for c in status.get("initContainerStatuses") or []),
            descriptor=(meta.get("annotations") or {}).get(DESCRIPTOR_ANNOTATION),
            template=(meta.get("annotations") or {}).get(TEMPLATE_ANNOTATION),
            unready_since=next(
                (
                    _time(c.get("lastTransitionTime"))
                    for c in status.get("conditions") or []
                    if c.get("type") == "Ready" and c.get("status") == "False"
                ),
                None,
            ),
        )

    @property
    def ready(self) -> bool:
        return bool(self.containers) and all(c.ready for c in self.containers)

    @property
    def fell_unready(self) -> bool:
        """It was ready since its containers last started and is not any more: its runtime host
        says its calls keep failing (CallHealth) or its plugin stopped loading. The Ready
        condition of a pod that never became ready dates from before its containers started;
        one that went from True to False dates from after."""
        started = [c.running_since for c in self.containers]
        if self.ready or self.unready_since is None or not started or None in started:
            return False
        return self.unready_since > max(s for s in started if s is not None)

    def failures(self) -> int:
        """Failures this pod has had: its restarts, plus one while its image cannot be had."""
        every = self.containers + self.init
        image = any(c.waiting in IMAGE_ERRORS for c in every)
        return sum(c.restarts for c in every) + (1 if image else 0)

    def failure(self) -> Failure | None:
        """The pod's latest failure, if it has one."""
        for init in self.init:
            if init.restarts and init.last_exit:
                detail = init.last_message or f"it ended ({init.last_exit})"
                return classify(
                    FETCH_REFUSED,
                    f"the pod's fetcher refused the artifact: {detail} (restarted "
                    f"{init.restarts} times; nothing was loaded)",
                )
        for container in self.init + self.containers:
            if container.waiting in IMAGE_ERRORS:
                return classify(container.waiting, container.waiting_message)
        for container in self.containers:
            if container.restarts and container.last_exit:
                ended = container.last_exit
                reason = "CrashLoopBackOff" if ended in ("Error", "Completed") else ended
                detail = container.last_message or f"the container ended ({ended})"
                return classify(reason, f"{detail} (restarted {container.restarts} times)")
        return None


def _container(status: Mapping[str, Any]) -> ContainerRecord:
    state = status.get("state") or {}
    waiting = state.get("waiting") or {}
    last = (status.get("lastState") or {}).get("terminated") or {}
    exit_code = last.get("exitCode")
    message = str(last.get("message") or "").strip()
    if last and not message:
        message = f"exit code {exit_code}"
    return ContainerRecord(
        restarts=int(status.get("restartCount") or 0),
        ready=bool(status.get("ready")),
        waiting=waiting.get("reason"),
        waiting_message=str(waiting.get("message") or ""),
        last_exit=last.get("reason"),
        last_message=message,
        running_since=_time((state.get("running") or {}).get("startedAt")),
    )


@dataclass(frozen=True)
class Observation:
    serving: int
    """Replicas available now, of any version."""
    others_serving: int
    """Ready pods of another descriptor (the version a rollout replaces, still taking calls)."""
    rolled_out: bool
    """Every wanted replica runs the wanted descriptor and is ready (0 wanted: none is left)."""
    new_failures: int
    """Restarts and image errors not counted before."""
    stuck: bool
    """A pod of the wanted descriptor has run past its readiness grace without becoming ready,
    or served and then turned unready."""
    counted: dict[str, int]
    """Failures per current pod that has had any, the new ones included (the breaker keeps it)."""
    failure: Failure | None
    """The latest failure (new or not), for the status message."""
    waiting: str
    """What a workload that is not ready yet waits for, in words."""


def observe(
    deployment: DeploymentRecord | None,
    pods: list[PodRecord],
    *,
    descriptor: str,
    wanted: int,
    counted: Mapping[str, int],
    now: datetime.datetime,
    grace: float,
) -> Observation:
    """The workload against what is wanted: `wanted` replicas loading `descriptor` (its hash:
    the digest, the configuration and every other field). `counted` is what
    the breaker already counted per pod; `grace` is how long a running container may stay
    unready before that counts as a failure (NotReady). A pod that served and then turned
    unready counts without the grace: the grace is for starting up."""
    live = [pod for pod in pods if not pod.deleting]
    current = [pod for pod in live if pod.descriptor == descriptor]
    new = 0
    totals: dict[str, int] = {}
    failure: Failure | None = None
    for pod in current:
        had = pod.failures()
        if had:
            totals[pod.name] = had
            new += max(0, had - counted.get(pod.name, 0))
        failure = pod.failure() or failure
    fell = [pod for pod in current if pod.fell_unready]
    stuck = fell or [
        pod
        for pod in current
        if not pod.ready
        and any(
            c.running_since and (now - c.running_since).total_seconds() > grace
            for c in pod.containers
        )
    ]
    if failure is None and fell:
        failure = classify(
            "NotReady",
            f"pod {fell[0].name} served, then stopped passing its readiness probe (GET /readyz):"
            " its calls keep failing (errorHandling.circuitBreaker, counted by the runtime host)"
            " or its plugin stopped loading; the runtime host's log says which",
        )
    elif failure is None and stuck:
        failure = classify(
            "NotReady",
            f"pod {stuck[0].name} has run for more than {grace:.0f} s without passing its "
            "readiness probe (GET /readyz; the runtime host's log says why)",
        )
    ready = [pod for pod in current if pod.ready]
    serving = deployment.available if deployment else 0
    rolled_out = (
        deployment is not None
        and deployment.descriptor == descriptor
        and deployment.replicas == wanted
        and len(ready) >= wanted
        and len(live) == len(ready)
        and all(pod.template == deployment.template for pod in live)
    )
    if wanted == 0:
        rolled_out = not live
    others = [pod for pod in live if pod.descriptor != descriptor and pod.ready]
    return Observation(
        serving=serving,
        others_serving=len(others),
        rolled_out=rolled_out,
        new_failures=new,
        stuck=bool(stuck),
        counted=totals,
        failure=failure,
        waiting=_waiting(deployment, current, ready, wanted),
    )


def _waiting(
    deployment: DeploymentRecord | None,
    current: list[PodRecord],
    ready: list[PodRecord],
    wanted: int,
) -> str:
    if deployment is None:
        return "creating the Deployment"
    if not current:
        return f"waiting for pods of the new ReplicaSet (0/{wanted} ready)"
    states = sorted(
        {c.waiting or ("running, not ready yet" if not c.ready else "ready")
         for pod in current for c in pod.containers} or {"pending"}
    )  # fmt: skip
    return f"{len(ready)}/{wanted} ready ({', '.join(states)})"
