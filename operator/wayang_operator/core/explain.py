"""Why a Plugin is not running and what would unblock it, in words (`kubectl wayang explain`).

A pure function of what a person can read from the cluster: the Plugin as the API server holds
it, the PluginApprovals that name it and the ScanReport of its digest. It walks the conditions
in gate order (ConditionType's order, the order the pipeline evaluates them) and turns each
machine-readable reason into a sentence and a remedy: the command or the change that would
unblock it. Every `Reason` has its text here; a test enumerates the enum, so a new reason added
to the pipeline without words fails the build rather than reaching users as a bare CamelCase
word. A reason this version does not know (a newer operator) still gets the condition's own
message.

The input is read leniently (plain mappings, not the strict API models): an explanation must
work for exactly the plugins that are broken, including ones whose spec does not validate and
statuses written by another version of the operator.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ..api.resources import ApprovalPhase, ConditionType, Decision, PluginPhase, report_name
from .gates import Reason

OBSERVED = "Observed"
"""The pseudo-gate before all others: has the operator evaluated this generation at all?"""
PLUGIN_LABEL = "wayang.io/plugin"
"""The label on a plugin's pods (core.availability.PLUGIN_LABEL; repeated here to keep this
module free of the workload modules' imports)."""


class StepState(StrEnum):
    PASSED = "Passed"
    BLOCKED = "Blocked"
    """Needs a person: a decision, a fix, a new artifact."""
    WAITING = "Waiting"
    """The operator is on it; time alone may resolve it."""
    FOLLOWS = "Follows"
    """A consequence of an earlier step (e.g. no workload because approval is missing)."""


