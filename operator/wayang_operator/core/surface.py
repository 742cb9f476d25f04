"""The approved surface: every declaration that decides what a plugin runs or what it may do,
as one canonical, versioned digest, and the comparison that tells whether a change of the Plugin
keeps its approvals.

An approval covers an exact artifact (id, version, digest) *and* the surface the Plugin declared
when it was approved (the admission webhook copies it into the PluginApproval). When the Plugin
changes afterwards, `growth` compares the approved surface with the new one, field by field:

- the same powers or fewer (a stricter sandbox, fewer capabilities or Secrets, a smaller resource
  profile, fewer provided or required capabilities or dependencies) carry the approval over, and
  the carry-over is audited;
- anything that grows, or that cannot be ordered (another implementation, a changed dependency
  range, bound configuration that changed), needs fresh approvals under the policy, exactly like
  a new artifact; each grown power is named.

The digest is SHA-256 over `wayang.io/approved-surface/v1\\n` and the surface as canonical JSON
(sorted keys, no spaces, absent fields left out), so any two parties compute the same value.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from ..api.descriptor import (
    DependencyDescriptor,
    PluginDescriptor,
    ResourceProfile,
    SandboxLevel,
)
from ..api.resources import ApprovedSurface
from . import quantity
from .configuration import secret_refs
from .policy import NamedPolicy

DOMAIN = b"wayang.io/approved-surface/v1\n"
POWER = {SandboxLevel.UNTRUSTED: 0, SandboxLevel.SEMI_TRUSTED: 1, SandboxLevel.TRUSTED: 2}
"""How much a sandbox level lets a plugin do: trusted runs on the host's kernel."""


def surface_of(spec: PluginDescriptor, *, bind_configuration: bool = False) -> ApprovedSurface:
    """The plugin's surface, normalized: sets sorted, the resource profile with its defaults."""
    return ApprovedSurface(
        implementation=spec.implementation,
        sandbox_level=spec.sandbox_level,
        capabilities=sorted(set(spec.capabilities or [])),
        required_secrets=sorted(set(spec.required_secrets or [])),
        configuration_secrets=sorted({ref.name for ref in secret_refs(spec).values()}),
        resource_profile=spec.resource_profile or ResourceProfile(),
        provides=sorted(set(spec.provides or [])),
        requires=sorted(set(spec.requires or [])),
        dependencies=sorted(spec.dependencies or [], key=_dependency_key),
        configuration=dict(spec.configuration or {}) if bind_configuration else None,
    )


def digest_for(spec: PluginDescriptor, policies: list[NamedPolicy]) -> str:
    """The digest of the plugin's surface under these policies (which may bind configuration)."""
    bind = any(policy.approval.bind_configuration for policy in policies)
    return digest(surface_of(spec, bind_configuration=bind))


def _dependency_key(dependency: DependencyDescriptor) -> tuple[str, str, bool, str]:
    return (dependency.id, dependency.version, dependency.optional, dependency.scope.value)


def canonical(surface: ApprovedSurface) -> bytes:
    document = surface.model_dump(mode="json", by_alias=True, exclude_none=True)
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def digest(surface: ApprovedSurface) -> str:
    return "sha256:" + hashlib.sha256(DOMAIN + canonical(surface)).hexdigest()


def _added(label: str, before: list[Any], after: list[Any]) -> list[str]:
    return [f"{label} {item!s} added" for item in after if item not in before]


def _resources(before: ResourceProfile, after: ResourceProfile) -> list[str]:
    grown = []
    if quantity.cpu(after.cpu) > quantity.cpu(before.cpu):
        grown.append(f"resourceProfile.cpu {before.cpu} → {after.cpu}")
    if quantity.memory(after.memory) > quantity.memory(before.memory):
        grown.append(f"resourceProfile.memory {before.memory} → {after.memory}")
    if after.gpu > before.gpu:
        grown.append(f"resourceProfile.gpu {before.gpu} → {after.gpu}")
    if after.timeout > before.timeout:
        grown.append(f"resourceProfile.timeout {before.timeout} → {after.timeout} ms")
    old_disk, new_disk = before.ephemeral_storage, after.ephemeral_storage
    if new_disk is not None and (
        old_disk is None or quantity.memory(new_disk) > quantity.memory(old_disk)
    ):
        grown.append(f"resourceProfile.ephemeralStorage {old_disk or 'unset'} → {new_disk}")
    return grown


