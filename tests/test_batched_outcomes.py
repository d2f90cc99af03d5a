"""Outcomes in batches: finish_running on both stores, and the OutcomeWriter's group commit."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from lg_deploy.errors import InvalidTransition, LgDeployError
from lg_deploy.models import ExecutionState, Finish
from lg_deploy.store import InMemoryExecutionStore, PostgresExecutionStore
from lg_deploy.store.protocol import ExecutionStore
from lg_deploy.worker.outcomes import OutcomeWriter
from tests.support.factories import COMPLETED, FAILED, QUEUED, RUNNING, bring_to


def done(state: ExecutionState, **changes: Any) -> Finish:
    """A COMPLETED finish of `state` (worker-a's run, unless `state` says otherwise)."""
    return Finish(state, COMPLETED, output=changes.pop("output", {"done": True}), **changes)


@pytest.mark.req("PERF-BATCH")
async def test_finish_running_stores_each_and_refuses_only_the_impostor(
    store: ExecutionStore,
) -> None:
    """Three outcomes in one call: two stored, the one of a stale attempt refused alone."""
    rows = [await bring_to(store, RUNNING) for _ in range(3)]
    wanted = [
        done(rows[0], output={"i": 0}),
        Finish(rows[1], FAILED, error="boom"),
        done(rows[2].model_copy(update={"attempts": 2})),  # attempt 2 does not own attempt 1's
    ]
    results = await store.finish_running("worker-a", wanted)
    assert isinstance(results[0], ExecutionState)
    assert results[0].output == {"i": 0}
    assert isinstance(results[1], ExecutionState)
    assert results[1].error == "boom"
    assert isinstance(results[2], InvalidTransition)
    assert [await store.get(row.execution_id) for row in rows] == [*results[:2], rows[2]]
    assert all(r.finished_at is not None for r in results[:2] if isinstance(r, ExecutionState))


@pytest.mark.req("PERF-BATCH")
async def test_finish_running_refuses_a_row_that_is_not_running(
    store: ExecutionStore,
) -> None:
    """A QUEUED row, or another worker's, is refused; the rows stay as they were."""
    queued = await bring_to(store, QUEUED)
    running = await bring_to(store, RUNNING)
    results = await store.finish_running("worker-b", [done(queued), done(running)])
    assert isinstance(results[0], InvalidTransition)
    assert isinstance(results[1], InvalidTransition)  # worker-a holds it, not worker-b
    assert (await store.get(queued.execution_id)) == queued
    assert (await store.get(running.execution_id)) == running


@pytest.mark.req("PERF-BATCH")
async def test_an_outcome_copy_keeps_the_row_invariants(store: ExecutionStore) -> None:
    """`advance` (the worker's cheap copy) equals `evolve`, and refuses what the table would."""
    running = await bring_to(store, RUNNING)
    assert running.advance(status=COMPLETED, output={"a": 1}) == running.evolve(
        status=COMPLETED, output={"a": 1}
    )
    with pytest.raises(ValueError, match="must have attempts left"):
        running.advance(status=QUEUED, max_attempts=running.attempts)


@pytest.mark.req("PERF-BATCH")
@pytest.mark.parametrize(
    "spoil",
    [
        lambda state: Finish(state, FAILED, error="boom", traceback="x" * 70_000),
        lambda state: Finish(state, FAILED, error="bad\x00byte"),
    ],
    ids=["check-constraint", "nul-in-text"],
)
async def test_a_row_the_database_refuses_does_not_sink_its_batch(
    pool: AsyncConnectionPool[Any], spoil: Callable[[ExecutionState], Finish]
) -> None:
    """A row a CHECK or a text value refuses is refused alone; its batch-mate is stored."""
    store = PostgresExecutionStore(pool)
    good, bad = await bring_to(store, RUNNING), await bring_to(store, RUNNING)
    results = await store.finish_running("worker-a", [done(good), spoil(bad)])
    assert isinstance(results[0], ExecutionState)
    assert results[0].status == COMPLETED
    assert isinstance(results[1], InvalidTransition)
    assert (await store.get(bad.execution_id)) == bad


class GatedStore:
    """Wraps a store: records each finish_running batch; the first waits until `gate` is set."""

    def __init__(self, inner: ExecutionStore, error: Exception | None = None) -> None:
        self.inner = inner
        self.batches: list[list[str]] = []
        self.gate = asyncio.Event()
        self.error = error

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def finish_running(
        self, worker_id: str, finishes: Sequence[Finish]
    ) -> list[ExecutionState | LgDeployError]:
        """Record the batch; hold the first one at the gate; fail when told to."""
        self.batches.append([finish.running.execution_id for finish in finishes])
        if len(self.batches) == 1:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        return await self.inner.finish_running(worker_id, finishes)


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.mark.req("PERF-BATCH")
async def test_outcomes_arriving_during_a_write_share_the_next_statement() -> None:
    """The first outcome is written alone at once; the 5 that wait behind it go as one batch."""
    inner = InMemoryExecutionStore()
    gated = GatedStore(inner)
    writer = OutcomeWriter(gated, "worker-a")  # type: ignore[arg-type]
    rows = [await bring_to(inner, RUNNING) for _ in range(6)]
    first = asyncio.create_task(writer.write(done(rows[0])))
    await _settle()
    rest = [asyncio.create_task(writer.write(done(row))) for row in rows[1:]]
    await _settle()
    assert gated.batches == [[rows[0].execution_id]]
    gated.gate.set()
    stored = await asyncio.gather(first, *rest)
    assert gated.batches == [[rows[0].execution_id], [row.execution_id for row in rows[1:]]]
    assert [state.status for state in stored] == [COMPLETED] * 6


@pytest.mark.req("PERF-BATCH")
async def test_a_cancelled_wait_withdraws_an_outcome_not_yet_sent() -> None:
    """An outcome still waiting for its batch is dropped when its caller gives up."""
    inner = InMemoryExecutionStore()
    gated = GatedStore(inner)
    writer = OutcomeWriter(gated, "worker-a")  # type: ignore[arg-type]
    sent, withdrawn = await bring_to(inner, RUNNING), await bring_to(inner, RUNNING)
    first = asyncio.create_task(writer.write(done(sent)))
    await _settle()
    second = asyncio.create_task(writer.write(done(withdrawn)))
    await _settle()
    second.cancel()
    gated.gate.set()
    assert (await first).status == COMPLETED
    with pytest.raises(asyncio.CancelledError):
        await second
    await _settle()
    assert gated.batches == [[sent.execution_id]]
    assert (await inner.get(withdrawn.execution_id)) == withdrawn


@pytest.mark.req("PERF-BATCH")
async def test_refusals_and_errors_reach_each_waiter() -> None:
    """A refused outcome raises its own InvalidTransition; a failed statement raises in all."""
    inner = InMemoryExecutionStore()
    writer = OutcomeWriter(inner, "impostor")  # worker-a holds the row
    running = await bring_to(inner, RUNNING)
    with pytest.raises(InvalidTransition):
        await writer.write(done(running))
    broken = GatedStore(inner, error=OSError("database away"))
    broken.gate.set()
    failing = OutcomeWriter(broken, "worker-a")  # type: ignore[arg-type]
    results = await asyncio.gather(
        failing.write(done(running)),
        failing.write(done(await bring_to(inner, RUNNING))),
        return_exceptions=True,
    )
    assert [type(result) for result in results] == [OSError, OSError]
    assert (await inner.get(running.execution_id)) == running