@dataclass(frozen=True)
class Step:
    gate: str
    """A ConditionType value, or "Observed"."""
    state: StepState
    reason: str
    message: str
    """What the gate's outcome means, in plain words."""
    remedy: str | None
    """What would unblock it (a command, a change); None for a passed step."""
    detail: str = ""
    """The condition's own message, as the operator wrote it."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "gate": self.gate,
            "state": self.state.value,
            "ok": self.state is StepState.PASSED,
            "reason": self.reason,
            "message": self.message,
            "remedy": self.remedy,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Explanation:
    namespace: str
    name: str
    phase: str | None
    ready: bool
    summary: str
    steps: tuple[Step, ...]

    @property
    def blocking(self) -> tuple[Step, ...]:
        """The steps that hold the plugin back, each with its remedy, in gate order."""
        return tuple(s for s in self.steps if s.state in (StepState.BLOCKED, StepState.WAITING))

    def to_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "phase": self.phase,
            "ready": self.ready,
            "summary": self.summary,
            "steps": [step.to_dict() for step in self.steps],
        }


@dataclass(frozen=True)
class ApprovalView:
    """What explain needs of one PluginApproval."""

    name: str
    decision: str
    version: str
    digest: str
    approver: str | None
    reason: str | None
    phase: str | None
    message: str | None

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> ApprovalView:
        spec = body.get("spec") or {}
        status = body.get("status") or {}
        return cls(
            name=str((body.get("metadata") or {}).get("name", "")),
            decision=str(spec.get("decision", "")),
            version=str(spec.get("version", "")),
            digest=str(spec.get("digest", "")),
            approver=(spec.get("approver") or {}).get("username"),
            reason=spec.get("reason"),
            phase=status.get("phase"),
            message=status.get("message"),
        )


@dataclass(frozen=True)
class _Context:
    namespace: str
    name: str
    version: str
    digest: str
    coordinate: str
    detail: str
    approvals: tuple[ApprovalView, ...]
    scan: Mapping[str, Any] | None
    workload: Mapping[str, Any]
    now: datetime.datetime

    @property
    def where(self) -> str:
        return f"-n {self.namespace}"

    @property
    def approve_command(self) -> str:
        return f"kubectl wayang approve {self.name} {self.where} --reason '...'"

    @property
    def report(self) -> str:
        return report_name(self.digest) if self.digest else "(no digest)"


def short_digest(digest: str | None, length: int = 12) -> str:
    """`sha256:ab12…` with `length` hex digits, as `kubectl get` columns show digests."""
    if not digest:
        return ""
    algorithm, _, hexdigits = digest.partition(":")
    if not hexdigits:
        return digest[:length]
    return f"{algorithm}:{hexdigits[:length]}" + ("…" if len(hexdigits) > length else "")


def _decided(ctx: _Context, decision: Decision) -> ApprovalView | None:
    """The approval of this decision the gate cites ("(PluginApproval NAME)" in its message),
    else the first in force for the current digest."""
    mine = [v for v in ctx.approvals if v.decision == decision.value and v.digest == ctx.digest]
    cited = next((v for v in mine if f"PluginApproval {v.name})" in ctx.detail), None)
    in_force = (None, ApprovalPhase.IN_FORCE.value)
    return cited or next((v for v in mine if v.phase in in_force), None)


def _by(view: ApprovalView | None, ctx: _Context, what: str) -> str:
    if view is None:
        return f"{what}: {ctx.detail}"
    who = view.approver or "an approver"
    why = f": {view.reason!r}" if view.reason else " (no reason given)"
    return f"{what} by {who} (PluginApproval {view.name}){why}"


# --------------------------------------------------------------------------------------------
# One text per reason: (state, message, remedy)

Say = Callable[[_Context], tuple[str, str | None]]


def _passed(words: str) -> Say:
    def say(ctx: _Context) -> tuple[str, str | None]:
        return f"{words}: {ctx.detail}" if ctx.detail else words, None

    return say


def _invalid(what: str) -> Say:
    def say(ctx: _Context) -> tuple[str, str | None]:
        return (
            f"{what}: {ctx.detail}",
            "Fix the manifest (check it offline with `wayang validate FILE`) and apply it again.",
        )

    return say


def _signature_invalid(ctx: _Context) -> tuple[str, str | None]:
    return (
        f"Signature not verified: {ctx.detail}",
        "Sign the manifest as it is, powers included (`wayang sign FILE --key KEY`: payload v2 "
        "covers the id, version and the whole approved surface, so any later edit of them needs "
        "a new signature), then apply it; or ask a platform admin to add your public key to the "
        "PluginPolicy's spec.signing.trustedKeys.",
    )


def _not_granted(ctx: _Context) -> tuple[str, str | None]:
    return (
        f"A requested power is not granted: {ctx.detail}",
        "Drop the power from the Plugin (spec.capabilities, spec.requiredSecrets, the Secret in "
        "spec.configuration, resourceProfile.gpu), or ask a platform admin to grant it in the "
        "PluginPolicy (spec.capabilities.<name> with the destinations it may reach, "
        "spec.secrets.allowed).",
    )


def _disagree(ctx: _Context) -> tuple[str, str | None]:
    return (
        f"The policies disagree: {ctx.detail}",
        "A platform admin makes the PluginPolicies that cover this namespace agree (kubectl get "
        "pluginpolicies; the plugin must satisfy each of them).",
    )


def _secret_missing(ctx: _Context) -> tuple[str, str | None]:
    return (
        f"Waiting for a Secret: {ctx.detail}",
        f"Create the Secret in namespace {ctx.namespace} (kubectl create secret generic NAME "
        f"{ctx.where} --from-literal=...); the pods start once it exists.",
    )


def _refused(ctx: _Context) -> tuple[str, str | None]:
    return (
        f"The API server refused the workload: {ctx.detail}",
        "The message names the admission policy, quota or rule that refused it; fix that (or "
        "the plugin's resourceProfile). The operator tries the same objects again every 5 "
        "minutes, and at once after any change of the plugin.",
    )


def _registry(ctx: _Context) -> tuple[str, str | None]:
    return (
        f"The artifact's location is not allowed: {ctx.detail}",
        "Publish the artifact under a registry the policy allows (PluginPolicy "
        "spec.allowedRegistries) and update spec.implementation, or ask a platform admin to "
        "allow this one.",
    )


def _scan_pending(ctx: _Context) -> tuple[str, str | None]:
    if ctx.scan is None:
        state = f"no ScanReport {ctx.report} yet"
    elif not (ctx.scan.get("status") or {}).get("report"):
        state = f"ScanReport {ctx.report} exists, its scan has not finished"
    else:
        state = f"ScanReport {ctx.report} has a result the plugin has not picked up yet"
    return (
        f"Waiting for the scan of {short_digest(ctx.digest)} ({state}). {ctx.detail}",
        "Nothing to do: the operator scans each digest once and re-evaluates the plugin. "
        f"Follow it with: kubectl get scanreport {ctx.report} {ctx.where}",
    )


def _findings(scan: Mapping[str, Any] | None, limit: int = 3) -> str:
    report = ((scan or {}).get("status") or {}).get("report") or {}
    vulnerabilities = report.get("vulnerabilities") or []
    parts = []
    for item in vulnerabilities[:limit]:
        fixed = f", fixed in {item['fixedVersion']}" if item.get("fixedVersion") else ", no fix"
        parts.append(
            f"{item.get('cve', '?')} {item.get('severity', '?')} in "
            f"{item.get('package', '?')} {item.get('version', '')}{fixed}"
        )
    secrets = report.get("secrets") or []
    if secrets:
        parts.append(f"{len(secrets)} secret(s) in the image, e.g. {secrets[0].get('file', '?')}")
    return "; ".join(parts)


def _scan_failed(ctx: _Context) -> tuple[str, str | None]:
    worst = _findings(ctx.scan)
    seen = f" Worst findings: {worst}." if worst else ""
    return (
        f"Blocked by scan: {ctx.detail}.{seen}",
        "Publish a fixed image (a new digest) and update spec.implementation.digest, or ask a "
        "platform admin for a policy exception (PluginPolicy spec.scan: maxSeverity, "
        f"ignoreUnfixed, licenses). The report: kubectl get scanreport {ctx.report} {ctx.where} "
        "-o yaml",
    )


def _scan_error(ctx: _Context) -> tuple[str, str | None]:
    status = (ctx.scan or {}).get("status") or {}
    retry = f" Next attempt: {status['nextScanAt']}." if status.get("nextScanAt") else ""
    return (
        f"The scan could not run: {ctx.detail}.{retry}",
        "The operator retries by itself. If it persists, check that the image "
        f"{ctx.coordinate}@{ctx.digest} can be pulled (a pull secret goes in the Plugin's "
        "annotation wayang.io/image-pull-secret) or is in the operator's scan archives "
        f"(WAYANG_SCAN_ARCHIVES); details: kubectl get scanreport {ctx.report} {ctx.where} -o yaml",
    )


def _notes(ctx: _Context) -> str:
    """Approvals of this plugin that do not count, and why (stale digest, self-approval)."""
    notes = [
        f"PluginApproval {v.name} ({v.decision}) is {v.phase}: {v.message}"
        for v in ctx.approvals
        if v.phase in (ApprovalPhase.STALE.value, ApprovalPhase.IGNORED.value)
    ]
    return (" " + "; ".join(notes) + ".") if notes else ""


def _grown(ctx: _Context) -> str:
    """Approvals of this artifact that no longer count because the Plugin's powers grew."""
    grown = [
        v
        for v in ctx.approvals
        if v.digest == ctx.digest
        and v.phase == ApprovalPhase.STALE.value
        and "grown since" in (v.message or "")
    ]
    if not grown:
        return ""
    powers = sorted({(v.message or "").split("grown since: ", 1)[1] for v in grown})
    who = ", ".join(sorted({v.approver or v.name for v in grown}))
    return (
        f" The Plugin's powers grew since {who} approved it ({'; '.join(powers)}): the approved "
        "surface keeps serving until the grown one is approved."
    )


