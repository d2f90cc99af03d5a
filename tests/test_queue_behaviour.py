"""One ExecutionQueue behaviour suite, run against the asyncio and the PostgreSQL queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from lg_deploy.queue import AsyncioExecutionQueue, PostgresExecutionQueue
from lg_deploy.queue.protocol import ExecutionQueue
from lg_deploy.store import InMemoryExecutionStore, PostgresExecutionStore
from lg_deploy.store.protocol import ExecutionStore
from tests.support.factories import make_state
from tests.support.graphs import TEST_GRAPHS

WAIT_SECONDS = 10.0
NOTHING_SECONDS = 0.3

StoreAndQueue = tuple[ExecutionStore, ExecutionQueue]


@pytest.fixture(params=["memory", "postgres"])
def backend(request: pytest.FixtureRequest) -> AsyncConnectionPool[Any] | None:
    """None for the in-memory pair; the test database's pool for the PostgreSQL pair."""
    return request.getfixturevalue("pool") if request.param == "postgres" else None


@pytest.fixture
async def store_and_queue(
    backend: AsyncConnectionPool[Any] | None,
) -> AsyncIterator[StoreAndQueue]:
    """A store and the queue that schedules its executions (closed at teardown)."""
    if backend is None:
        yield InMemoryExecutionStore(), AsyncioExecutionQueue()
        return
    queue = PostgresExecutionQueue(
        backend, worker_id="w1", graph_ids=TEST_GRAPHS, listener=None, poll_interval_seconds=0.2
    )
    try:
        yield PostgresExecutionStore(backend), queue
    finally:
        await queue.close()


async def submit(pair: StoreAndQueue, **fields: Any) -> str:
    """Create a QUEUED execution and enqueue its id, as the HTTP API does."""
    store, queue = pair
    state = await store.create(make_state(**fields))
    await queue.enqueue(state.execution_id)
    return state.execution_id


async def dequeue_soon(queue: ExecutionQueue) -> str:
    """The next id, failing the test when none arrives within WAIT_SECONDS."""
    return await asyncio.wait_for(queue.dequeue(), WAIT_SECONDS)


async def assert_nothing_to_dequeue(queue: ExecutionQueue) -> None:
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
    assert await asyncio.wait_for(waiting, WAIT_SECONDS) == execution_id


@pytest.mark.req("LLD-5.1", "LLD-11")
async def test_dequeue_returns_an_id_the_store_resolves(store_and_queue: StoreAndQueue) -> None:
    """The queue hands out ids only: a str that store.get turns into the submitted execution."""
    store, queue = store_and_queue
    execution_id = await submit(store_and_queue, input={"ticket": 7})
    dequeued = await dequeue_soon(queue)
    assert type(dequeued) is str
    assert dequeued == execution_id
    state = await store.get(dequeued)
    assert state is not None
    assert (state.execution_id, state.input) == (execution_id, {"ticket": 7})


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
