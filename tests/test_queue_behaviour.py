"""One claim behaviour suite, run against the memory and the PostgreSQL claimer (and the asyncio
queue of ids that LLD 5.1 seeds)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from lg_deploy.models import ExecutionStatus, utcnow
from lg_deploy.queue import AsyncioExecutionQueue
from lg_deploy.store import InMemoryExecutionStore, PostgresExecutionStore
from lg_deploy.store.protocol import ExecutionStore
from lg_deploy.worker.intake import Intake
from lg_deploy.worker.pace import ClaimPace
from tests.support.backends import make_claimer, make_intake
from tests.support.factories import make_state

WAIT_SECONDS = 10.0
NOTHING_SECONDS = 0.3

StoreAndQueue = tuple[ExecutionStore, Intake]


class FastPace(ClaimPace):
    """A pace that always claims `most` ahead."""

    def ahead(self) -> int:
        """Always the most."""
        return self._most


@pytest.fixture(params=["memory", "postgres"])
def backend(request: pytest.FixtureRequest) -> AsyncConnectionPool[Any] | None:
    """None for the in-memory pair; the test database's pool for the PostgreSQL pair."""
    return request.getfixturevalue("pool") if request.param == "postgres" else None


def _store_of(backend: AsyncConnectionPool[Any] | None) -> ExecutionStore:
    return InMemoryExecutionStore() if backend is None else PostgresExecutionStore(backend)


@pytest.fixture
async def store_and_queue(
    backend: AsyncConnectionPool[Any] | None,
) -> AsyncIterator[StoreAndQueue]:
    """A store and an intake over its claimer for worker w1 (closed at teardown)."""
    store = _store_of(backend)
    intake = make_intake(make_claimer(store, worker_id="w1", pool=backend))
    try:
        yield store, intake
    finally:
        await intake.close()
        await intake.claimer.close()


async def submit(pair: StoreAndQueue, **fields: Any) -> str:
    """Create a QUEUED execution and wake the claimer, as the HTTP API does."""
    store, queue = pair
    state = await store.create(make_state(**fields))
    queue.wake()
    return state.execution_id


async def dequeue_soon(queue: Intake) -> str:
    """The next claimed id, failing the test when none arrives within WAIT_SECONDS."""
    return (await asyncio.wait_for(queue.dequeue(), WAIT_SECONDS)).execution_id


async def assert_nothing_to_dequeue(queue: Intake) -> None:
    """dequeue is still waiting after NOTHING_SECONDS."""
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(queue.dequeue(), NOTHING_SECONDS)


@pytest.mark.req("LLD-5.1", "LLD-10")
async def test_every_submitted_id_is_dequeued_exactly_once(store_and_queue: StoreAndQueue) -> None:
    """50 submitted ids come out of 50 concurrent dequeues once each, and then nothing more."""
    submitted = [await submit(store_and_queue, input={"i": i}) for i in range(50)]
    queue = store_and_queue[1]
    dequeued = await asyncio.gather(*(dequeue_soon(queue) for _ in submitted))
    assert len(dequeued) == len(set(dequeued)) == 50
    assert set(dequeued) == set(submitted)
    await assert_nothing_to_dequeue(queue)


@pytest.mark.req("LLD-5.1", "LLD-10")
async def test_dequeue_waits_until_something_is_submitted(store_and_queue: StoreAndQueue) -> None:
    """dequeue blocks while nothing is submitted and returns the id once one is."""
    queue = store_and_queue[1]
    await assert_nothing_to_dequeue(queue)
    waiting = asyncio.create_task(queue.dequeue())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    execution_id = await submit(store_and_queue)
    assert (await asyncio.wait_for(waiting, WAIT_SECONDS)).execution_id == execution_id


@pytest.mark.req("LLD-5.1", "LLD-11")
async def test_dequeue_returns_the_row_as_the_claim_stored_it(
    store_and_queue: StoreAndQueue,
) -> None:
    """The claimed row comes out RUNNING for this worker, as store.get then reads it."""
    store, queue = store_and_queue
    execution_id = await submit(store_and_queue, input={"ticket": 7})
    claimed = await asyncio.wait_for(queue.dequeue(), WAIT_SECONDS)
    assert (claimed.execution_id, claimed.input) == (execution_id, {"ticket": 7})
    assert (claimed.status, claimed.worker_id, claimed.attempts) == (
        ExecutionStatus.RUNNING,
        "w1",
        1,
    )
    assert claimed == await store.get(execution_id)


@pytest.mark.req("LLD-5.1", "CLAIM-ONE-PATH")
async def test_higher_priority_runs_first_after_the_one_running(
    store_and_queue: StoreAndQueue,
) -> None:
    """One slot busy with a blocker, then `low` and `high` submitted: high runs before low."""
    blocker = await submit(store_and_queue, input={"n": "blocker"})
    queue = store_and_queue[1]
    assert await dequeue_soon(queue) == blocker
    low = await submit(store_and_queue, input={"n": "low"}, priority=-10)
    high = await submit(store_and_queue, input={"n": "high"}, priority=10)
    assert [await dequeue_soon(queue), await dequeue_soon(queue)] == [high, low]