def _awaiting(ctx: _Context) -> tuple[str, str | None]:
    counting = [
        v
        for v in ctx.approvals
        if v.decision == Decision.APPROVE.value
        and v.digest == ctx.digest
        and v.phase == ApprovalPhase.IN_FORCE.value
    ]
    if counting:
        who = ", ".join(sorted({v.approver or v.name for v in counting}))
        have = f"approved by {who} so far, not enough"
    else:
        have = "no approval in force"
    message = (
        f"Awaiting approval: {have} for digest {short_digest(ctx.digest)} (version "
        f"{ctx.version}); {ctx.detail}.{_grown(ctx)}{_notes(ctx)}"
    )
    others = " (another approver: approvals count by distinct user)" if counting else ""
    return message, f"An approver runs: {ctx.approve_command}{others}"


def _rejected(ctx: _Context) -> tuple[str, str | None]:
    view = _decided(ctx, Decision.REJECT)
    name = view.name if view else "NAME"
    return (
        _by(view, ctx, "Rejected"),
        "Publish a new version or digest that addresses the rejection (a Reject holds for "
        "this digest only), or an approver withdraws it: "
        f"kubectl delete pluginapproval {name} {ctx.where}",
    )


def _revoked(ctx: _Context) -> tuple[str, str | None]:
    view = _decided(ctx, Decision.REVOKE)
    name = view.name if view else "NAME"
    return (
        _by(view, ctx, "Revoked") + "; its approvals are withdrawn and its workload is unloaded",
        "A revocation stays in force until it is deleted (kubectl delete pluginapproval "
        f"{name} {ctx.where}); deleting it revives none of the approvals it overruled: the "
        "artifact then needs fresh approvals, and whoever deleted another approver's revocation "
        "cannot supply them alone. Or publish a new digest and have it approved.",
    )


