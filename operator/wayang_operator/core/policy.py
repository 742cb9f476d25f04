"""Which PluginPolicies govern a namespace, and what a policy asks of one plugin.

Every policy whose namespaceSelector matches the plugin's namespace applies, and a plugin must
satisfy each of them on its own: no policy can be weakened by adding another (a second policy
with more trusted keys cannot make the first one's keys optional). With no matching policy the
defaults of an empty PluginPolicy apply: signatures required (and, with no trusted keys, nothing
verifies), scanning required, one approver, no self-approval.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..api.descriptor import ImplementationType, PluginDescriptor
from ..api.resources import (
    ApprovalPolicy,
    LabelSelector,
    PluginPolicySpec,
    ScanPolicy,
    SigningPolicy,
)
from .references import schemeless

DEFAULT_POLICY_NAME = "(built-in default)"


@dataclass(frozen=True)
class NamedPolicy:
    name: str
    spec: PluginPolicySpec

    @property
    def signing(self) -> SigningPolicy:
        return self.spec.signing or SigningPolicy()

    @property
    def scan(self) -> ScanPolicy:
        return self.spec.scan or ScanPolicy()

    @property
    def approval(self) -> ApprovalPolicy:
        return self.spec.approval or ApprovalPolicy()


def selector_matches(selector: LabelSelector | None, labels: dict[str, str]) -> bool:
    """Kubernetes label selector semantics; an absent or empty selector matches everything."""
    if selector is None:
        return True
    for key, value in (selector.match_labels or {}).items():
        if labels.get(key) != value:
            return False
    for requirement in selector.match_expressions or []:
        present = requirement.key in labels
        values = requirement.values or []
        match requirement.operator:
            case "In":
                ok = present and labels[requirement.key] in values
            case "NotIn":
                ok = not present or labels[requirement.key] not in values
            case "Exists":
                ok = present
            case _:
                ok = not present
        if not ok:
            return False
    return True


def applicable(policies: list[NamedPolicy], namespace_labels: dict[str, str]) -> list[NamedPolicy]:
    """The policies covering a namespace, sorted by name; the built-in default if none does."""
    matching = [
        p for p in policies if selector_matches(p.spec.namespace_selector, namespace_labels)
    ]
    return sorted(matching, key=lambda p: p.name) or [
        NamedPolicy(DEFAULT_POLICY_NAME, PluginPolicySpec())
    ]


def approvers_required(policy: NamedPolicy, spec: PluginDescriptor) -> int:
    """The highest count among the policy's requirements that match the plugin (default 1)."""
    requirements = policy.approval.requirements
    if not requirements:
        return 1
    capabilities = set(spec.capabilities or [])
    counts = [
        requirement.approvers
        for requirement in requirements
        if (requirement.sandbox_level is None or requirement.sandbox_level == spec.sandbox_level)
        and (requirement.capability is None or requirement.capability in capabilities)
        and (requirement.category is None or requirement.category == spec.category)
    ]
    return max(counts, default=1)


def artifact_location(spec: PluginDescriptor) -> str:
    """Where the artifact is fetched from, schemeless: a container's image repository (its
    coordinate, the reference that is pulled); for other types the repository URL if given, else
    the coordinate."""
    implementation = spec.implementation
    if implementation.type == ImplementationType.CONTAINER:
        return schemeless(implementation.coordinate)
    return schemeless(implementation.repository or implementation.coordinate)


def registry_allowed(policy: NamedPolicy, spec: PluginDescriptor) -> str | None:
    """None when the artifact's location is under a prefix the policy allows, else the reason."""
    allowed = policy.spec.allowed_registries
    if not allowed:
        return None
    location = artifact_location(spec)
    if any(location.startswith(schemeless(prefix)) for prefix in allowed):
        return None
    return (
        f"{location!r} is not under a registry policy {policy.name!r} allows ({', '.join(allowed)})"
    )
