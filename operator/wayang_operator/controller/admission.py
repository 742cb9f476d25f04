"""Admission webhooks: identity that cannot be forged, and approvals that cannot lie.

- Mutating, on create of a Plugin or a PluginApproval: the requester's identity from the admission
  request (userInfo: username, uid, groups) and the request's own uid are written into the
  annotation `wayang.io/requested-by`, overwriting whatever the manifest said; for an approval
  the identity also becomes `spec.approver`, which the printer column shows.
- Validating: nobody may change that annotation afterwards; an approval must name the plugin's
  current id, version and digest; the publisher may not approve their own plugin where a policy
  forbids it; an approval's spec never changes (the CRD's CEL rule says so too).

The identity is whatever the API server authenticated, so it is exactly as trustworthy as the
cluster's authentication; there is no field a user can type to claim another name.

The approval check reads the plugin, the policies and the namespace from the API server, not from
the watch indexes: every replica serves admission (the Service spreads requests over them) while
only the active one watches, so a standby's indexes may be stale, and an approval can arrive
milliseconds after its plugin was created. Approvals are rare; three reads each cost nothing.
"""

from __future__ import annotations

import json
from typing import Any

import kopf

from ..api.resources import Decision
from ..core.approval import REQUESTER_ANNOTATION, Requester
from ..core.policy import applicable
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


def _stamp_value(userinfo: kopf.UserInfo) -> str:
    """The annotation: the identity plus the uid of the admission request that created it."""
    return json.dumps({**_identity(userinfo), "admissionUid": ADMISSION_UID.get()}, sort_keys=True)


def _stamp(patch: kopf.Patch, userinfo: kopf.UserInfo) -> dict[str, Any]:
    annotations = patch.setdefault("metadata", {}).setdefault("annotations", {})
    annotations[REQUESTER_ANNOTATION] = _stamp_value(userinfo)
    return _identity(userinfo)


@kopf.on.mutate(*PLUGINS, operations=["CREATE"], id="stamp-publisher")
def stamp_publisher(*, userinfo: kopf.UserInfo, patch: kopf.Patch, **_: Any) -> None:
    _stamp(patch, userinfo)


@kopf.on.mutate(*APPROVALS, operations=["CREATE"], id="stamp-approver")
def stamp_approver(*, userinfo: kopf.UserInfo, patch: kopf.Patch, **_: Any) -> None:
    identity = _stamp(patch, userinfo)
    patch.setdefault("spec", {})["approver"] = identity


def _annotation(body: kopf.Body | None) -> str | None:
    if body is None:
        return None
    value = (body.get("metadata", {}).get("annotations") or {}).get(REQUESTER_ANNOTATION)
    return None if value is None else str(value)


def _protect(kwargs: dict[str, Any]) -> None:
    old, new = kwargs.get("old"), kwargs.get("new")
    if kwargs.get("operation") == "UPDATE" and _annotation(old) != _annotation(new):
        raise kopf.AdmissionError(
            f"metadata.annotations[{REQUESTER_ANNOTATION}] records who created this object and "
            "cannot be changed",
            code=403,
        )


@kopf.on.validate(*PLUGINS, operations=["UPDATE"], id="protect-publisher")
def protect_publisher(**kwargs: Any) -> None:
    _protect(kwargs)


async def _current_plugin(namespace: str, name: str) -> PluginSnapshot | None:
    body = await RUNTIME.api.get("plugins", namespace, name)
    if body is None:
        return None
    return snapshot_of(namespace, name, body)


async def _forbidding_policies(namespace: str) -> list[str]:
    """Names of the policies applying to the namespace that forbid self-approval."""
    settings = RUNTIME.settings
    labels = await RUNTIME.api.namespace_labels(namespace) if settings.watch_namespaces else {}
    bodies = await RUNTIME.api.list_objects("pluginpolicies", None)
    named = (policy_of(str(b.get("metadata", {}).get("name", "")), b) for b in bodies)
    policies = [policy for policy in named if policy is not None]
    return [p.name for p in applicable(policies, labels) if not p.approval.allow_self_approval]


@kopf.on.validate(*APPROVALS, operations=["CREATE", "UPDATE"], id="check-approval")
async def check_approval(
    *, namespace: str | None, body: kopf.Body, userinfo: kopf.UserInfo, **kwargs: Any
) -> None:
    _protect(kwargs)
    old, new = kwargs.get("old"), kwargs.get("new")
    if kwargs.get("operation") == "UPDATE":
        if (
            old is not None
            and new is not None
            and dict(old.get("spec", {})) != dict(new.get("spec", {}))
        ):
            raise kopf.AdmissionError(
                "spec is immutable: create a new PluginApproval instead", code=403
            )
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
    publisher = Requester.from_annotations(plugin.annotations)
    username = _identity(userinfo)["username"]
    if (
        spec.get("decision") == Decision.APPROVE.value
        and publisher
        and publisher.username == username
    ):
        forbidding = await _forbidding_policies(namespace or "")
        if forbidding:
            raise kopf.AdmissionError(
                f"{username} published Plugin {plugin.name} and may not approve it "
                f"(policy {forbidding[0]!r} forbids self-approval)",
                code=403,
            )
