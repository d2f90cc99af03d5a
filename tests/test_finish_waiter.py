"""The finish waiter behind /runs/wait and /join: handed a fresh state it skips the first
query, yet never misses a finish announced before it began listening."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from lg_deploy.db.listener import RECONNECTED
from lg_deploy.http.waiting import FinishWaiter
from lg_deploy.models import ExecutionState
from lg_deploy.store.memory import InMemoryExecutionStore
from tests.support.factories import COMPLETED, QUEUED, RUNNING, bring_to, moved

POLL_SECONDS = 30.0  # far beyond any test's patience: only a notice or a query can answer


class Notices:
    """A listener stand-in: callbacks by channel, and a way to deliver a payload."""

    def __init__(self) -> None:
        self.callbacks: dict[str, list[Callable[[str], None]]] = {}

    def subscribe(self, channel: str, callback: Callable[[str], None]) -> Callable[[], None]:
        self.callbacks.setdefault(channel, []).append(callback)
        return lambda: self.callbacks[channel].remove(callback)

    def deliver(self, payload: str) -> None:
        for callbacks in self.callbacks.values():
            for callback in callbacks:
                callback(payload)


class CountingStore(InMemoryExecutionStore):
    """The in-memory store, counting `get` calls."""

    def __init__(self) -> None:
        super().__init__()
        self.gets = 0

    async def get(self, execution_id: str) -> ExecutionState | None:
        self.gets += 1
        return await super().get(execution_id)


def _waiter(store: CountingStore, notices: Notices) -> FinishWaiter:
    listener: Any = notices
    return FinishWaiter(store, listener, poll_seconds=POLL_SECONDS)


async def _finish(store: CountingStore, queued: ExecutionState) -> ExecutionState:
    running = await store.update(moved(queued, RUNNING), expected_status=QUEUED)
    return await store.update(moved(running, COMPLETED), expected_status=RUNNING)


@pytest.mark.req("SDK-COMPAT")
async def test_a_handed_state_costs_no_query_until_the_finish_notice() -> None:
    """Handed the state it just wrote, the wait queries once: after the notice."""
    store, notices = CountingStore(), Notices()
    waiter = _waiter(store, notices)
    queued = await bring_to(store, QUEUED)
    store.gets = 0
    waiting = asyncio.create_task(waiter.wait(queued.execution_id, 10.0, known=queued))
    await asyncio.sleep(0)  # let it register
    assert store.gets == 0
    await _finish(store, queued)
    notices.deliver(queued.execution_id)
    final = await asyncio.wait_for(waiting, 5.0)
    assert final is not None
    assert final.status == COMPLETED
    assert store.gets == 1


@pytest.mark.req("SDK-COMPAT")
async def test_a_finish_announced_before_the_wait_began_is_not_missed() -> None:
    """The notice came between the write and the wait: the wait queries at once and answers
    the final state instead of sleeping until its poll."""
    store, notices = CountingStore(), Notices()
    waiter = _waiter(store, notices)
    queued = await bring_to(store, QUEUED)
    await _finish(store, queued)
    notices.deliver(f"other,{queued.execution_id}")
    final = await asyncio.wait_for(waiter.wait(queued.execution_id, 10.0, known=queued), 5.0)
    assert final is not None
    assert final.status == COMPLETED


@pytest.mark.req("SDK-COMPAT")
async def test_after_a_notice_naming_no_ids_a_handed_state_is_checked() -> None:
    """A wildcard notice (too many ids, or a reconnect) just before the wait: it queries."""
    store, notices = CountingStore(), Notices()
    waiter = _waiter(store, notices)
    queued = await bring_to(store, QUEUED)
    await _finish(store, queued)
    notices.deliver(RECONNECTED)
    final = await asyncio.wait_for(waiter.wait(queued.execution_id, 10.0, known=queued), 5.0)
    assert final is not None
    assert final.status == COMPLETED


@pytest.mark.req("SDK-COMPAT")
async def test_a_wait_past_its_timeout_answers_the_state_as_it_is() -> None:
    """No notice, no finish: the timeout answers the current (queued) state."""
    store, notices = CountingStore(), Notices()
    waiter = _waiter(store, notices)
    queued = await bring_to(store, QUEUED)
    current = await waiter.wait(queued.execution_id, 0.05, known=queued)
    assert current is not None
    assert current.status == QUEUED
