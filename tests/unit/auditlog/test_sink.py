"""The audit sink over a store: a failed append fails every decision of its batch and is counted
(`wayang_audit_append_failures_total`, the metric to page on: statuses wait for the log)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import pytest
from tests.documents import logged_event

from wayang_operator import metrics
from wayang_operator.api.audit import PluginAuditEvent
from wayang_operator.auditlog.sink import StoreSink


class Down:
    """A store that refuses every append."""

    async def append(self, events: Iterable[PluginAuditEvent]) -> int:
        list(events)
        raise ConnectionError("the store is away")


def failures() -> float:
    return float(metrics.AUDIT_FAILURES._value.get())


def test_a_failed_batch_fails_its_callers_and_is_counted() -> None:
    before = failures()

    async def two_decisions() -> list[BaseException | None]:
        sink = StoreSink(Down())
        results = await asyncio.gather(
            sink.append(logged_event(1)), sink.append(logged_event(2)), return_exceptions=True
        )
        return [r if isinstance(r, BaseException) else None for r in results]

    results = asyncio.run(two_decisions())
    assert all(isinstance(r, ConnectionError) for r in results), results
    assert failures() - before == 1, "one batch, one failure"
    with pytest.raises(ConnectionError):
        asyncio.run(StoreSink(Down()).append(logged_event(3)))
    assert failures() - before == 2
