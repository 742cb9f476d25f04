"""Namespace labels, for policies' namespaceSelector: an index and a trigger.

Watching namespaces needs cluster-wide read access to them. An operator deployed with namespaced
RBAC only sets `WAYANG_WATCH_NAMESPACES=false`; these handlers are then never registered, and
policies see no namespace labels (a selector with requirements matches nothing, an empty one
everything).
"""

from __future__ import annotations

from typing import Any

import kopf

from .handlers import NAMESPACE_INDEX, indexes_from, reconcile_many


def register() -> None:
    """Register the namespace index and trigger with kopf (call before the operator starts)."""

    # explicit ids: kopf names a nested function's index "register.<locals>.…" otherwise, and the
    # handlers look the index up by this name
    @kopf.index("", "v1", "namespaces", id=NAMESPACE_INDEX)
    def namespace_index(*, name: str, labels: kopf.Labels, **_: Any) -> object:
        return {name: dict(labels)}

    @kopf.on.event("", "v1", "namespaces", id="namespace_changed")
    async def namespace_changed(*, name: str, **kwargs: Any) -> None:
        indexes = indexes_from(kwargs)
        await reconcile_many(indexes, [(name, p.name) for p in indexes.namespace_plugins(name)])