def _implementation(before: ApprovedSurface, after: ApprovedSurface) -> list[str]:
    old = before.implementation.model_dump(mode="json", by_alias=True, exclude_none=True)
    new = after.implementation.model_dump(mode="json", by_alias=True, exclude_none=True)
    return [
        f"implementation.{key} changed ({old.get(key, 'unset')} → {new.get(key, 'unset')})"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    ]


def _dependencies(before: ApprovedSurface, after: ApprovedSurface) -> list[str]:
    old = {d.id: d for d in before.dependencies}
    grown = []
    for dependency in after.dependencies:
        previous = old.get(dependency.id)
        if previous is None:
            grown.append(f"dependency {dependency.id} {dependency.version} added")
        elif previous != dependency:
            grown.append(
                f"dependency {dependency.id} changed ({previous.version} → {dependency.version})"
            )
    return grown


def growth(approved: ApprovedSurface, current: ApprovedSurface) -> list[str]:
    """Every power `current` has beyond `approved`, in words; empty: the approval carries over."""
    grown = _implementation(approved, current)
    if POWER[current.sandbox_level] > POWER[approved.sandbox_level]:
        grown.append(f"sandboxLevel {approved.sandbox_level.value} → {current.sandbox_level.value}")
    grown += _added("capability", approved.capabilities, current.capabilities)
    grown += _added("requiredSecrets", approved.required_secrets, current.required_secrets)
    grown += _added(
        "configuration Secret", approved.configuration_secrets, current.configuration_secrets
    )
    grown += _resources(approved.resource_profile, current.resource_profile)
    grown += _added("provides", approved.provides, current.provides)
    grown += _added("requires", approved.requires, current.requires)
    grown += _dependencies(approved, current)
    if current.configuration is not None and current.configuration != approved.configuration:
        grown.append("configuration changed (a policy binds it: approval.bindConfiguration)")
    return grown


_ARROW = re.compile(r"^(?P<label>.*) (?P<old>\S+) → (?P<new>\S+)(?P<unit>.*)$")


def _reversed(change: str) -> str:
    """A change described from `current` to `approved`, told the other way round."""
    if change.endswith(" added"):
        return change.removesuffix(" added") + " removed"
    arrow = _ARROW.match(change)
    if arrow is None:
        return change
    return f"{arrow['label']} {arrow['new']} → {arrow['old']}{arrow['unit']}"


def shrinkage(approved: ApprovedSurface, current: ApprovedSurface) -> list[str]:
    """What `current` gave up compared with `approved` (for the carry-over's audit entry)."""
    return [
        _reversed(change)
        for change in growth(current, approved)
        if not change.startswith(("implementation.", "configuration changed"))
        and " changed (" not in change
    ]


def describe(powers: ApprovedSurface) -> list[str]:
    """The powers, one line each, as `kubectl wayang approve` shows them before approving."""
    implementation = powers.implementation
    profile = powers.resource_profile
    lines = [
        f"artifact: {implementation.type.value} {implementation.coordinate}@"
        f"{implementation.digest}"
        + (f" (from {implementation.repository})" if implementation.repository else "")
        + (f", entrypoint {implementation.entrypoint}" if implementation.entrypoint else ""),
        f"sandbox: {powers.sandbox_level.value}",
        "capabilities: " + (", ".join(c.value for c in powers.capabilities) or "none"),
        "secrets: " + (", ".join(powers.required_secrets + powers.configuration_secrets) or "none"),
        f"resources: cpu {profile.cpu}, memory {profile.memory}, gpu {profile.gpu}, "
        f"timeout {profile.timeout} ms"
        + (f", ephemeral storage {profile.ephemeral_storage}" if profile.ephemeral_storage else ""),
    ]
    if powers.provides:
        lines.append("provides: " + ", ".join(powers.provides))
    if powers.requires:
        lines.append("requires: " + ", ".join(powers.requires))
    if powers.dependencies:
        lines.append(
            "dependencies: " + ", ".join(f"{d.id} {d.version}" for d in powers.dependencies)
        )
    if powers.configuration is not None:
        lines.append(f"configuration (bound by policy): {len(powers.configuration)} value(s)")
    return lines