def _unresolved(ctx: _Context) -> tuple[str, str | None]:
    return (
        f"Dependencies missing: {ctx.detail}",
        f"Publish and approve the plugins or capabilities it needs in namespace {ctx.namespace} "
        "(or relax spec.dependencies / spec.requires / spec.wayangVersion); it re-evaluates by "
        "itself when they become active.",
    )


def _cycle(ctx: _Context) -> tuple[str, str | None]:
    return (
        f"Dependency cycle: {ctx.detail}",
        "Break the cycle: drop one of the dependencies in it, or make it optional.",
    )


def _pods(ctx: _Context) -> str:
    return f"kubectl get pods {ctx.where} -l {PLUGIN_LABEL}={ctx.name[:63]}"


def _deploying(ctx: _Context) -> tuple[str, str | None]:
    return (
        f"Deploying: {ctx.detail}",
        f"Nothing to do if it finishes soon; if it does not, look at the pods: {_pods(ctx)} "
        "(and kubectl describe pod on them).",
    )


def _failing(ctx: _Context) -> tuple[str, str | None]:
    return (
        f"The workload fails: {ctx.detail}",
        f"Look at the pods ({_pods(ctx)}; kubectl logs --previous on them) and publish a fixed "
        "image; repeated failures open the circuit breaker (Quarantined).",
    )


def _seconds(value: float) -> str:
    value = max(0.0, value)
    if value < 120:
        return f"{value:.0f}s"
    if value < 7200:
        return f"{value / 60:.0f}m"
    return f"{value / 3600:.1f}h"


def _parse_time(value: Any) -> datetime.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _quarantined(ctx: _Context) -> tuple[str, str | None]:
    breaker = ctx.workload.get("breaker") or {}
    failure = breaker.get("lastFailure") or {}
    last = (
        f"last failure {failure.get('reason')} ({failure.get('severity')}): "
        f"{failure.get('message')}"
        if failure
        else ctx.detail
    )
    state = (
        f"breaker {breaker.get('state', 'Open')}, {breaker.get('failures', 0)} failure(s), "
        f"tripped {breaker.get('trips', 1)} time(s)"
    )
    if breaker.get("needsReview"):
        when = "It stays quarantined until the plugin is approved again (the failure reached "
        when += "humanReviewThreshold)."
        remedy = (
            f"Fix the cause (publish a fixed image), then an approver runs: {ctx.approve_command}"
        )
    else:
        opened = _parse_time(breaker.get("openedAt"))
        delay = breaker.get("halfOpenAfterSeconds")
        if opened is not None and isinstance(delay, int | float):
            at = opened + datetime.timedelta(seconds=float(delay))
            left = (at - ctx.now).total_seconds()
            stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
            due = f"in {_seconds(left)}" if left > 0 else "now: the trial is due"
            when = f"It half-opens (one replica on trial) at {stamp}, {due}."
        else:
            when = "It half-opens (one replica on trial) after the breaker's timeout."
        remedy = (
            "Fix the cause (publish a fixed image); the breaker tries one replica when it "
            f"half-opens, and a new approval releases it at once: {ctx.approve_command}"
        )
    return f"Quarantined ({state}); {last}. {when}", remedy


