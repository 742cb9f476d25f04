"""Which replica decides: leader election over a Lease, with every other replica a hot standby.

Every replica watches and keeps its indexes current and serves admission, but only the holder of
the Lease `<lease_name>` writes statuses, Events and audit entries. A standby that wins the Lease
re-evaluates every plugin from indexes that were live all along, so a takeover never decides from
a half-listed cache. (kopf's own peering pauses a standby's watches instead, and after a resume
it decided from policies it had not re-listed yet: that is why it is not used.)

The holder renews every third of the lease duration and stops deciding two thirds in, before
anyone else may take over (a full duration of the Lease unchanged on their own clock), so two
replicas never decide at once. A graceful stop releases the Lease for an immediate takeover.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from .. import metrics
from ..core.leases import Observer, Step
from ..kube import KubeApi

logger = logging.getLogger("wayang.leadership")


def _identity() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass
class Leadership:
    standalone: bool = True
    """A single replica leads unconditionally (no Lease)."""
    identity: str = field(default_factory=_identity)
    until: float = 0.0
    """Monotonic time until which this replica may decide (its renew deadline)."""
    indexed: bool = False
    """Set by the first watch event: kopf runs event handlers only once its indexes are listed."""

    @property
    def leading(self) -> bool:
        return self.standalone or time.monotonic() < self.until


async def _attempt(
    api: KubeApi, observer: Observer, me: str, *, namespace: str, name: str, duration: int
) -> bool:
    found = await api.read_lease(namespace, name)
    record, version = found if found else (None, None)
    step = observer.step(record, me, time.monotonic(), duration)
    if step is Step.WAIT:
        return False
    return await api.write_lease(namespace, name, me, duration, version)


async def hold(
    leadership: Leadership,
    api: KubeApi,
    *,
    namespace: str,
    name: str,
    duration: int,
    on_elected: Callable[[], Awaitable[None]],
) -> None:
    """Try to acquire or renew the Lease forever (until cancelled)."""
    observer = Observer()
    me = leadership.identity
    while True:
        started = time.monotonic()
        was = leadership.leading
        try:
            if await _attempt(api, observer, me, namespace=namespace, name=name, duration=duration):
                leadership.until = started + duration * 2 / 3
        except Exception:  # the API being away must not kill the election; the lease just lapses
            logger.warning("lease %s/%s: attempt failed", namespace, name, exc_info=True)
        if leadership.leading and not was:
            logger.info("leading: %s holds lease %s/%s", leadership.identity, namespace, name)
            metrics.set_leader(True)
            await on_elected()
        elif was and not leadership.leading:
            logger.warning("no longer leading: lease %s/%s was not renewed", namespace, name)
            metrics.set_leader(False)
        await asyncio.sleep(duration / 3 * random.uniform(0.8, 1.0))  # noqa: S311 - jitter


async def release(leadership: Leadership, api: KubeApi, *, namespace: str, name: str) -> None:
    """Hand the Lease back on a graceful stop, so a standby need not wait for it to expire."""
    if leadership.standalone or not leadership.leading:
        return
    leadership.until = 0.0
    metrics.set_leader(False)
    found = await api.read_lease(namespace, name)
    if found and found[0].holder == leadership.identity:
        await api.write_lease(namespace, name, None, 1, found[1])
        logger.info("released lease %s/%s", namespace, name)
