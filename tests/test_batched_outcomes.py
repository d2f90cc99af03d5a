"""Outcomes in batches: store.update_many on both stores, and the OutcomeWriter's group commit."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from lg_deploy.errors import InvalidTransition, LgDeployError
from lg_deploy.models import ExecutionState, ExecutionStatus
from lg_deploy.outcomes import OutcomeWriter
from lg_deploy.store import InMemoryExecutionStore, PostgresExecutionStore
from lg_deploy.store.protocol import ExecutionStore
from tests.support.factories import COMPLETED, FAILED, QUEUED, RUNNING, bring_to, moved


@pytest.mark.req("PERF-BATCH")
async def test_update_many_stores_each_and_refuses_only_the_impostor(store: ExecutionStore) -> None:
    """Three outcomes in one call: two stored, the one of a stale attempt refused alone."""
    rows = [await bring_to(store, RUNNING) for _ in range(3)]
    wanted = [
        moved(rows[0], COMPLETED, output={"i": 0}),
        moved(rows[1], FAILED, error="boom"),
        moved(rows[2], COMPLETED, attempts=2),  # attempt 2 does not own attempt 1's run
    ]
    results = await store.update_many(wanted, expected_status=RUNNING)
    assert isinstance(results[0], ExecutionState)
    assert results[0].output == {"i": 0}
    assert isinstance(results[1], ExecutionState)
    assert results[1].error == "boom"
    assert isinstance(results[2], InvalidTransition)
    assert [await store.get(row.execution_id) for row in rows] == [*results[:2], rows[2]]
    assert all(r.finished_at is not None for r in results[:2] if isinstance(r, ExecutionState))


@pytest.mark.req("PERF-BATCH")
async def test_update_many_refuses_a_transition_the_lifecycle_forbids(
    store: ExecutionStore,
) -> None:
    """QUEUED -> COMPLETED in a batch is refused for that row; the other row is stored."""
    queued = await bring_to(store, QUEUED)
    running = await bring_to(store, RUNNING)
    results = await store.update_many(
        [moved(queued, COMPLETED), moved(running, COMPLETED)], expected_status=QUEUED
    )
    assert isinstance(results[0], InvalidTransition)
    assert isinstance(results[1], InvalidTransition)  # it is RUNNING, not QUEUED
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


def _exhausted(state: ExecutionState) -> ExecutionState:
    """QUEUED with no attempts left: the model refuses it, so it is copied unvalidated."""
    return state.model_copy(update={"status": QUEUED, "max_attempts": state.attempts})


@pytest.mark.req("PERF-BATCH")
@pytest.mark.parametrize(
    "spoil",
    [_exhausted, lambda state: moved(state, FAILED, error="bad\x00byte")],
    ids=["check-constraint", "nul-in-text"],
)
async def test_a_row_the_database_refuses_does_not_sink_its_batch(
    pool: AsyncConnectionPool[Any], spoil: Callable[[ExecutionState], ExecutionState]
) -> None:
    """A row a CHECK or a text value refuses is refused alone; its batch-mate is stored."""
    store = PostgresExecutionStore(pool)
    good, bad = await bring_to(store, RUNNING), await bring_to(store, RUNNING)
    results = await store.update_many([moved(good, COMPLETED), spoil(bad)], expected_status=RUNNING)
    assert isinstance(results[0], ExecutionState)
    assert results[0].status == COMPLETED
    assert isinstance(results[1], InvalidTransition)
    assert (await store.get(bad.execution_id)) == bad


class GatedStore:
    """Wraps a store: records each update_many batch; the first waits until `gate` is set."""

    def __init__(self, inner: ExecutionStore, error: Exception | None = None) -> None:
        self.inner = inner
        self.batches: list[list[str]] = []
        self.gate = asyncio.Event()
        self.error = error

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def update_many(
        self, states: Sequence[ExecutionState], *, expected_status: ExecutionStatus
    ) -> list[ExecutionState | LgDeployError]:
        """Record the batch; hold the first one at the gate; fail when told to."""
        self.batches.append([state.execution_id for state in states])
        if len(self.batches) == 1:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        return await self.inner.update_many(states, expected_status=expected_status)


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.mark.req("PERF-BATCH")
async def test_outcomes_arriving_during_a_write_share_the_next_statement() -> None:
    """The first outcome is written alone at once; the 5 that wait behind it go as one batch."""
    inner = InMemoryExecutionStore()
    gated = GatedStore(inner)
    writer = OutcomeWriter(gated)  # type: ignore[arg-type]
    rows = [await bring_to(inner, RUNNING) for _ in range(6)]
    first = asyncio.create_task(writer.update(moved(rows[0], COMPLETED)))
    await _settle()
    rest = [asyncio.create_task(writer.update(moved(row, COMPLETED))) for row in rows[1:]]
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
    writer = OutcomeWriter(gated)  # type: ignore[arg-type]
    sent, withdrawn = await bring_to(inner, RUNNING), await bring_to(inner, RUNNING)
    first = asyncio.create_task(writer.update(moved(sent, COMPLETED)))
    await _settle()
    second = asyncio.create_task(writer.update(moved(withdrawn, COMPLETED)))
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
    writer = OutcomeWriter(inner)
    running = await bring_to(inner, RUNNING)
    with pytest.raises(InvalidTransition):
        await writer.update(moved(running, COMPLETED, worker_id="impostor"))
    broken = GatedStore(inner, error=OSError("database away"))
    broken.gate.set()
    failing = OutcomeWriter(broken)  # type: ignore[arg-type]
    results = await asyncio.gather(
        failing.update(moved(running, COMPLETED)),
        failing.update(moved(await bring_to(inner, RUNNING), COMPLETED)),
        return_exceptions=True,
    )
    assert [type(result) for result in results] == [OSError, OSError]
    assert (await inner.get(running.execution_id)) == running
