"""The worker's hot path: claims hand over rows, slots free before recording, cheap checkouts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from starlette.testclient import TestClient

from lg_deploy.db import pool as pool_module
from lg_deploy.db.listener import (
    CANCEL_CHANNEL,
    FINISHED_CHANNEL,
    QUEUED_CHANNEL,
    WEBHOOKS_CHANNEL,
)
from lg_deploy.db.pool import open_pool
from lg_deploy.errors import LgDeployError
from lg_deploy.graphs import DEFAULT_GRAPHS, GraphRegistry
from lg_deploy.http import create_app
from lg_deploy.models import ExecutionState, ExecutionStatus, Finish
from lg_deploy.runtime import open_runtime
from lg_deploy.settings import load_settings
from lg_deploy.store import PostgresExecutionStore
from lg_deploy.store.protocol import ExecutionStore
from lg_deploy.worker import ExecutionWorker
from tests.support.backends import make_worker
from tests.support.factories import make_state
from tests.support.waiting import wait_until_async

COMPLETED, RUNNING = ExecutionStatus.COMPLETED, ExecutionStatus.RUNNING


class CountingStore:
    """Wraps a store: counts `get` calls; holds finish_running while `gate` is clear."""

    def __init__(self, inner: ExecutionStore) -> None:
        self.inner = inner
        self.gets = 0
        self.gate = asyncio.Event()
        self.gate.set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def get(self, execution_id: str) -> ExecutionState | None:
        """Count, then read."""
        self.gets += 1
        return await self.inner.get(execution_id)

    async def finish_running(
        self, worker_id: str, finishes: Sequence[Finish]
    ) -> list[ExecutionState | LgDeployError]:
        """Wait at the gate, then write."""
        await self.gate.wait()
        return await self.inner.finish_running(worker_id, finishes)


@pytest.fixture
async def running_worker(
    pool: AsyncConnectionPool[Any], request: pytest.FixtureRequest
) -> AsyncIterator[tuple[ExecutionWorker, CountingStore]]:
    """A started worker (concurrency from the test's `concurrency` mark) over a counting store."""
    mark = request.node.get_closest_marker("concurrency")
    store = CountingStore(PostgresExecutionStore(pool))
    registry = GraphRegistry(DEFAULT_GRAPHS)
    registry.load_all()
    worker = make_worker(
        store,  # type: ignore[arg-type]
        registry,
        worker_id="w",
        pool=pool,
        poll_interval_seconds=0.05,
        concurrency=mark.args[0] if mark else 4,
    )
    await worker.start()
    try:
        yield worker, store
    finally:
        store.gate.set()
        await worker.stop()
        await worker.intake.claimer.close()


async def _status(store: ExecutionStore, execution_id: str) -> ExecutionStatus | None:
    state = await store.get(execution_id)
    return state.status if state else None


@pytest.mark.req("PERF-CLAIM")
async def test_claimed_executions_start_without_being_read_again(
    running_worker: tuple[ExecutionWorker, CountingStore],
) -> None:
    """20 executions complete and the worker never calls store.get: the claim handed the rows."""
    _worker, store = running_worker
    ids = [(await store.inner.create(make_state(input={"i": i}))).execution_id for i in range(20)]

    async def all_done() -> bool:
        states = [await store.inner.get(i) for i in ids]
        return all(s is not None and s.status == COMPLETED for s in states)

    await wait_until_async(all_done, timeout=20)
    assert store.gets == 0
    outputs = [(await store.inner.get(i)) for i in ids]
    assert [state.output for state in outputs if state] == [{"i": i} for i in range(20)]


@pytest.mark.req("PERF-CLAIM")
@pytest.mark.concurrency(1)
async def test_a_slot_starts_the_next_execution_while_the_last_outcome_is_written(
    running_worker: tuple[ExecutionWorker, CountingStore],
) -> None:
    """Concurrency 1, first outcome write held: the second execution is claimed and run anyway."""
    worker, store = running_worker
    store.gate.clear()
    first = (await store.inner.create(make_state(input={"n": 1}))).execution_id
    await wait_until_async(lambda: first in worker.running_ids, timeout=10)
    second = (await store.inner.create(make_state(input={"n": 2}))).execution_id
    await wait_until_async(lambda: second in worker.running_ids, timeout=10)
    assert await _status(store.inner, first) == RUNNING  # its outcome is still at the gate
    store.gate.set()

    async def both_done() -> bool:
        return [await _status(store.inner, i) for i in (first, second)] == [COMPLETED] * 2

    await wait_until_async(both_done, timeout=10)


@pytest.mark.req("PERF-POOL")
async def test_only_connections_idle_a_while_are_checked_on_checkout(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """New: checked; just returned: not checked; idle past the limit: checked again."""
    checks: list[int] = []
    real_check = AsyncConnectionPool.check_connection

    async def counting_check(conn: psycopg.AsyncConnection[Any]) -> None:
        checks.append(1)
        await real_check(conn)

    monkeypatch.setattr(AsyncConnectionPool, "check_connection", staticmethod(counting_check))
    monkeypatch.setattr(pool_module, "CHECK_IDLE_SECONDS", 0.3)
    pool = await open_pool(db_url, min_size=1, max_size=1)
    try:
        for expected in (1, 1, 1):
            async with pool.connection() as conn:
                await conn.execute("SELECT 1")
            assert len(checks) == expected
        await asyncio.sleep(0.5)
        async with pool.connection() as conn:
            await conn.execute("SELECT 1")
        assert len(checks) == 2
    finally:
        await pool.close()


@pytest.mark.req("PERF-NOTIFY")
def test_a_submit_through_the_api_sends_one_notification(db_url: str) -> None:
    """POST /executions on PostgreSQL of a run due now: the insert trigger's NOTIFY is the only
    one on the queued channel (claiming and finishing it send none there)."""
    settings = load_settings(
        {
            "LG_DEPLOY_DATABASE_URL": db_url,
            "LG_DEPLOY_WORKER_CONCURRENCY": "1",
            "LG_DEPLOY_SHUTDOWN_GRACE_SECONDS": "0",
        }
    )
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute(f"LISTEN {QUEUED_CHANNEL}")
        with TestClient(create_app(settings)) as client:
            body = {"graph_id": "echo", "input": {"a": 1}}
            answer = client.post("/executions", json=body)
            assert answer.status_code == 202, answer.text
            got = list(listener.notifies(timeout=1.0))
    assert [(n.channel, n.payload) for n in got] == [(QUEUED_CHANNEL, "")]


@pytest.mark.req("PERF-LISTEN")
async def test_a_worker_without_http_waits_does_not_listen_for_finished_runs(db_url: str) -> None:
    """`lg-deploy worker` skips the finished channel (a NOTIFY per outcome batch, all unused) and
    keeps those it acts on: queued runs, cancels, and webhook deliveries to send."""
    settings = load_settings(
        {"LG_DEPLOY_DATABASE_URL": db_url, "LG_DEPLOY_SHUTDOWN_GRACE_SECONDS": "0"}
    )
    async with open_runtime(settings, finish_notices=False) as worker_only:
        assert worker_only.listener is not None
        assert worker_only.listener.channels == (QUEUED_CHANNEL, CANCEL_CHANNEL, WEBHOOKS_CHANNEL)
    async with open_runtime(settings) as serving:
        assert serving.listener is not None
        assert FINISHED_CHANNEL in serving.listener.channels
