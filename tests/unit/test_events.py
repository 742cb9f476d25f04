"""Events of decisions made outside kopf's per-object tasks.

kopf queues an Event only from the task that processes that object's watch events; the workload
observation loop (time passing: a trip after the grace, a half-open trial) and a takeover's
re-evaluation decide outside those tasks. Found on the real node: a plugin quarantined by the
loop got no Quarantined Event, and the reconcile failed with LookupError after its audit entry.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

from wayang_operator.controller import reconcile
from wayang_operator.core.gates import Reason
from wayang_operator.core.reasons import EventType
from wayang_operator.core.transitions import Transition


class Recorder:
    def __init__(self) -> None:
        self.posted: list[tuple[dict[str, Any], str, str, str]] = []

    async def post_event(self, ref: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.posted.append((ref, type_, reason, message))


def test_an_event_decided_outside_kopfs_tasks_is_posted_through_the_api() -> None:
    api = Recorder()
    snapshot = SimpleNamespace(name="echo", namespace="team-a", uid="u-1")
    quarantined = Transition(EventType.WARNING, "Quarantined", "it broke", Reason.QUARANTINED)
    evaluation = SimpleNamespace(transitions=[quarantined])
    asyncio.run(reconcile._announce(cast(Any, api), cast(Any, snapshot), cast(Any, evaluation)))
    ref = {
        "apiVersion": "wayang.io/v1alpha1",
        "kind": "Plugin",
        "name": "echo",
        "namespace": "team-a",
        "uid": "u-1",
    }
    assert api.posted == [(ref, "Warning", "Quarantined", "it broke")]