def _half_open(ctx: _Context) -> tuple[str, str | None]:
    return (
        f"On trial after a quarantine: {ctx.detail}",
        "Nothing to do: enough healthy observations close the breaker; one failure opens it again.",
    )


def _rolled_back(ctx: _Context) -> tuple[str, str | None]:
    serving = ctx.workload.get("version")
    return (
        f"Rolled back (autoHealEnabled): {ctx.detail}",
        f"Version {serving or 'the last known-good'} serves. Fix the cause and publish a fixed "
        "version or configuration: a changed spec starts a new breaker and rolls out again, the "
        "known-good serving until it is ready.",
    )


def _new_version_quarantined(ctx: _Context) -> tuple[str, str | None]:
    serving = ctx.workload.get("version")
    return (
        f"The new version is quarantined, the last known-good serves: {ctx.detail}",
        f"Version {serving or 'the last known-good'} keeps serving meanwhile. Fix the cause and "
        "publish a fixed version; the half-open trials also roll this one out again beside it, "
        f"and a new approval releases a quarantine that needs review: {ctx.approve_command}",
    )


def _not_runnable(ctx: _Context) -> tuple[str, str | None]:
    return (
        f"Cannot run: {ctx.detail}",
        "Only container plugins run (other types ship as an image on the Python runtime host).",
    )


def _unloaded(ctx: _Context) -> tuple[str, str | None]:
    return f"No workload: {ctx.detail}", "Unblock the earlier step; the workload follows."


def _disabled(ctx: _Context) -> tuple[str, str | None]:
    return (
        "Disabled: spec.enabled is false; scaled to zero, every object and the record kept",
        f"kubectl patch plugin {ctx.name} {ctx.where} --type=merge "
        '-p \'{"spec":{"enabled":true}}\' (or set enabled: true in Git)',
    )


def _not_ready(ctx: _Context) -> tuple[str, str | None]:
    return f"Not ready: {ctx.detail}", "See the first step that did not pass."


def _not_evaluated(ctx: _Context) -> tuple[str, str | None]:
    return f"Not evaluated: {ctx.detail}", "Fix the step that stopped the evaluation."


@dataclass(frozen=True)
class Text:
    state: StepState
    say: Say


