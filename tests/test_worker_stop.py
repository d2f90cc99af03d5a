"""ExecutionWorker stop and fencing, on both backends: hand-back, grace, and refused outcomes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from lg_deploy.graphs import GraphOutcome, GraphRegistry, GraphRun
from lg_deploy.models import ExecutionState, ExecutionStatus, utcnow
from lg_deploy.queue.protocol import Claimer
from lg_deploy.store.postgres import PostgresExecutionStore
from tests.support.backends import (
    WAIT_SECONDS,
    Backend,
    claim_and_run,
    claim_for,
    make_claimer,
    make_intake,
    make_worker,
)
from tests.support.factories import make_state
from tests.support.graphs import GatedRunner, StartRecorder
from tests.support.waiting import wait_until_async


def lingering_tasks(before: set[asyncio.Task[Any]]) -> list[str]:
    """Names of tasks alive now that were not alive at `before`, except the current one."""
    alive = asyncio.all_tasks() - before - {asyncio.current_task()}
    return sorted(task.get_name() for task in alive if not task.done())


@pytest.mark.req("LLD-6.1", "LLD-9.1")
@pytest.mark.parametrize(("max_attempts", "expected"), [(3, "QUEUED"), (1, "FAILED")])
async def test_stop_without_grace_hands_back_a_hanging_execution(
    backend: Backend, registry: GraphRegistry, max_attempts: int, expected: str
) -> None:
    """stop(0) is prompt, leaves no task, hands the execution back (FAILED with no attempt left)."""
    before = asyncio.all_tasks()
    graphs = StartRecorder(registry)
    worker = backend.worker(graphs, concurrency=2)
    await worker.start()
    execution_id = await backend.submit(
        worker, graph_id="sleep", input={"seconds": 3600}, max_attempts=max_attempts
    )
    await wait_until_async(graphs.has_started)
    started = time.monotonic()
    await worker.stop(grace_seconds=0)
    assert time.monotonic() - started < 5
    await backend.close_queues()
    assert not [n for n in lingering_tasks(before) if n.startswith("lg-deploy-slot-")]
    assert lingering_tasks(before) == []
    state = await backend.store.get(execution_id)
    assert state is not None
    assert state.status == expected
    assert any("interrupted" in error for error in await backend.recorded_errors(execution_id))
    assert state.attempts == 1
    assert worker.running_ids == []


@pytest.mark.req("LLD-6.1")
async def test_stop_with_grace_lets_a_short_execution_finish(
    backend: Backend, registry: GraphRegistry
) -> None:
    """stop(5) waits for a running 0.5 s execution, which ends COMPLETED."""
    graphs = StartRecorder(registry)
    worker = backend.worker(graphs)
    await worker.start()
    execution_id = await backend.submit(worker, graph_id="sleep", input={"seconds": 0.5})
    await wait_until_async(graphs.has_started)
    started = time.monotonic()
    await worker.stop(grace_seconds=5)
    assert time.monotonic() - started < 4
    state = await backend.store.get(execution_id)
    assert state is not None
    assert state.status == ExecutionStatus.COMPLETED
    assert state.output == {"slept": 0.5}


@pytest.mark.req("LLD-6.1", "CARD-CLAIM")
async def test_stop_right_after_a_claim_hands_the_execution_back(
    backend: Backend, registry: GraphRegistry
) -> None:
    """stop(0) the moment a slot has taken an execution (graph not begun) leaves it QUEUED."""
    worker = backend.worker(registry, concurrency=1)
    await worker.start()
    execution_id = await backend.submit(worker, graph_id="sleep", input={"seconds": 3600})
    while execution_id not in worker.running_ids:
        await asyncio.sleep(0)
    await worker.stop(grace_seconds=0)
    await backend.close_queues()
    state = await backend.store.get(execution_id)
    assert state is not None
    assert state.status == ExecutionStatus.QUEUED, f"left {state.status} by {state.worker_id}"


@pytest.mark.req("LLD-6.1", "LLD-10")
async def test_a_claim_ignores_final_and_foreign_executions(backend: Backend) -> None:
    """A claimer takes neither a final row nor one another worker runs, and changes neither."""
    runner = GatedRunner()
    worker = backend.worker(runner)
    other = backend.worker(runner)
    final_id = (await backend.store.create(make_state())).execution_id
    assert (await claim_and_run(other, final_id)) is not None
    foreign = await backend.store.create(make_state())
    claimed = await claim_for(other, foreign.execution_id)
    runner.calls.clear()
    snapshot = {i: await backend.store.get(i) for i in (final_id, claimed.execution_id)}
    assert (await worker.intake.claimer.claim(10)) == []
    assert runner.calls == []
    assert {i: await backend.store.get(i) for i in snapshot} == snapshot


@pytest.mark.req("LLD-6.1", "LLD-10")
async def test_outcome_refused_when_a_later_attempt_took_over(backend: Backend) -> None:
    """A's completion is refused once the row was recovered and claimed again by worker B."""
    runner = GatedRunner()
    runner.gate.clear()
    worker_a = backend.worker(runner)
    created = await backend.store.create(make_state())
    task = asyncio.create_task(claim_and_run(worker_a, created.execution_id))
    await asyncio.wait_for(runner.started.wait(), WAIT_SECONDS)
    running = await backend.store.get(created.execution_id)
    assert running is not None
    assert running.worker_id == worker_a.worker_id
    recovered = await backend.store.update(
        running.evolve(status=ExecutionStatus.QUEUED, error="lease expired"),
        expected_status=ExecutionStatus.RUNNING,
    )
    taken = await backend.store.update(
        recovered.evolve(
            status=ExecutionStatus.RUNNING,
            attempts=2,
            worker_id="worker-b",
            lease_expires_at=utcnow() + timedelta(seconds=60),
        ),
        expected_status=ExecutionStatus.QUEUED,
    )
    runner.gate.set()
    assert (await asyncio.wait_for(task, WAIT_SECONDS)) is None
    assert (await backend.store.get(created.execution_id)) == taken


