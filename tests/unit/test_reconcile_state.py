"""What the reconcile keeps between events lives per operator run.

Found by CI: an in-process handler test failed because a per-plugin lock was still held by a task
of the previous test's operator, whose event loop had ended; asyncio refuses a lock of another
loop, and every reconcile of that plugin failed. Each run now starts with none (the startup
handler `elect` calls `forget_all`).
"""

from __future__ import annotations

import asyncio
import inspect

import pytest

from wayang_operator.controller import handlers, reconcile

KEY = ("team-a", "held")


async def _take() -> bool:
    async def take() -> bool:
        async with reconcile._locks.setdefault(KEY, asyncio.Lock()):
            return True

    return await asyncio.wait_for(take(), timeout=2)


async def _hold_with_a_waiter() -> None:
    """A reconcile holds the plugin's lock and the next one waits for it when the run ends."""
    lock = reconcile._locks.setdefault(KEY, asyncio.Lock())
    await lock.acquire()
    waiter = asyncio.create_task(lock.acquire())
    await asyncio.sleep(0)
    assert not waiter.done()


def test_a_lock_an_ended_run_left_held_blocks_nothing_after_forget_all() -> None:
    asyncio.run(_hold_with_a_waiter())  # the loop ends with the lock held
    with pytest.raises(RuntimeError, match="different event loop"):
        asyncio.run(_take())
    reconcile.forget_all()
    assert asyncio.run(_take())
    reconcile.forget_all()


def test_every_operator_run_starts_by_forgetting() -> None:
    assert "forget_all()" in inspect.getsource(handlers.elect)
