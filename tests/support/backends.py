"""Store and claimer backends (memory, PostgreSQL) building in-process workers; fixtures."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from lg_deploy.db.listener import Listener
from lg_deploy.db.pool import open_pool
from lg_deploy.graphs import GraphRegistry
from lg_deploy.models import ExecutionState, ExecutionStatus, utcnow
from lg_deploy.queue.memory import MemoryClaimer
from lg_deploy.queue.postgres import PostgresClaimer
from lg_deploy.queue.protocol import Claimer
from lg_deploy.store.memory import InMemoryExecutionStore
from lg_deploy.store.postgres import PostgresExecutionStore
from lg_deploy.store.protocol import ExecutionStore
from lg_deploy.worker import ExecutionWorker, GraphRunner
from lg_deploy.worker.intake import Intake
from lg_deploy.worker.pace import ClaimPace
from lg_deploy.worker.retry import RetryPolicy
from tests.support.factories import make_state
from tests.support.graphs import TEST_GRAPHS
from tests.support.waiting import wait_until_async

WAIT_SECONDS = 10.0
POLL_SECONDS = 0.1
LEASE_SECONDS = 10.0


def make_claimer(
    store: ExecutionStore,
    *,
    worker_id: str,
    pool: AsyncConnectionPool[Any] | None = None,
    graph_ids: Any = TEST_GRAPHS,
    listener: Listener | None = None,
    lease_seconds: float = LEASE_SECONDS,
) -> Claimer:
    """The Postgres claimer over `pool` or the store's (graphs `graph_ids`), else the memory one."""
    if pool is None and isinstance(store, PostgresExecutionStore):
        pool = store.pool
    if pool is not None:
        return PostgresClaimer(
            pool,
            worker_id=worker_id,
            graph_ids=graph_ids,
            lease_seconds=lease_seconds,
            listener=listener,
        )
    assert isinstance(store, InMemoryExecutionStore)
    return MemoryClaimer(store, worker_id=worker_id, lease_seconds=lease_seconds)


def make_intake(
    claimer: Claimer,
    *,
    poll_interval_seconds: float = POLL_SECONDS,
    claim_ahead: int = 0,
    hold_seconds: float = 1.0,
    pace: ClaimPace | None = None,
) -> Intake:
    """An intake over `claimer`; claims nothing ahead unless told."""
    return Intake(
        claimer,
        poll_interval_seconds=poll_interval_seconds,
        claim_ahead=claim_ahead,
        hold_seconds=hold_seconds,
        pace=pace,
    )


def make_worker(
    store: ExecutionStore,
    graphs: GraphRunner,
    *,
    worker_id: str = "test-worker",
    pool: AsyncConnectionPool[Any] | None = None,
    graph_ids: Any = TEST_GRAPHS,
    listener: Listener | None = None,
    intake: Intake | None = None,
    concurrency: int = 4,
    lease_seconds: float = LEASE_SECONDS,
    recovery_interval_seconds: float = 2.0,
    retry: RetryPolicy | None = None,
    poll_interval_seconds: float = POLL_SECONDS,
    claim_ahead: int = 0,
    hold_seconds: float = 1.0,
    pace: ClaimPace | None = None,
    **options: Any,
) -> ExecutionWorker:
    """A worker (not started) over `store`: Postgres claims when `pool` is given, else memory."""
    if intake is None:
        claimer = make_claimer(
            store,
            worker_id=worker_id,
            pool=pool,
            graph_ids=graph_ids,
            listener=listener,
            lease_seconds=lease_seconds,
        )
        intake = make_intake(
            claimer,
            poll_interval_seconds=poll_interval_seconds,
            claim_ahead=claim_ahead,
            hold_seconds=hold_seconds,
            pace=pace,
        )
    return ExecutionWorker(
        store,
        intake,
        graphs,
        concurrency=concurrency,
        lease_seconds=lease_seconds,
        recovery_interval_seconds=recovery_interval_seconds,
        retry=retry or RetryPolicy(),
        **options,
    )


async def claim_for(
    worker: ExecutionWorker, execution_id: str, lease_seconds: float = 60.0
) -> ExecutionState:
    """Claim one QUEUED row for `worker` by a guarded update (its claimer claims by its order)."""
    store = worker.store
    state = await store.get(execution_id)
    assert state is not None
    claimed = state.evolve(
        status=ExecutionStatus.RUNNING,
        attempts=state.attempts + 1,
        worker_id=worker.worker_id,
        lease_expires_at=utcnow() + timedelta(seconds=lease_seconds),
    )
    return await store.update(claimed, expected_status=ExecutionStatus.QUEUED)


async def claim_and_run(worker: ExecutionWorker, execution_id: str) -> ExecutionState | None:
    """Claim one QUEUED row for `worker` and run it to its outcome outside the slots."""
    return await worker.run_claimed(await claim_for(worker, execution_id))


@dataclass
class Backend:
    """One store plus a queue factory; builds workers whose queue shares their worker id."""

    name: str
    store: ExecutionStore
    pool: AsyncConnectionPool[Any] | None
    workers: list[ExecutionWorker] = field(default_factory=list)

    def worker(self, graphs: GraphRunner, **options: Any) -> ExecutionWorker:
        """A started-later worker on this backend, with an id of its own."""
        options.setdefault("worker_id", f"test-worker-{len(self.workers)}")
        if isinstance(graphs, GraphRegistry):
            options.setdefault("graph_ids", graphs.names())
        worker = make_worker(self.store, graphs, pool=self.pool, **options)
        self.workers.append(worker)
        return worker

    async def submit(self, worker: ExecutionWorker, **fields: Any) -> str:
        """Create a QUEUED execution and wake the worker's claimer, as the HTTP API does."""
        state = await self.store.create(make_state(**fields))
        worker.wake()
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
        """Close every worker's claimer."""
        for worker in self.workers:
            await worker.intake.claimer.close()

    async def close(self) -> None:
        """Stop every worker and close every claimer and the pool."""
        for worker in self.workers:
            await worker.stop(0)
        await self.close_queues()
        if self.pool is not None:
            await self.pool.close()


@pytest.fixture(params=["memory", "postgres"])
def backend_url(request: pytest.FixtureRequest) -> str | None:
    """None for the memory backend, else a fresh database (resolved outside the event loop)."""
    return None if request.param == "memory" else str(request.getfixturevalue("db_url"))


@contextlib.asynccontextmanager
async def opened_backend(url: str | None) -> AsyncIterator[Backend]:
    """The memory backend (no url) or the Postgres one on `url`; every part closed at the end."""
    if url is None:
        made = Backend("memory", InMemoryExecutionStore(), None)
    else:
        pool = await open_pool(url, max_size=10)
        made = Backend("postgres", PostgresExecutionStore(pool), pool)
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture
async def backend(backend_url: str | None) -> AsyncIterator[Backend]:
    """Memory store and claimer, or Postgres store and claimer (poll 0.1 s)."""
    async with opened_backend(backend_url) as made:
        yield made


@pytest.fixture
async def pg_backend(db_url: str) -> AsyncIterator[Backend]:
    """The Postgres backend alone, for behaviour only the SQL store and claim have."""
    async with opened_backend(db_url) as made:
        yield made