@pytest.mark.req("LLD-6.1", "LLD-10", "CARD-GUARD")
async def test_outcome_refused_after_takeover_by_sql(pool: AsyncConnectionPool[Any]) -> None:
    """Changing worker_id and attempts by SQL while A runs makes A's completion a no-op."""
    store, runner = PostgresExecutionStore(pool), GatedRunner()
    runner.gate.clear()
    worker_a = make_worker(store, runner, worker_id="worker-a", pool=pool)
    created = await store.create(make_state())
    task = asyncio.create_task(claim_and_run(worker_a, created.execution_id))
    await asyncio.wait_for(runner.started.wait(), WAIT_SECONDS)
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE lg_deploy.executions SET worker_id = 'worker-b', attempts = 2"
            " WHERE execution_id = %s AND status = 'RUNNING'",
            (created.execution_id,),
        )
    taken = await store.get(created.execution_id)
    runner.gate.set()
    assert (await asyncio.wait_for(task, WAIT_SECONDS)) is None
    after = await store.get(created.execution_id)
    assert after == taken
    assert after is not None
    assert after.status == ExecutionStatus.RUNNING
    assert (after.worker_id, after.attempts, after.output) == ("worker-b", 2, None)


class WaitSpy:
    """A claimer whose `wait` says when it is entered; all else is the wrapped claimer's."""

    def __init__(self, claimer: Claimer) -> None:
        self.claimer = claimer
        self.worker_id = claimer.worker_id
        self.waiting = asyncio.Event()

    async def claim(self, limit: int) -> list[ExecutionState]:
        """Claim through the wrapped claimer."""
        return await self.claimer.claim(limit)

    async def release(self, states: Sequence[ExecutionState]) -> None:
        """Release through the wrapped claimer."""
        await self.claimer.release(states)

    def wake(self) -> None:
        """Wake the wrapped claimer."""
        self.claimer.wake()

    async def wait(self, seconds: float) -> None:
        """Note the wait began, then wait on the wrapped claimer."""
        self.waiting.set()
        await self.claimer.wait(seconds)

    async def close(self) -> None:
        """Close the wrapped claimer."""
        await self.claimer.close()


@pytest.mark.req("DUR-SHUTDOWN")
async def test_an_intake_woken_in_the_step_it_closes_still_closes(backend: Backend) -> None:
    """New rows announced (a NOTIFY of the requeue a stopping run just wrote) as the intake
    closes: close returns and its claim loop ends, instead of the wake swallowing the cancel."""
    claimer = WaitSpy(make_claimer(backend.store, worker_id="test-worker", pool=backend.pool))
    intake = make_intake(claimer, poll_interval_seconds=60)
    asking = asyncio.create_task(intake.dequeue())
    await wait_until_async(claimer.waiting.is_set)
    asking.cancel()
    intake.wake()
    async with asyncio.timeout(5):
        await intake.close()
    assert asking.cancelled()
    await claimer.close()


class LosesFirstCancel:
    """A graph whose first cancel is lost, as Python 3.11's asyncio.wait_for loses one that
    lands as its wait completes (psycopg_pool waits for a connection with it)."""

    def __init__(self) -> None:
        self.lost = 0

    async def execute(self, run: GraphRun) -> GraphOutcome:
        """Wait; swallow the first cancel; wait again."""
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.lost += 1
        await asyncio.sleep(3600)
        return GraphOutcome({"ran": "to the end"})


@pytest.mark.req("DUR-CANCEL")
async def test_a_stop_asked_again_cancels_again_when_the_first_cancel_was_lost(
    backend: Backend,
) -> None:
    """The first stop's cancel is lost inside the graph; the next request (the next lease beat
    reports the cancel again) still stops it: FAILED "cancelled"."""
    graph = LosesFirstCancel()
    worker = backend.worker(graph)
    await worker.start()
    execution_id = await backend.submit(worker, graph_id="anything", input={})
    await wait_until_async(lambda: worker.running_ids == [execution_id])
    await backend.store.request_cancel(execution_id)
    worker.request_stop([execution_id])
    await wait_until_async(lambda: graph.lost == 1)
    worker.request_stop([execution_id])
    state = await backend.final(execution_id)
    assert (state.status, state.error) == (ExecutionStatus.FAILED, "cancelled")
    await worker.stop()
