"""The PowersGranted gate: the powers a plugin requests against what its policies grant.

A plugin *requests* powers in its descriptor (capabilities, Secrets, GPUs, a sandbox level); the
policies that govern its namespace *grant* them, as Kubewarden's policies do. Every applicable
policy must grant every power on its own; where two policies both shape a grant they must agree,
or the more restrictive one applies where that is well defined (a smaller volume, fewer GPUs, an
egress list over "anywhere"). What is granted is exactly what the workload gets (workload.py):

- `network`: egress beyond DNS, anywhere or to the policy's rules;
- `database`, `llm_access`, `rag_access`, `memory_access`, `tool_execution`: egress only to the
  destinations the policy names for them; a policy that names none does not grant them;
- `filesystem`: the only writable volume (an emptyDir, at /tmp and /data, of the granted size);
- `gpu`: the only way resourceProfile.gpu is honoured, up to the granted count;
- untrusted plugins get no capability that opens the network;
- Secrets (requiredSecrets, and configuration values from Secrets) only where every policy's
  allow-list names them; a scope such as `db/readonly` is mounted from the Secret
  `db-readonly` (`secret_name`);
- ingress only from the plugin's own namespace and the callers the policies name.

`grant` returns the whole grant or raises `NotGranted` with the reason and the power it names.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..api.descriptor import Capability, ImplementationType, PluginDescriptor, SandboxLevel
from ..api.resources import (
    CapabilityGrants,
    EgressGrant,
    EgressRule,
    FilesystemGrant,
    GpuGrant,
    NetworkGrant,
    Peer,
    PluginPolicySpec,
    RuntimeClasses,
    TypeRuntimeClasses,
)
from . import quantity
from .configuration import secret_refs
from .gates import Reason
from .policy import DEFAULT_POLICY_NAME, NamedPolicy

DEFAULT_GRANTS = CapabilityGrants(
    network=NetworkGrant(), filesystem=FilesystemGrant(), gpu=GpuGrant()
)
"""What a policy without `capabilities` grants: what plugins had before grants existed."""
OPENS_NETWORK = frozenset(
    {
        Capability.NETWORK,
        Capability.DATABASE,
        Capability.LLM_ACCESS,
        Capability.RAG_ACCESS,
        Capability.MEMORY_ACCESS,
        Capability.TOOL_EXECUTION,
    }
)
DEFAULT_RUNTIME_CLASSES = {
    SandboxLevel.TRUSTED: "",
    SandboxLevel.SEMI_TRUSTED: "gvisor",
    SandboxLevel.UNTRUSTED: "gvisor",
}
DEFAULT_TYPE_RUNTIME_CLASSES = {(ImplementationType.WASM, SandboxLevel.SEMI_TRUSTED): ""}
"""Where a type's default differs from its level's: semi-trusted wasm runs on runc, since the
module is itself sandboxed by the host (no sockets, no files without the `filesystem` grant,
its memory limited, its calls interrupted at the deadline); untrusted wasm stays on gVisor.
Applies only where no policy names runtimeClasses."""
_GRANT_OF: dict[Capability, Callable[[CapabilityGrants], Any]] = {
    Capability.NETWORK: lambda grants: grants.network,
    Capability.FILESYSTEM: lambda grants: grants.filesystem,
    Capability.GPU: lambda grants: grants.gpu,
    Capability.DATABASE: lambda grants: grants.database,
    Capability.LLM_ACCESS: lambda grants: grants.llm_access,
    Capability.RAG_ACCESS: lambda grants: grants.rag_access,
    Capability.MEMORY_ACCESS: lambda grants: grants.memory_access,
    Capability.TOOL_EXECUTION: lambda grants: grants.tool_execution,
}
"""What a policy's grants say about each capability."""


class NotGranted(ValueError):  # noqa: N818 - a decision, not a failure of the code
    """A requested power no policy grants; `reason` is the condition's reason."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class SecretVolume:
    """A Secret mounted read-only into the plugin's pod."""

    secret: str
    path: str
    keys: tuple[str, ...] = ()
    """Only these keys (a configuration reference); empty: every key (requiredSecrets)."""


@dataclass(frozen=True)
class Grant:
    runtime_class: str
    """"" = the node's default runtime (runc)."""
    egress: list[dict[str, Any]] = field(default_factory=list)
    """NetworkPolicy egress rules."""
    ingress_from: list[dict[str, Any]] = field(default_factory=list)
    """NetworkPolicy peers allowed to call the plugin."""
    writable: str | None = None
    """Size of the writable volume, or None for none at all."""
    gpus: int = 0
    secrets: tuple[SecretVolume, ...] = ()


SECRETS_PATH = "/var/run/secrets/wayang"
CONFIGURATION_SECRETS_PATH = f"{SECRETS_PATH}/configuration"
_NAME_CHARACTERS = re.compile(r"[^a-z0-9.-]")