TEXTS: dict[Reason, Text] = {
    Reason.VALID: Text(StepState.PASSED, _passed("Valid")),
    Reason.INVALID_SPEC: Text(StepState.BLOCKED, _invalid("The spec is invalid")),
    Reason.CONTRACT_VIOLATION: Text(
        StepState.BLOCKED, _invalid("The descriptor breaks its contract")
    ),
    Reason.SIGNATURE_VERIFIED: Text(StepState.PASSED, _passed("Signature verified")),
    Reason.SIGNATURE_NOT_REQUIRED: Text(StepState.PASSED, _passed("No signature required")),
    Reason.SIGNATURE_INVALID: Text(StepState.BLOCKED, _signature_invalid),
    Reason.REGISTRY_NOT_ALLOWED: Text(StepState.BLOCKED, _registry),
    Reason.GRANTED: Text(StepState.PASSED, _passed("Powers granted")),
    Reason.CAPABILITY_NOT_GRANTED: Text(StepState.BLOCKED, _not_granted),
    Reason.SECRET_NOT_ALLOWED: Text(StepState.BLOCKED, _not_granted),
    Reason.POLICIES_DISAGREE: Text(StepState.BLOCKED, _disagree),
    Reason.SCAN_PASSED: Text(StepState.PASSED, _passed("Scan passed")),
    Reason.SCAN_NOT_REQUIRED: Text(StepState.PASSED, _passed("No scan required")),
    Reason.SCAN_PENDING: Text(StepState.WAITING, _scan_pending),
    Reason.SCAN_FAILED: Text(StepState.BLOCKED, _scan_failed),
    Reason.SCAN_ERROR: Text(StepState.BLOCKED, _scan_error),
    Reason.APPROVED: Text(StepState.PASSED, _passed("Approved")),
    Reason.AUTO_APPROVED: Text(StepState.PASSED, _passed("Approved automatically")),
    Reason.AWAITING_APPROVAL: Text(StepState.BLOCKED, _awaiting),
    Reason.REJECTED: Text(StepState.BLOCKED, _rejected),
    Reason.REVOKED: Text(StepState.BLOCKED, _revoked),
    Reason.RESOLVED: Text(StepState.PASSED, _passed("Dependencies resolved")),
    Reason.UNRESOLVED: Text(StepState.BLOCKED, _unresolved),
    Reason.DEPENDENCY_CYCLE: Text(StepState.BLOCKED, _cycle),
    Reason.NOT_MANAGED: Text(StepState.PASSED, _passed("Not managed")),
    Reason.AVAILABLE: Text(StepState.PASSED, _passed("Serving")),
    Reason.DEPLOYING: Text(StepState.WAITING, _deploying),
    Reason.ROLLING_OUT: Text(StepState.PASSED, _passed("Rolling out, the previous pods serve")),
    Reason.SERVING_PREVIOUS: Text(StepState.PASSED, _passed("The previous version serves")),
    Reason.UNLOADED: Text(StepState.FOLLOWS, _unloaded),
    Reason.NOT_RUNNABLE: Text(StepState.BLOCKED, _not_runnable),
    Reason.SECRET_MISSING: Text(StepState.WAITING, _secret_missing),
    Reason.RENDER_REFUSED: Text(StepState.BLOCKED, _refused),
    Reason.FAILING: Text(StepState.BLOCKED, _failing),
    Reason.QUARANTINED: Text(StepState.BLOCKED, _quarantined),
    Reason.HALF_OPEN: Text(StepState.WAITING, _half_open),
    Reason.ROLLED_BACK: Text(StepState.BLOCKED, _rolled_back),
    Reason.NEW_VERSION_QUARANTINED: Text(StepState.BLOCKED, _new_version_quarantined),
    Reason.READY: Text(StepState.PASSED, _passed("Ready")),
    Reason.DISABLED: Text(StepState.BLOCKED, _disabled),
    Reason.NOT_READY: Text(StepState.FOLLOWS, _not_ready),
    Reason.NOT_EVALUATED: Text(StepState.FOLLOWS, _not_evaluated),
}
"""Every condition reason the pipeline and the workload gate write, in words."""

PHASE_WORDS: dict[PluginPhase, str] = {
    PluginPhase.PENDING: "pending",
    PluginPhase.INVALID: "invalid",
    PluginPhase.BLOCKED: "blocked",
    PluginPhase.SCANNING: "being scanned",
    PluginPhase.AWAITING_APPROVAL: "awaiting approval",
    PluginPhase.REJECTED: "rejected",
    PluginPhase.REVOKED: "revoked",
    PluginPhase.UNRESOLVED: "missing dependencies",
    PluginPhase.DEPLOYING: "deploying",
    PluginPhase.READY: "ready",
    PluginPhase.DEGRADED: "degraded",
    PluginPhase.QUARANTINED: "quarantined",
    PluginPhase.DISABLED: "disabled",
}
"""How a phase reads in a sentence ("team-a/x is awaiting approval")."""


def _unknown(reason: str, status: str) -> Text:
    state = {"True": StepState.PASSED, "False": StepState.BLOCKED}.get(status, StepState.WAITING)

    def say(ctx: _Context) -> tuple[str, str | None]:
        remedy = None
        if state is not StepState.PASSED:
            remedy = (
                f"The operator reports reason {reason}, which this kubectl-wayang does not "
                "know; the message says what it means (a newer kubectl-wayang may explain it)."
            )
        return f"{reason}: {ctx.detail}", remedy

    return Text(state, say)


