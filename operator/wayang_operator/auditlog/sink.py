"""The operator's audit sink over a store: decisions are batched into few writes, and a caller
returns only once its entry is durably in the log, so a status is never written for a decision
the log does not hold. A failed write fails every caller of the batch; each retries on its
plugin's next event, and appends are idempotent by audit id."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from typing import Protocol

from .. import metrics
from ..api.audit import PluginAuditEvent
from .log import wire

logger = logging.getLogger("wayang.audit")

MAX_BATCH = 256


class Store(Protocol):
    async def append(self, events: Iterable[PluginAuditEvent]) -> int: ...


class StoreSink:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._pending: list[tuple[PluginAuditEvent, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def append(self, event: PluginAuditEvent) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((event, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        await done
        logger.info(json.dumps(wire(event), sort_keys=True))

    async def _write(self) -> None:
        await asyncio.sleep(0)  # let the decisions of this moment join the batch
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            try:
                await self.store.append(event for event, _ in batch)
            except Exception as error:  # every waiter learns; nothing is half-written
                metrics.AUDIT_FAILURES.inc()
                logger.warning("appending %d audit entries failed: %s", len(batch), error)
                for _, done in batch:
                    if not done.done():
                        done.set_exception(error)
            else:
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)