@pytest.mark.req("LLD-5.1", "CLAIM-ONE-PATH")
async def test_a_row_due_later_is_claimed_once_due_and_after_rows_due_now(
    store_and_queue: StoreAndQueue,
) -> None:
    """run_at 2 s ahead: not claimed at first; a row due now goes first; the later one once due."""
    later = await submit(store_and_queue, run_at=utcnow() + timedelta(seconds=2))
    queue = store_and_queue[1]
    await assert_nothing_to_dequeue(queue)
    now = await submit(store_and_queue)
    assert await dequeue_soon(queue) == now
    assert await dequeue_soon(queue) == later


@pytest.mark.req("LLD-5.1", "CLAIM-ONE-PATH", "PERF-CLAIM")
async def test_claim_ahead_holds_rows_for_slots_to_come(
    backend: AsyncConnectionPool[Any] | None,
) -> None:
    """At a fast pace one dequeue claims 3 more ahead, held (to renew) until a slot takes them."""
    store = _store_of(backend)
    claimer = make_claimer(store, worker_id="w1", pool=backend)
    queue = make_intake(claimer, claim_ahead=3, pace=FastPace(3))
    try:
        ids = [(await store.create(make_state(input={"i": i}))).execution_id for i in range(5)]
        first = await asyncio.wait_for(queue.dequeue(), WAIT_SECONDS)
        held = queue.held()
        assert first.execution_id not in held
        assert sorted(held.values()) == [1, 1, 1]
        assert set(held) | {first.execution_id} <= set(ids)
        running = [await store.get(i) for i in ids]
        assert sum(1 for s in running if s and s.status == ExecutionStatus.RUNNING) == 4
    finally:
        await queue.close()
        await claimer.close()
    released = [await store.get(i) for i in held]
    assert {(s.status, s.attempts) for s in released if s} == {(ExecutionStatus.QUEUED, 0)}


@pytest.mark.req("LLD-5.1", "LLD-11")
async def test_the_asyncio_queue_hands_out_ids_only() -> None:
    """AsyncioExecutionQueue (LLD 5.1's seed) carries ids, first in first out."""
    queue = AsyncioExecutionQueue()
    await queue.enqueue("a")
    await queue.enqueue("b")
    assert [await queue.dequeue(), await queue.dequeue()] == ["a", "b"]


@pytest.mark.req("LLD-5.1")
async def test_equal_priority_ids_come_out_in_submission_order(
    store_and_queue: StoreAndQueue,
) -> None:
    """Executions of equal priority submitted one after another are dequeued first in, first out."""
    submitted = [await submit(store_and_queue, input={"i": i}) for i in range(8)]
    queue = store_and_queue[1]
    assert [await dequeue_soon(queue) for _ in submitted] == submitted


@pytest.mark.req("LLD-5.1", "LLD-10")
async def test_cancelling_a_waiting_dequeue_loses_no_id(store_and_queue: StoreAndQueue) -> None:
    """A dequeue cancelled while it waits takes no id with it: the next dequeue gets it."""
    queue = store_and_queue[1]
    waiting = asyncio.create_task(queue.dequeue())
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    execution_id = await submit(store_and_queue)
    assert await dequeue_soon(queue) == execution_id


@pytest.mark.req("LLD-5.1", "LLD-10")
async def test_asyncio_queue_enqueue_waits_while_full() -> None:
    """AsyncioExecutionQueue(maxsize=2) blocks a third enqueue until a dequeue makes room."""
    queue = AsyncioExecutionQueue(maxsize=2)
    await queue.enqueue("a")
    await queue.enqueue("b")
    third = asyncio.create_task(queue.enqueue("c"))
    await asyncio.sleep(0.05)
    assert not third.done()
    assert queue.qsize() == 2
    assert await queue.dequeue() == "a"
    await asyncio.wait_for(third, WAIT_SECONDS)
    assert [await queue.dequeue(), await queue.dequeue()] == ["b", "c"]


@pytest.mark.req("LLD-5.1", "LLD-10")
async def test_asyncio_queue_try_enqueue_refuses_when_full() -> None:
    """try_enqueue adds at once while there is room and returns False, adding nothing, when full."""
    queue = AsyncioExecutionQueue(maxsize=2)
    assert queue.try_enqueue("a")
    assert queue.try_enqueue("b")
    assert not queue.try_enqueue("c")
    assert queue.qsize() == 2
    assert [await queue.dequeue(), await queue.dequeue()] == ["a", "b"]
    assert queue.try_enqueue("d")


@pytest.mark.req("LLD-5.1")
@pytest.mark.parametrize("maxsize", [0, -1])
def test_asyncio_queue_needs_room_for_one(maxsize: int) -> None:
    """A maxsize below 1 (which asyncio.Queue would treat as unbounded) is a ValueError."""
    with pytest.raises(ValueError, match="maxsize"):
        AsyncioExecutionQueue(maxsize=maxsize)
