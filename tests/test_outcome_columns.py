"""Outcomes write only the columns they own: an operator's change to a running row stays."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import psycopg.sql
import pytest
from psycopg_pool import AsyncConnectionPool

from lg_deploy.graphs import GraphOutcome, GraphRun
from lg_deploy.models import ExecutionState, ExecutionStatus, Finish, Requeue
from lg_deploy.store.postgres import PostgresExecutionStore
from lg_deploy.store.protocol import ExecutionStore
from lg_deploy.worker import ExecutionWorker
from lg_deploy.worker.retry import RetryPolicy
from tests.support.backends import make_worker
from tests.support.factories import RUNNING, bring_to, make_state, moved
from tests.support.waiting import wait_until_async

QUEUED, COMPLETED, FAILED = (
    ExecutionStatus.QUEUED,
    ExecutionStatus.COMPLETED,
    ExecutionStatus.FAILED,
)
WAIT_SECONDS = 15.0


async def operator_sets(store: ExecutionStore, running: ExecutionState, **columns: Any) -> None:
    """What an operator's UPDATE does to a RUNNING row (the memory store's only way in)."""
    changed = await store.update(running.evolve(**columns), expected_status=RUNNING)
    assert all(getattr(changed, name) == value for name, value in columns.items())


@pytest.mark.req("LLD-4.1", "OUTCOME-OWNED-COLUMNS")
async def test_a_finish_keeps_the_priority_and_attempts_an_operator_set(
    store: ExecutionStore,
) -> None:
    """finish_running stores the outcome and leaves priority and max_attempts as changed."""
    running = await bring_to(store, RUNNING)
    await operator_sets(store, running, priority=90, max_attempts=7)
    (stored,) = await store.finish_running("worker-a", [Finish(running, COMPLETED, output={})])
    assert isinstance(stored, ExecutionState)
    read = await store.get(running.execution_id)
    assert read is not None
    assert (read.status, read.output, read.priority, read.max_attempts) == (COMPLETED, {}, 90, 7)


@pytest.mark.req("LLD-4.1", "OUTCOME-OWNED-COLUMNS")
@pytest.mark.parametrize(
    ("max_attempts", "status", "error"),
    [
        (3, QUEUED, "boom (attempt 1 of 3; retrying)"),
        (1, FAILED, "boom, finally"),
    ],
    ids=["raised-so-retried", "lowered-so-failed"],
)
async def test_a_requeue_counts_attempts_by_the_row_as_it_is_now(
    store: ExecutionStore, max_attempts: int, status: ExecutionStatus, error: str
) -> None:
    """requeue_running decides by the stored max_attempts, not by the worker's copy of it."""
    created = await store.create(make_state(max_attempts=2))
    running = await store.update(moved(created, RUNNING), expected_status=QUEUED)
    await operator_sets(store, running, max_attempts=max_attempts, priority=-5)
    requeue = Requeue(running, error="boom", final_error="boom, finally", numbered=True)
    (stored,) = await store.requeue_running("worker-a", [requeue])
    assert isinstance(stored, ExecutionState)
    read = await store.get(running.execution_id)
    assert read is not None
    assert (read.status, read.error, read.max_attempts, read.priority) == (
        status,
        error,
        max_attempts,
        -5,
    )


class PausedRunner:
    """A graph runner whose runs wait at `gate`, then return their input or raise."""

    def __init__(self, *, fail: bool = False) -> None:
        self.gate = asyncio.Event()
        self.fail = fail

    async def execute(self, run: GraphRun) -> GraphOutcome:
        """Wait for the gate; raise RuntimeError("boom") when told to fail."""
        await self.gate.wait()
        if self.fail:
            raise RuntimeError("boom")
        return GraphOutcome(run.input or {})


@pytest.fixture
async def pg_store(pool: AsyncConnectionPool[Any]) -> PostgresExecutionStore:
    """The PostgreSQL store over the test database."""
    return PostgresExecutionStore(pool)


@contextlib.asynccontextmanager
async def running_worker(
    pool: AsyncConnectionPool[Any], runner: PausedRunner, **options: Any
) -> AsyncIterator[ExecutionWorker]:
    store = PostgresExecutionStore(pool)
    worker = make_worker(
        store, runner, worker_id="w", pool=pool, poll_interval_seconds=0.05, **options
    )
    await worker.start()
    try:
        yield worker
    finally:
        runner.gate.set()
        await worker.stop()
        await worker.intake.claimer.close()


async def _status_is(store: ExecutionStore, execution_id: str, status: ExecutionStatus) -> bool:
    state = await store.get(execution_id)
    return state is not None and state.status == status


async def changed_while_running(
    pool: AsyncConnectionPool[Any],
    db_url: str,
    runner: PausedRunner,
    created: ExecutionState,
    assignments: str,
    until: ExecutionStatus,
    **options: Any,
) -> ExecutionState:
    """Run `created` on a worker; while RUNNING, `UPDATE ... SET assignments` as psql would;
    then let the graph end and return the row once it is `until`."""
    store = PostgresExecutionStore(pool)
    execution_id = created.execution_id
    async with running_worker(pool, runner, **options):
        await wait_until_async(lambda: _status_is(store, execution_id, RUNNING), WAIT_SECONDS)
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(
                psycopg.sql.SQL(
                    "UPDATE lg_deploy.executions SET {} WHERE execution_id = %(id)s"
                ).format(psycopg.sql.SQL(assignments)),  # a test's literal, not input
                {"id": execution_id},
            )
        runner.gate.set()
        await wait_until_async(lambda: _status_is(store, execution_id, until), WAIT_SECONDS)
    read = await store.get(execution_id)
    assert read is not None
    return read


@pytest.mark.req("OUTCOME-OWNED-COLUMNS", "LLD-6.1")
async def test_an_update_from_psql_while_running_survives_the_outcome(
    pool: AsyncConnectionPool[Any], pg_store: PostgresExecutionStore, db_url: str
) -> None:
    """UPDATE priority=90, max_attempts=7 while RUNNING; after COMPLETED they are still 90, 7."""
    created = await pg_store.create(make_state(input={"n": 1}))
    assignments = "priority = 90, max_attempts = 7"
    read = await changed_while_running(
        pool, db_url, PausedRunner(), created, assignments, COMPLETED
    )
    assert (read.output, read.priority, read.max_attempts) == ({"n": 1}, 90, 7)


@pytest.mark.req("OUTCOME-OWNED-COLUMNS", "LLD-6.1")
async def test_attempts_raised_from_psql_while_running_give_a_retry(
    pool: AsyncConnectionPool[Any], pg_store: PostgresExecutionStore, db_url: str
) -> None:
    """A run on its last attempt fails; max_attempts raised meanwhile makes it retry instead."""
    retrying = RetryPolicy(retry_on_error=True, backoff_seconds=60.0)
    created = await pg_store.create(make_state(max_attempts=1))
    read = await changed_while_running(
        pool, db_url, PausedRunner(fail=True), created, "max_attempts = 2", QUEUED, retry=retrying
    )
    assert (read.error, read.attempts, read.max_attempts) == (
        "RuntimeError: boom (attempt 1 of 2; retrying)",
        1,
        2,
    )
