"""The DependenciesResolved gate: capabilities, dependency ranges and the supported Wayang version.

A plugin resolves against the *active* plugins of its namespace (approved, enabled, themselves
resolved), so nothing becomes ready on top of something that cannot run. Cycles are looked for
among all enabled plugins of the namespace, active or not, because a cycle is exactly what keeps
its members from ever becoming active: it is reported instead of waited on forever. Only
`runtime` dependencies take part: `compile` and `test` ones are the build's business and never
block a plugin from running (they are listed in the message, as not checked).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ..api.descriptor import DependencyDescriptor, DependencyScope, PluginDescriptor
from .semver import Range, Version

BUILD_ONLY = frozenset({DependencyScope.COMPILE, DependencyScope.TEST})
"""Scopes that matter when the plugin is built, not when it runs: never waited for, only named."""


@dataclass(frozen=True)
class Candidate:
    """Another plugin of the namespace: its resource name and descriptor."""

    name: str
    spec: PluginDescriptor


@dataclass(frozen=True)
class DependencyOutcome:
    resolved: bool
    message: str
    cycle: tuple[str, ...] = ()
    unmet: tuple[str, ...] = ()


def _satisfies(candidate: Candidate, dependency_id: str, wanted: Range) -> bool:
    return candidate.spec.id == dependency_id and wanted.matches(
        Version.parse(candidate.spec.version)
    )


def runtime_dependencies(spec: PluginDescriptor) -> list[DependencyDescriptor]:
    """The dependencies a running plugin needs (scope runtime)."""
    return [d for d in spec.dependencies or [] if d.scope is DependencyScope.RUNTIME]


def _edges(spec: PluginDescriptor, others: list[Candidate]) -> Iterator[str]:
    """Names of the plugins `spec` would depend on at run time, among `others`."""
    requires = set(spec.requires or [])
    ids = {dependency.id for dependency in runtime_dependencies(spec)}
    for other in others:
        if requires & set(other.spec.provides or []) or other.spec.id in ids:
            yield other.name


def find_cycle(name: str, spec: PluginDescriptor, namespace: list[Candidate]) -> tuple[str, ...]:
    """A dependency path from `name` back to itself through enabled plugins, or ()."""
    everyone = {c.name: c for c in namespace if c.spec.enabled and c.name != name}
    everyone[name] = Candidate(name, spec)
    others = list(everyone.values())
    stack: list[tuple[str, tuple[str, ...]]] = [(name, (name,))]
    seen: set[str] = set()
    while stack:
        current, path = stack.pop()
        for target in _edges(everyone[current].spec, [o for o in others if o.name != current]):
            if target == name:
                return (*path, name)
            if target not in seen:
                seen.add(target)
                stack.append((target, (*path, target)))
    return ()


def resolve(
    name: str,
    spec: PluginDescriptor,
    *,
    active: list[Candidate],
    namespace: list[Candidate],
    wayang_version: str | None,
) -> DependencyOutcome:
    """Whether every requirement of the plugin is met by an active plugin; names what is not."""
    cycle = find_cycle(name, spec, namespace)
    if cycle:
        return DependencyOutcome(False, "dependency cycle: " + " -> ".join(cycle), cycle=cycle)
    providers = [c for c in active if c.name != name and c.spec.enabled]
    unmet: list[str] = []
    engine = Version.parse(wayang_version) if wayang_version else None
    if spec.wayang_version and engine and not Range.parse(spec.wayang_version).matches(engine):
        unmet.append(f"wayangVersion {spec.wayang_version}: the engine is {wayang_version}")
    for capability in spec.requires or []:
        if not any(capability in (c.spec.provides or []) for c in providers):
            unmet.append(f"requires {capability}: no active plugin in the namespace provides it")
    for dependency in runtime_dependencies(spec):
        wanted = Range.parse(dependency.version)
        present = [c for c in providers if c.spec.id == dependency.id]
        if any(_satisfies(c, dependency.id, wanted) for c in present):
            continue
        if not present and dependency.optional:
            continue
        found = ", ".join(f"{c.name} {c.spec.version}" for c in present) or "none active"
        kind = "optional dependency" if dependency.optional else "dependency"
        unmet.append(f"{kind} {dependency.id} {dependency.version}: {found}")
    if unmet:
        return DependencyOutcome(
            False, f"{name} waits for: " + "; ".join(unmet), unmet=tuple(unmet)
        )
    build_only = [
        f"{d.id} ({d.scope.value})" for d in spec.dependencies or [] if d.scope in BUILD_ONLY
    ]
    if build_only:
        return DependencyOutcome(
            True, f"all dependencies are active (not checked, build only: {', '.join(build_only)})"
        )
    return DependencyOutcome(True, "all dependencies are active")
