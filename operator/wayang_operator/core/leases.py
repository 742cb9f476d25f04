"""Leader election over a coordination.k8s.io Lease, decided without touching the API.

Only one replica may write statuses and audit entries, or two replicas would record every decision
twice. Expiry is judged the way client-go's leader election judges it: by how long *this* replica
has seen the Lease unchanged on its own monotonic clock, never by comparing the holder's
timestamps with ours, so clock skew between nodes cannot hand the Lease to two replicas.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True)
class LeaseRecord:
    """What the Lease says: who holds it and the holder's last renewal (opaque to us)."""

    holder: str | None
    renewed: str | None


class Step(enum.Enum):
    CREATE = "create"
    """There is no Lease: create it, holding it."""
    RENEW = "renew"
    """We hold it: write a fresh renewal."""
    TAKE = "take"
    """It is free, or its holder stopped renewing for longer than the lease duration."""
    WAIT = "wait"
    """Someone else holds it and is alive."""


@dataclass
class Observer:
    """Remembers when this replica last saw the Lease change, to judge expiry on its own clock."""

    seen: LeaseRecord | None = None
    since: float = 0.0

    def step(self, record: LeaseRecord | None, me: str, now: float, duration: float) -> Step:
        if record is None:
            return Step.CREATE
        if record != self.seen:
            self.seen, self.since = record, now
        if record.holder == me:
            return Step.RENEW
        if not record.holder or now - self.since >= duration:
            return Step.TAKE
        return Step.WAIT
