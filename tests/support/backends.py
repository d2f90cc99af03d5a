"""Store and queue backend pairs (memory, PostgreSQL) building in-process workers; fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from lg_deploy.db.pool import open_pool
from lg_deploy.graphs import GraphRegistry
from lg_deploy.models import ExecutionState, ExecutionStatus
from lg_deploy.queue.memory import AsyncioExecutionQueue
from lg_deploy.queue.postgres import PostgresExecutionQueue
from lg_deploy.store.memory import InMemoryExecutionStore
from lg_deploy.store.postgres import PostgresExecutionStore
from lg_deploy.store.protocol import ExecutionStore
from lg_deploy.worker import ExecutionWorker, GraphRunner
from tests.support.factories import make_state
from tests.support.graphs import TEST_GRAPHS
from tests.support.waiting import wait_until_async

WAIT_SECONDS = 10.0
POLL_SECONDS = 0.1


@dataclass
class Backend:
    """One store plus a queue factory; builds workers whose queue shares their worker id."""

    name: str
    store: ExecutionStore
    pool: AsyncConnectionPool[Any] | None
    workers: list[ExecutionWorker] = field(default_factory=list)
    queues: list[Any] = field(default_factory=list)

    def worker(self, graphs: GraphRunner, **options: Any) -> ExecutionWorker:
        """A started-later worker on this backend (its queue claims under the worker's id)."""
        worker_id = f"test-worker-{len(self.workers)}"
        if self.pool is None:
            queue: Any = AsyncioExecutionQueue()
        else:
            queue = PostgresExecutionQueue(
                self.pool,
                worker_id=worker_id,
                graph_ids=graphs.names() if isinstance(graphs, GraphRegistry) else TEST_GRAPHS,
                listener=None,
                poll_interval_seconds=POLL_SECONDS,
            )
        worker = ExecutionWorker(self.store, queue, graphs, worker_id=worker_id, **options)
        self.workers.append(worker)
        self.queues.append(queue)
        return worker

    async def submit(self, worker: ExecutionWorker, **fields: Any) -> str:
        """Create a QUEUED execution and tell the worker's queue about it."""
        state = await self.store.create(make_state(**fields))
        await worker.queue.enqueue(state.execution_id)
        return state.execution_id

    async def final(self, execution_id: str, timeout: float = WAIT_SECONDS) -> ExecutionState:
        """The execution once it is COMPLETED or FAILED."""
        return await self.reach(execution_id, lambda s: s.is_final, timeout)

    async def reach(
        self,
        execution_id: str,
        condition: Callable[[ExecutionState], bool],
        timeout: float = WAIT_SECONDS,
    ) -> ExecutionState:
        """The execution once `condition` holds for it."""
        found: list[ExecutionState] = []

        async def holds() -> bool:
            state = await self.store.get(execution_id)
            assert state is not None
            found[:] = [state]
            return condition(state)

        await wait_until_async(holds, timeout)
        return found[0]

    async def count_running(self, ids: list[str]) -> int:
        """How many of `ids` are RUNNING now, read as one snapshot."""
        if self.pool is None:  # the memory store answers without yielding: a snapshot too
            states = [await self.store.get(i) for i in ids]
            return sum(1 for s in states if s is not None and s.status == ExecutionStatus.RUNNING)
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT count(*) FROM lg_deploy.executions"
                " WHERE execution_id = ANY(%s::uuid[]) AND status = 'RUNNING'",
                (ids,),
            )
            row = await cursor.fetchone()
        assert row is not None
        return int(row[0])

    async def recorded_errors(self, execution_id: str) -> list[str]:
        """The execution's error, plus (Postgres) every error in its event history."""
        state = await self.store.get(execution_id)
        errors = [state.error] if state is not None and state.error else []
        if self.pool is not None:
            async with self.pool.connection() as conn:
                cursor = await conn.execute(
                    "SELECT error FROM lg_deploy.execution_events"
                    " WHERE execution_id = %s AND error IS NOT NULL ORDER BY event_id",
                    (execution_id,),
                )
                errors += [row[0] for row in await cursor.fetchall()]
        return errors

    async def close_queues(self) -> None:
        """Close the Postgres queues (their claimers are tasks; the asyncio queue has none)."""
        for queue in self.queues:
            if isinstance(queue, PostgresExecutionQueue):
                await queue.close()

    async def close(self) -> None:
        """Stop every worker and close every queue and the pool."""
        for worker in self.workers:
            await worker.stop(0)
        await self.close_queues()
        if self.pool is not None:
            await self.pool.close()


@pytest.fixture(params=["memory", "postgres"])
def backend_url(request: pytest.FixtureRequest) -> str | None:
    """None for the memory backend, else a fresh database (resolved outside the event loop)."""
    return None if request.param == "memory" else str(request.getfixturevalue("db_url"))


@pytest.fixture
async def backend(backend_url: str | None) -> AsyncIterator[Backend]:
    """Memory store + asyncio queue, or Postgres store + Postgres claim queue (poll 0.1 s)."""
    if backend_url is None:
        made = Backend("memory", InMemoryExecutionStore(), None)
    else:
        pool = await open_pool(backend_url, max_size=10)
        made = Backend("postgres", PostgresExecutionStore(pool), pool)
    try:
        yield made
    finally:
        await made.close()
