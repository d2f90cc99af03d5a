"""Assembles store, queue, listener and worker for a backend, and tears them down in reverse."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from psycopg_pool import AsyncConnectionPool

from lg_deploy.checkpoints import memory_checkpointer, postgres_checkpointer
from lg_deploy.db.embedded import start_embedded
from lg_deploy.db.migrations import migrate
from lg_deploy.db.pool import open_pool
from lg_deploy.fleet import Fleet
from lg_deploy.graphs import DEFAULT_GRAPHS, GraphRegistry
from lg_deploy.leases import BlockingRenewal
from lg_deploy.loopwatch import LoopWatch
from lg_deploy.metrics import Metrics
from lg_deploy.models import ExecutionState, ExecutionStatus, UnservedGraph
from lg_deploy.queue.listener import CANCEL_CHANNEL, CHANNELS, FINISHED_CHANNEL, Listener
from lg_deploy.queue.memory import AsyncioExecutionQueue
from lg_deploy.queue.postgres import PostgresExecutionQueue
from lg_deploy.queue.protocol import ClaimingQueue, ExecutionQueue
from lg_deploy.retention import retention_loop
from lg_deploy.retry import RetryPolicy
from lg_deploy.settings import Settings
from lg_deploy.store.memory import InMemoryExecutionStore
from lg_deploy.store.postgres import PostgresExecutionStore, renew_leases_blocking
from lg_deploy.store.protocol import ExecutionStore
from lg_deploy.worker import ExecutionWorker, make_worker_id

logger = logging.getLogger(__name__)


@dataclass
class Runtime:
    """The live parts of one lg-deploy process."""

    settings: Settings
    store: ExecutionStore
    queue: ExecutionQueue
    graphs: GraphRegistry
    worker: ExecutionWorker
    pool: AsyncConnectionPool[Any] | None = None
    listener: Listener | None = None
    conninfo: str | None = None
    fleet: Fleet | None = None
    claiming: ClaimingQueue | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Asked once: isinstance against a runtime-checkable protocol costs microseconds.
        self.claiming = self.queue if isinstance(self.queue, ClaimingQueue) else None

    async def announce(self, execution_id: str) -> None:
        """Wake a worker for an execution just stored as QUEUED.

        A claiming queue already holds the row (in PostgreSQL the insert trigger has notified
        every process), so only this process's claimer is nudged; a memory queue gets the id.
        """
        if self.claiming is not None:
            self.claiming.wake()
        else:
            await self.queue.enqueue(execution_id)

    async def unserved_graphs(self) -> list[UnservedGraph]:
        """Graphs with QUEUED executions no live worker serves (none without a fleet)."""
        return await self.fleet.unserved() if self.fleet is not None else []

    async def cancel(self, execution_id: str) -> ExecutionState:
        """Cancel: QUEUED fails at once; RUNNING is stopped by its worker (NOTIFY, or here)."""
        state = await self.store.request_cancel(execution_id)
        if state.status == ExecutionStatus.RUNNING:
            # Here at once if this process runs it; other workers learn of it by NOTIFY or at
            # their next lease renewal.
            self.worker.request_stop([execution_id])
        return state


def build_registry(
    settings: Settings,
    cwd: Path | None = None,
    checkpointer: BaseCheckpointSaver[Any] | None = None,
) -> GraphRegistry:
    """The configured graphs, or the shipped examples when none are configured."""
    specs = settings.graphs if settings.graphs else DEFAULT_GRAPHS
    base_dir = settings.config.resolve().parent if settings.config else cwd or Path(os.getcwd())
    registry = GraphRegistry(specs, base_dir=base_dir, checkpointer=checkpointer)
    registry.load_all()
    return registry


def resolve_conninfo(settings: Settings, stack: contextlib.ExitStack) -> str:
    """The database URL, starting the embedded server when none is configured."""
    if settings.database_url:
        return settings.database_url
    conninfo, server = start_embedded(settings.data_dir)
    stack.callback(server.cleanup)
    return conninfo


@contextlib.asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    graphs: GraphRegistry | None = None,
    metrics: Metrics | None = None,
    finish_notices: bool = True,
) -> AsyncIterator[Runtime]:
    """Open every part for `settings.backend`, start the worker, and close all in reverse order.

    `finish_notices=False` (a worker without HTTP waits) does not LISTEN for finished runs.
    """
    if settings.backend == "memory":
        saver = memory_checkpointer() if settings.checkpoints else None
        registry = graphs or build_registry(settings, checkpointer=saver)
        store, queue = InMemoryExecutionStore(), AsyncioExecutionQueue()
        async with runtime_over(settings, store, queue, graphs=registry, metrics=metrics) as rt:
            yield rt
        return
    with contextlib.ExitStack() as stack:
        conninfo = resolve_conninfo(settings, stack)
        if settings.migrate_on_start:
            await migrate(conninfo)
        async with contextlib.AsyncExitStack() as async_stack:
            saver = None
            if settings.checkpoints:
                saver = await async_stack.enter_async_context(postgres_checkpointer(conninfo))
            registry = graphs or build_registry(settings, checkpointer=saver)
            channels = CHANNELS if finish_notices else _without(CHANNELS, FINISHED_CHANNEL)
            async with _postgres_runtime(
                settings, registry, conninfo, metrics, channels
            ) as runtime:
                yield runtime


@contextlib.asynccontextmanager
async def runtime_over(
    settings: Settings,
    store: ExecutionStore,
    queue: ExecutionQueue,
    *,
    graphs: GraphRegistry | None = None,
    metrics: Metrics | None = None,
) -> AsyncIterator[Runtime]:
    """A runtime over a given store and queue (memory backend, tests' fakes), worker running."""
    registry = graphs or build_registry(settings)
    worker = _make_worker(settings, store, queue, registry, make_worker_id(), metrics)
    async with _running(worker, settings, metrics):
        yield Runtime(settings, store, queue, registry, worker)


@contextlib.asynccontextmanager
async def _postgres_runtime(
    settings: Settings,
    registry: GraphRegistry,
    conninfo: str,
    metrics: Metrics | None,
    channels: tuple[str, ...],
) -> AsyncIterator[Runtime]:
    pool = await open_pool(
        conninfo,
        max_size=settings.pool_max_size,
        timeout_seconds=settings.pool_timeout_seconds,
        prepared_statements=settings.prepared_statements,
    )
    listener = Listener(conninfo, channels) if settings.listen else None
    worker_id = make_worker_id()
    store = PostgresExecutionStore(pool)
    queue = PostgresExecutionQueue(
        pool,
        worker_id=worker_id,
        graph_ids=registry.names(),
        listener=listener,
        lease_seconds=settings.lease_seconds,
        poll_interval_seconds=settings.poll_interval_seconds,
        claim_ahead=settings.claim_ahead,
    )
    worker = _make_worker(
        settings,
        store,
        queue,
        registry,
        worker_id,
        metrics,
        blocking_renewal=functools.partial(renew_leases_blocking, conninfo),
    )
    if listener is not None:
        # Only a hint (anyone may NOTIFY): the worker asks the database which runs to stop.
        listener.subscribe(CANCEL_CHANNEL, lambda _payload: worker.check_cancellations())
    retention = retention_loop(
        pool, settings.retention_seconds, settings.retention_interval_seconds
    )
    fleet = Fleet(
        pool,
        worker_id=worker_id,
        graph_ids=registry.names(),
        concurrency=settings.worker_concurrency,
        ttl_seconds=settings.lease_seconds,
        fail_never_served_after_seconds=settings.unserved_graph_seconds,
    )
    try:
        if listener is not None:
            await listener.start()
        try:
            await fleet.start()
            async with _running(worker, settings, metrics), retention:
                yield Runtime(
                    settings, store, queue, registry, worker, pool, listener, conninfo, fleet
                )
        finally:
            await queue.close()
            await fleet.stop()
            if listener is not None:
                await listener.stop()
    finally:
        await pool.close()


def _without(channels: tuple[str, ...], unwanted: str) -> tuple[str, ...]:
    return tuple(channel for channel in channels if channel != unwanted)


def _make_worker(
    settings: Settings,
    store: ExecutionStore,
    queue: ExecutionQueue,
    registry: GraphRegistry,
    worker_id: str,
    metrics: Metrics | None,
    *,
    blocking_renewal: BlockingRenewal | None = None,
) -> ExecutionWorker:
    return ExecutionWorker(
        store,
        queue,
        registry,
        concurrency=settings.worker_concurrency,
        worker_id=worker_id,
        lease_seconds=settings.lease_seconds,
        recovery_interval_seconds=settings.recovery_interval_seconds,
        execution_timeout_seconds=settings.execution_timeout_seconds,
        retry=RetryPolicy(
            retry_on_error=settings.retry_on_error,
            backoff_seconds=settings.retry_backoff_seconds,
            backoff_max_seconds=settings.retry_backoff_max_seconds,
        ),
        metrics=metrics,
        blocking_renewal=blocking_renewal,
    )


@contextlib.asynccontextmanager
async def _running(
    worker: ExecutionWorker, settings: Settings, metrics: Metrics | None
) -> AsyncIterator[None]:
    """The worker running, with the event loop watched while it does."""
    watch = LoopWatch(
        running=lambda: worker.graph_running_ids,
        warn_seconds=settings.loop_warn_seconds,
        metrics=metrics,
        on_stall=worker.leases.renew_stalled,
    )
    watch.start()
    await worker.start()
    try:
        yield
    finally:
        await worker.stop(settings.shutdown_grace_seconds)
        await watch.stop()