def secret_name(scope: str) -> str:
    """The Secret that holds a scope: `db/readonly` → `db-readonly` (lower case; every character
    outside a-z, 0-9, '-' and '.' becomes '-'; trimmed to start and end alphanumeric)."""
    name = _NAME_CHARACTERS.sub("-", scope.lower()).strip("-.")
    return name[:253] or "invalid"


def _level_class(classes: RuntimeClasses | TypeRuntimeClasses, level: SandboxLevel) -> str | None:
    return {
        SandboxLevel.TRUSTED: classes.trusted,
        SandboxLevel.SEMI_TRUSTED: classes.semi_trusted,
        SandboxLevel.UNTRUSTED: classes.untrusted,
    }[level]


def _policy_class(classes: RuntimeClasses, level: SandboxLevel, kind: ImplementationType) -> str:
    """One policy's RuntimeClass for the level and type: its byType row's, else the level's."""
    for row in classes.by_type or ():
        if row.type is kind and (chosen := _level_class(row, level)) is not None:
            return chosen
    return _level_class(classes, level) or ""


def runtime_class(spec: PluginDescriptor, policies: list[NamedPolicy]) -> str:
    """The RuntimeClass for the sandbox level and implementation type ("" = the node's default
    runtime). Policies that name classes must agree: one policy cannot weaken another's choice
    of sandbox. Without any: DEFAULT_TYPE_RUNTIME_CLASSES, else DEFAULT_RUNTIME_CLASSES."""
    level, kind = spec.sandbox_level, spec.implementation.type
    chosen: dict[str, str] = {}
    for policy in policies:
        classes = policy.spec.runtime_classes
        if classes is not None:
            chosen.setdefault(_policy_class(classes, level, kind), policy.name)
    if len(chosen) > 1:
        named = ", ".join(
            f"{policy!r} wants {value or 'the default runtime'!r}"
            for value, policy in chosen.items()
        )
        raise NotGranted(
            Reason.POLICIES_DISAGREE,
            f"policies disagree on the RuntimeClass for {level} {kind} plugins: {named}",
        )
    default = DEFAULT_TYPE_RUNTIME_CLASSES.get((kind, level), DEFAULT_RUNTIME_CLASSES[level])
    return next(iter(chosen), default)


def _grants(policy: NamedPolicy) -> CapabilityGrants:
    return policy.spec.capabilities if policy.spec.capabilities is not None else DEFAULT_GRANTS


def network_peer(peer: Peer) -> dict[str, Any]:
    """A Peer as a NetworkPolicy peer (ipBlock, or namespace and pod selectors)."""
    if peer.cidr is not None:
        block: dict[str, Any] = {"cidr": peer.cidr}
        if peer.except_:
            block["except"] = list(peer.except_)
        return {"ipBlock": block}
    out = {}
    if peer.namespace_selector is not None:
        out["namespaceSelector"] = peer.namespace_selector.model_dump(
            mode="json", by_alias=True, exclude_none=True
        )
    if peer.pod_selector is not None:
        out["podSelector"] = peer.pod_selector.model_dump(
            mode="json", by_alias=True, exclude_none=True
        )
    return out


def _egress(rules: list[EgressRule]) -> list[dict[str, Any]]:
    out = []
    for rule in rules:
        entry: dict[str, Any] = {"to": [network_peer(rule)]}
        if rule.ports:
            entry["ports"] = [{"port": p.port, "protocol": p.protocol} for p in rule.ports]
        out.append(entry)
    return out


def _agreed(capability: Capability, grants: dict[str, Any]) -> Any:
    """One grant from the policies' grants of `capability`: equal ones, or the restrictive one
    where that is defined; else the policies disagree."""
    distinct: dict[str, tuple[str, Any]] = {}
    for policy, value in grants.items():
        distinct.setdefault(value.model_dump_json(), (policy, value))
    values = [value for _, value in distinct.values()]
    if len(values) == 1:
        return values[0]
    if capability is Capability.FILESYSTEM:
        return min(values, key=lambda g: quantity.memory(g.size_limit))
    if capability is Capability.GPU:
        return min(values, key=lambda g: g.max)
    if capability is Capability.NETWORK:
        limited = {v.model_dump_json(): v for v in values if v.egress is not None}
        if len(limited) <= 1:
            return next(iter(limited.values()), values[0])
    named = ", ".join(policy for policy, _ in distinct.values())
    raise NotGranted(
        Reason.POLICIES_DISAGREE,
        f"policies {named} grant capability {capability.value} differently; they must agree",
    )


