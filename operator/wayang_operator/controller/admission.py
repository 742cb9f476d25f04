"""Admission webhooks: identity that cannot be forged, approvals that say exactly what they
approve, and decisions that cannot be quietly undone.

- Mutating, on create of a Plugin or a PluginApproval: the requester's identity from the admission
  request (userInfo: username, uid, groups) and the request's own uid are written into the
  annotation `wayang.io/requested-by`, overwriting whatever the manifest said; for an approval
  the identity also becomes `spec.approver`, and the live Plugin's approved surface (the powers
  being approved, core/surface.py) becomes `spec.surface`, so an approver approves what the
  Plugin declared when they approved. A Reject or Revoke gets the finalizer
  `wayang.io/decision`: its deletion waits until the operator has recorded who lifted it.
- Mutating, on update of a Plugin's spec: who changed it (`wayang.io/updated-by`, with the
  generation the change makes), and, when the change touches the approved surface, the editor
  joins the Plugin's publishers (`wayang.io/publishers`): anyone who changed what was approved
  counts as a publisher for the self-approval rule.
- Validating: nobody changes the stamped annotations or removes the decision finalizer but the
  operator itself; a sensitive property's value is never written inline (it comes from a Secret);
  an approval must name the plugin's current id, version and digest, and the surface digest the
  approver saw (when given) must be the Plugin's; a publisher may not approve where a policy
  forbids self-approval; an approval's spec never changes (the CRD's CEL rule says so too).
- On delete of a Reject or Revoke: the deleter's identity is stamped (`wayang.io/withdrawn-by`)
  before the deletion proceeds, for the audit log and for the rule that the deleter of another
  approver's decision cannot approve the artifact alone.

The identity is whatever the API server authenticated, so it is exactly as trustworthy as the
cluster's authentication; there is no field a user can type to claim another name. The operator's
own identity (for the writes only it may make) is what the API server told it at startup
(SelfSubjectReview).

The checks read the plugin, the policies and the namespace from the API server, not from the
watch indexes: every replica serves admission while only the active one watches, so a standby's
indexes may be stale, and an approval can arrive milliseconds after its plugin was created.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import kopf

from ..api.descriptor import PluginDescriptor
from ..api.resources import Decision
from ..core import surface
from ..core.approval import (
    DECISION_FINALIZER,
    PUBLISHERS_ANNOTATION,
    REQUESTER_ANNOTATION,
    UPDATED_BY_ANNOTATION,
    WITHDRAWN_BY_ANNOTATION,
    Publishers,
    Requester,
)
from ..core.contract import admission_problems
from ..core.policy import NamedPolicy, applicable
from ..manifests.validate import parse_model
from .handlers import APPROVALS, PLUGINS, policy_of, snapshot_of
from .reconcile import PluginSnapshot
from .runtime import RUNTIME
from .webhook_server import ADMISSION_UID


def _identity(userinfo: kopf.UserInfo) -> dict[str, Any]:
    return {
        "username": str(userinfo.get("username", "")),
        "uid": str(userinfo.get("uid", "")),
        "groups": [str(g) for g in userinfo.get("groups") or []],
    }


def _stamp_value(userinfo: kopf.UserInfo, **extra: Any) -> str:
    """The annotation: the identity plus the uid of the admission request that made it."""
    return json.dumps(
        {**_identity(userinfo), "admissionUid": ADMISSION_UID.get(), **extra}, sort_keys=True
    )


def _annotations(body: Mapping[str, Any] | None) -> dict[str, str]:
    if body is None:
        return {}
    return {str(k): str(v) for k, v in (body.get("metadata", {}).get("annotations") or {}).items()}


def _set_annotation(patch: kopf.Patch, key: str, value: str | None) -> None:
    patch.setdefault("metadata", {}).setdefault("annotations", {})[key] = value


def _is_operator(userinfo: kopf.UserInfo) -> bool:
    return bool(RUNTIME.identity) and _identity(userinfo)["username"] == RUNTIME.identity


async def _policies(namespace: str) -> list[NamedPolicy]:
    """The policies applying to the namespace, read from the API server."""
    settings = RUNTIME.settings
    labels = await RUNTIME.api.namespace_labels(namespace) if settings.watch_namespaces else {}
    bodies = await RUNTIME.api.list_objects("pluginpolicies", None)
    named = (policy_of(str(b.get("metadata", {}).get("name", "")), b) for b in bodies)
    return applicable([policy for policy in named if policy is not None], labels)


def _surface_digest(spec: Mapping[str, Any], policies: list[NamedPolicy]) -> str | None:
    descriptor = parse_model(PluginDescriptor, dict(spec))[0]
    return surface.digest_for(descriptor, policies) if descriptor else None


# ------------------------------------------------------------------------------------- Plugins


@kopf.on.mutate(*PLUGINS, operations=["CREATE"], id="stamp-publisher")
def stamp_publisher(*, userinfo: kopf.UserInfo, patch: kopf.Patch, **_: Any) -> None:
    _set_annotation(patch, REQUESTER_ANNOTATION, _stamp_value(userinfo))
    _set_annotation(patch, PUBLISHERS_ANNOTATION, json.dumps([_identity(userinfo)["username"]]))
    _set_annotation(patch, UPDATED_BY_ANNOTATION, None)


def _publishers_after(old: Mapping[str, Any], username: str, surface_changed: bool) -> str:
    """The creator and every editor of the approved surface so far, plus this one if the
    change touches it."""
    listed = list(Publishers.from_annotations(_annotations(old)).users)
    if surface_changed and username not in listed:
        listed.append(username)
    return json.dumps(listed)


async def _expected_stamps(
    namespace: str, old: Mapping[str, Any], new: Mapping[str, Any], userinfo: kopf.UserInfo
) -> dict[str, str | None]:
    """The stamped annotations a Plugin must carry after this update."""
    before = _annotations(old)
    expected: dict[str, str | None] = {
        REQUESTER_ANNOTATION: before.get(REQUESTER_ANNOTATION),
        PUBLISHERS_ANNOTATION: before.get(PUBLISHERS_ANNOTATION),
        UPDATED_BY_ANNOTATION: before.get(UPDATED_BY_ANNOTATION),
    }
    if dict(old.get("spec") or {}) == dict(new.get("spec") or {}):
        return expected
    policies = await _policies(namespace)
    changed = _surface_digest(old.get("spec") or {}, policies) != _surface_digest(
        new.get("spec") or {}, policies
    )
    username = _identity(userinfo)["username"]
    generation = int(old.get("metadata", {}).get("generation") or 0) + 1
    expected[UPDATED_BY_ANNOTATION] = json.dumps(
        {**_identity(userinfo), "generation": generation}, sort_keys=True
    )
    expected[PUBLISHERS_ANNOTATION] = _publishers_after(old, username, changed)
    return expected


@kopf.on.mutate(*PLUGINS, operations=["UPDATE"], id="stamp-editor")
async def stamp_editor(
    *, namespace: str | None, userinfo: kopf.UserInfo, patch: kopf.Patch, **kwargs: Any
) -> None:
    """Record who changed the spec, and add whoever changed the approved surface to the
    publishers. A stamped annotation a tool dropped (a replace, a server-side apply) is put
    back; one changed by hand is left for the validating webhook to refuse."""
    old, new = kwargs.get("old"), kwargs.get("new")
    if old is None or new is None:
        return
    expected = await _expected_stamps(namespace or "", old, new, userinfo)
    after = _annotations(new)
    spec_changed = dict(old.get("spec") or {}) != dict(new.get("spec") or {})
    for key, value in expected.items():
        if key not in after or (spec_changed and key != REQUESTER_ANNOTATION):
            _set_annotation(patch, key, value)


def _protect(kwargs: dict[str, Any], expected: dict[str, str | None]) -> None:
    after = _annotations(kwargs.get("new"))
    for key, value in expected.items():
        if after.get(key) != value:
            raise kopf.AdmissionError(
                f"metadata.annotations[{key}] records who created or changed this object; it is "
                "written by the operator's admission webhook and cannot be changed by hand",
                code=403,
            )


def _refuse_unsafe(spec: Mapping[str, Any]) -> None:
    """A sensitive value written inline, a pulled reference that is not the checked one."""
    problems = admission_problems(spec)
    if problems:
        path, message = problems[0]
        raise kopf.AdmissionError(f"{path}: {message}", code=422)


@kopf.on.validate(*PLUGINS, operations=["CREATE", "UPDATE"], id="check-plugin")
async def check_plugin(
    *, namespace: str | None, body: kopf.Body, userinfo: kopf.UserInfo, **kwargs: Any
) -> None:
    """Stamped annotations are the webhook's own; sensitive values never inline; the artifact's
    repository and coordinate name one place."""
    _refuse_unsafe(body.get("spec") or {})
    old, new = kwargs.get("old"), kwargs.get("new")
    if kwargs.get("operation") == "UPDATE" and old is not None and new is not None:
        _protect(kwargs, await _expected_stamps(namespace or "", old, new, userinfo))


# ------------------------------------------------------------------------------- Approvals


async def _current_plugin(namespace: str, name: str) -> PluginSnapshot | None:
    body = await RUNTIME.api.get("plugins", namespace, name)
    if body is None:
        return None
    return snapshot_of(namespace, name, body)


@kopf.on.mutate(*APPROVALS, operations=["CREATE"], id="stamp-approver")
async def stamp_approver(
    *, namespace: str | None, body: kopf.Body, userinfo: kopf.UserInfo, patch: kopf.Patch, **_: Any
) -> None:
    """Who decides, what they decide on (the live Plugin's approved surface), and, for a
    rejection or revocation, the finalizer that makes its deletion a recorded decision."""
    _set_annotation(patch, REQUESTER_ANNOTATION, _stamp_value(userinfo))
    _set_annotation(patch, WITHDRAWN_BY_ANNOTATION, None)
    spec = body.get("spec") or {}
    patch.setdefault("spec", {})["approver"] = _identity(userinfo)
    plugin = await _current_plugin(namespace or "", str(spec.get("plugin", "")))
    if plugin is not None and plugin.descriptor is not None:
        policies = await _policies(namespace or "")
        bind = any(policy.approval.bind_configuration for policy in policies)
        powers = surface.surface_of(plugin.descriptor, bind_configuration=bind)
        patch["spec"]["surface"] = powers.model_dump(mode="json", by_alias=True, exclude_none=True)
        if not spec.get("surfaceDigest"):
            patch["spec"]["surfaceDigest"] = surface.digest(powers)
    if spec.get("decision") in (Decision.REJECT.value, Decision.REVOKE.value):
        finalizers = list(body.get("metadata", {}).get("finalizers") or [])
        if DECISION_FINALIZER not in finalizers:
            patch.setdefault("metadata", {})["finalizers"] = [*finalizers, DECISION_FINALIZER]


def _check_update(kwargs: dict[str, Any], userinfo: kopf.UserInfo) -> None:
    """An approval's spec never changes; its stamps and its finalizer are the operator's."""
    old, new = kwargs.get("old"), kwargs.get("new")
    if old is None or new is None:
        return
    if dict(old.get("spec", {})) != dict(new.get("spec", {})):
        raise kopf.AdmissionError(
            "spec is immutable: create a new PluginApproval instead", code=403
        )
    if _is_operator(userinfo):
        return
    before = _annotations(old)
    _protect(
        kwargs,
        {
            REQUESTER_ANNOTATION: before.get(REQUESTER_ANNOTATION),
            WITHDRAWN_BY_ANNOTATION: before.get(WITHDRAWN_BY_ANNOTATION),
        },
    )
    held = DECISION_FINALIZER in (old.get("metadata", {}).get("finalizers") or [])
    kept = DECISION_FINALIZER in (new.get("metadata", {}).get("finalizers") or [])
    if held and not kept:
        raise kopf.AdmissionError(
            f"metadata.finalizers: {DECISION_FINALIZER} is removed by the operator once it has "
            "recorded who deleted this decision; delete the PluginApproval instead",
            code=403,
        )


@kopf.on.validate(*APPROVALS, operations=["CREATE", "UPDATE"], id="check-approval")
async def check_approval(
    *, namespace: str | None, body: kopf.Body, userinfo: kopf.UserInfo, **kwargs: Any
) -> None:
    if kwargs.get("operation") == "UPDATE":
        _check_update(kwargs, userinfo)
        return
    spec = body.get("spec", {})
    plugin = await _current_plugin(namespace or "", str(spec.get("plugin", "")))
    if plugin is None:
        raise kopf.AdmissionError(
            f"spec.plugin: no Plugin named {spec.get('plugin')!r} in {namespace}", code=404
        )
    current = plugin.spec
    implementation = current.get("implementation", {})
    for field, theirs, ours in (
        ("pluginId", spec.get("pluginId"), current.get("id")),
        ("version", spec.get("version"), current.get("version")),
        ("digest", spec.get("digest"), implementation.get("digest")),
    ):
        if theirs != ours:
            raise kopf.AdmissionError(
                f"spec.{field}: the approval names {theirs!r} but Plugin {plugin.name} has "
                f"{ours!r}; an approval is for the exact artifact the plugin runs",
                code=422,
            )
    policies = await _policies(namespace or "")
    live = _surface_digest(current, policies)
    if spec.get("surfaceDigest") and live is not None and spec.get("surfaceDigest") != live:
        raise kopf.AdmissionError(
            f"spec.surfaceDigest: the approval is for surface {spec.get('surfaceDigest')}, but "
            f"Plugin {plugin.name} now declares {live}: its powers changed since you looked; "
            f"review them again (kubectl wayang explain {plugin.name})",
            code=409,
        )
    username = _identity(userinfo)["username"]
    publishers = Publishers.from_annotations(plugin.annotations)
    forbidding = [p.name for p in policies if not p.approval.allow_self_approval]
    approving = spec.get("decision") == Decision.APPROVE.value
    # automation (Argo CD) creates Plugins and approvals alike: its approvals name their
    # approver by signature, which the operator checks against the publishers (core/approval)
    automated = Requester(username).is_service_account
    if approving and publishers.includes(username) and forbidding and not automated:
        raise kopf.AdmissionError(
            f"{username} is a publisher of Plugin {plugin.name} (created it or changed its "
            f"approved surface) and may not approve it (policy {forbidding[0]!r} forbids "
            "self-approval)",
            code=403,
        )


@kopf.on.validate(*APPROVALS, operations=["DELETE"], id="record-withdrawal", side_effects=True)
async def record_withdrawal(
    *,
    namespace: str | None,
    name: str | None,
    userinfo: kopf.UserInfo,
    dryrun: bool,
    **kwargs: Any,
) -> None:
    """Stamp who deletes a Reject or Revoke before the deletion proceeds (the first deleter;
    the operator records it in the Plugin's status and the audit log, then lets it go)."""
    old = kwargs.get("old")
    if old is None or dryrun:
        return
    if DECISION_FINALIZER not in (old.get("metadata", {}).get("finalizers") or []):
        return
    if WITHDRAWN_BY_ANNOTATION in _annotations(old):
        return
    stamped = _stamp_value(userinfo)
    try:
        await RUNTIME.api.annotate(
            "pluginapprovals", namespace or "", name or "", {WITHDRAWN_BY_ANNOTATION: stamped}
        )
    except Exception as error:
        raise kopf.AdmissionError(
            f"could not record who deletes this decision ({error}); nothing was deleted, try again",
            code=503,
        ) from error