def _observed(meta: Mapping[str, Any], status: Mapping[str, Any]) -> Step:
    generation = meta.get("generation")
    observed = status.get("observedGeneration")
    if not status.get("conditions"):
        return Step(
            OBSERVED,
            StepState.WAITING,
            "NotObserved",
            "The operator has not evaluated this plugin yet (it has no status).",
            "Wait a few seconds; if it stays so, check that the operator runs and watches this "
            "namespace (WAYANG_NAMESPACES), e.g. kubectl get validatingwebhookconfiguration "
            "wayang.io",
        )
    if isinstance(generation, int) and isinstance(observed, int) and observed < generation:
        return Step(
            OBSERVED,
            StepState.WAITING,
            "GenerationNotObserved",
            f"The operator has not seen generation {generation} yet (the status describes "
            f"generation {observed}); the steps below may be out of date.",
            "Wait a few seconds; if it stays so, check that the operator runs.",
        )
    return Step(
        OBSERVED,
        StepState.PASSED,
        "Observed",
        f"The operator has evaluated generation {generation}.",
        None,
    )


_KNOWN = frozenset(reason.value for reason in Reason)

GATE_ORDER: tuple[ConditionType, ...] = tuple(ConditionType)
"""The conditions in the order the pipeline evaluates them (the enum's order)."""


def explain(
    plugin: Mapping[str, Any],
    approvals: Sequence[Mapping[str, Any]] = (),
    scan: Mapping[str, Any] | None = None,
    *,
    now: datetime.datetime,
) -> Explanation:
    """Every gate of `plugin` in order, each with what it means and what would unblock it.

    `approvals`: the namespace's PluginApprovals (others than this plugin's are ignored);
    `scan`: the ScanReport of the plugin's digest, if readable; `now`: for "half-opens in 40s".
    """
    meta = plugin.get("metadata") or {}
    spec = plugin.get("spec") or {}
    status = plugin.get("status") or {}
    name = str(meta.get("name", ""))
    namespace = str(meta.get("namespace", ""))
    implementation = spec.get("implementation") or {}
    views = tuple(
        ApprovalView.of(a) for a in approvals if (a.get("spec") or {}).get("plugin") == name
    )
    conditions = {
        str(c.get("type")): c for c in status.get("conditions") or [] if isinstance(c, Mapping)
    }
    steps = [_observed(meta, status)]
    for kind in GATE_ORDER:
        condition = conditions.get(kind.value)
        if condition is None:
            continue
        reason = str(condition.get("reason", ""))
        known = reason in _KNOWN
        text = TEXTS[Reason(reason)] if known else _unknown(reason, str(condition.get("status")))
        ctx = _Context(
            namespace=namespace,
            name=name,
            version=str(spec.get("version", "")),
            digest=str(implementation.get("digest", "")),
            coordinate=str(implementation.get("coordinate", "")),
            detail=str(condition.get("message", "")),
            approvals=views,
            scan=scan,
            workload=status.get("workload") or {},
            now=now,
        )
        message, remedy = text.say(ctx)
        state = StepState.PASSED if condition.get("status") == "True" else text.state
        if kind is ConditionType.READY and state is not StepState.PASSED and _held(steps):
            state = StepState.FOLLOWS  # Ready sums up the steps above; the cause is there
        if state is StepState.PASSED:
            remedy = None
        steps.append(Step(kind.value, state, reason, message, remedy, ctx.detail))
    ready = any(s.gate == ConditionType.READY.value and s.state is StepState.PASSED for s in steps)
    phase = status.get("phase")
    summary = _summary(namespace, name, phase, steps)
    return Explanation(namespace, name, phase, ready, summary, tuple(steps))


def _held(steps: list[Step]) -> bool:
    return any(s.state in (StepState.BLOCKED, StepState.WAITING) for s in steps)


_PHASES = frozenset(phase.value for phase in PluginPhase)


def _summary(namespace: str, name: str, phase: Any, steps: list[Step]) -> str:
    words = PHASE_WORDS[PluginPhase(phase)] if phase in _PHASES else None
    who = f"{namespace}/{name}"
    first = next((s for s in steps if s.state in (StepState.BLOCKED, StepState.WAITING)), None)
    if first is None:
        ready = next((s for s in steps if s.gate == ConditionType.READY.value), None)
        if ready is not None and ready.state is StepState.PASSED:
            return f"{who} is ready: {ready.detail or 'every gate passed'}."
        return f"{who} is {words or 'not ready'}."
    return f"{who} is {words or 'not running'}: {first.message}"