def _capabilities(spec: PluginDescriptor, policies: list[NamedPolicy]) -> dict[Capability, Any]:
    granted: dict[Capability, Any] = {}
    requested = list(dict.fromkeys(spec.capabilities or []))
    gpus = spec.resource_profile.gpu if spec.resource_profile else 0
    if gpus and Capability.GPU not in requested:
        raise NotGranted(
            Reason.CAPABILITY_NOT_GRANTED,
            f"resourceProfile.gpu is {gpus}, but GPUs come only with the gpu capability, which "
            "the plugin does not request",
        )
    for capability in requested:
        if capability in OPENS_NETWORK and spec.sandbox_level is SandboxLevel.UNTRUSTED:
            raise NotGranted(
                Reason.CAPABILITY_NOT_GRANTED,
                f"capability {capability.value} is not granted: untrusted plugins get no network",
            )
        per_policy = {}
        for policy in policies:
            value = _GRANT_OF[capability](_grants(policy))
            if value is None:
                raise NotGranted(
                    Reason.CAPABILITY_NOT_GRANTED,
                    f"capability {capability.value} is not granted by policy {policy.name!r} "
                    f"(spec.capabilities.{capability.value} of the PluginPolicy)",
                )
            per_policy[policy.name] = value
        granted[capability] = _agreed(capability, per_policy)
    gpu = granted.get(Capability.GPU)
    if isinstance(gpu, GpuGrant) and gpus > gpu.max:
        raise NotGranted(
            Reason.CAPABILITY_NOT_GRANTED,
            f"resourceProfile.gpu is {gpus}; the policies grant at most {gpu.max}",
        )
    return granted


def _secrets(spec: PluginDescriptor, policies: list[NamedPolicy]) -> tuple[SecretVolume, ...]:
    volumes = [
        SecretVolume(secret_name(scope), f"{SECRETS_PATH}/{secret_name(scope)}")
        for scope in dict.fromkeys(spec.required_secrets or [])
    ]
    by_secret: dict[str, list[str]] = {}
    for ref in secret_refs(spec).values():
        by_secret.setdefault(ref.name, []).append(ref.key)
    volumes += [
        SecretVolume(name, f"{CONFIGURATION_SECRETS_PATH}/{name}", tuple(sorted(set(keys))))
        for name, keys in sorted(by_secret.items())
    ]
    for volume in volumes:
        secret_allowed(volume.secret, policies)
    return tuple(volumes)


def secret_allowed(name: str, policies: list[NamedPolicy], use: str = "") -> None:
    """NotGranted unless every policy's `secrets.allowed` admits the Secret `name` (mounted
    into the plugin's pod, or used to pull its artifact: `use` says which)."""
    for policy in policies:
        allowed = policy.spec.secrets.allowed if policy.spec.secrets else None
        if not any(fnmatch.fnmatchcase(name, pattern) for pattern in allowed or []):
            listed = ", ".join(allowed or []) or "none"
            raise NotGranted(
                Reason.SECRET_NOT_ALLOWED,
                f"Secret {name!r}{use} is not allowed by policy {policy.name!r} "
                f"(secrets.allowed: {listed})",
            )


def _callers(policies: list[NamedPolicy]) -> list[dict[str, Any]]:
    lists: dict[str, tuple[str, list[Peer]]] = {}
    for policy in policies:
        if policy.spec.callers is not None:
            key = repr([peer.model_dump(mode="json") for peer in policy.spec.callers])
            lists.setdefault(key, (policy.name, list(policy.spec.callers)))
    if len(lists) > 1:
        named = ", ".join(name for name, _ in lists.values())
        raise NotGranted(
            Reason.POLICIES_DISAGREE, f"policies {named} name different callers; they must agree"
        )
    callers = next(iter(lists.values()), ("", []))[1]
    return [{"podSelector": {}}] + [network_peer(peer) for peer in callers]


def grant(spec: PluginDescriptor, policies: list[NamedPolicy]) -> Grant:
    """Everything the policies grant the plugin, or NotGranted naming the first refused power.
    No policy at all means the built-in default one (as `policy.applicable` gives)."""
    policies = policies or [NamedPolicy(DEFAULT_POLICY_NAME, PluginPolicySpec())]
    handler = runtime_class(spec, policies)
    granted = _capabilities(spec, policies)
    egress: list[dict[str, Any]] = []
    if spec.sandbox_level is not SandboxLevel.UNTRUSTED:
        dns = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
        egress.append({"ports": dns})
    for value in granted.values():
        if isinstance(value, NetworkGrant):
            egress += [{}] if value.egress is None else _egress(value.egress)
        elif isinstance(value, EgressGrant):
            egress += _egress(value.egress)
    filesystem = granted.get(Capability.FILESYSTEM)
    return Grant(
        runtime_class=handler,
        egress=egress,
        ingress_from=_callers(policies),
        writable=filesystem.size_limit if isinstance(filesystem, FilesystemGrant) else None,
        gpus=spec.resource_profile.gpu if spec.resource_profile else 0,
        secrets=_secrets(spec, policies),
    )
