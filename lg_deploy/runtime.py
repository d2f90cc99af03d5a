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

import psycopg
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.base import BaseStore
from psycopg_pool import AsyncConnectionPool

from lg_deploy.assistants.memory import InMemoryAssistantStore
from lg_deploy.assistants.postgres import PostgresAssistantStore
from lg_deploy.assistants.protocol import AssistantStore
from lg_deploy.checkpoints import memory_checkpointer, postgres_checkpointer
from lg_deploy.crons.store import PostgresCronStore
from lg_deploy.crons.ticker import cron_loop
from lg_deploy.db.embedded import start_embedded
from lg_deploy.db.listener import (
    CANCEL_CHANNEL,
    CHANNELS,
    EVENTS_CHANNEL,
    FINISHED_CHANNEL,
    Listener,
)
from lg_deploy.db.migrations import migrate
from lg_deploy.db.pool import open_pool
from lg_deploy.fleet import Fleet
from lg_deploy.graphs import DEFAULT_GRAPHS, GraphRegistry
from lg_deploy.item_store import memory_item_store, postgres_item_store
from lg_deploy.loopwatch import LoopWatch
from lg_deploy.metrics import Metrics
from lg_deploy.models import CancelAction, ExecutionState, ExecutionStatus, UnservedGraph
from lg_deploy.queue.memory import MemoryClaimer
from lg_deploy.queue.postgres import PostgresClaimer
from lg_deploy.queue.protocol import Claimer
from lg_deploy.retention import retention_loop
from lg_deploy.settings import Settings
from lg_deploy.store.memory import InMemoryExecutionStore
from lg_deploy.store.postgres import PostgresExecutionStore, renew_leases_blocking
from lg_deploy.store.protocol import ExecutionStore
from lg_deploy.streams.hub import StreamHub
from lg_deploy.streams.memory import InMemoryEventLog
from lg_deploy.streams.postgres import PostgresEventLog
from lg_deploy.streams.protocol import EventLog
from lg_deploy.threads.memory import InMemoryThreadStore
from lg_deploy.threads.postgres import PostgresThreadStore
from lg_deploy.threads.protocol import ThreadStore
from lg_deploy.webhooks.running import Webhooks, open_webhooks
from lg_deploy.worker import ExecutionWorker, GraphRunner, make_worker_id
from lg_deploy.worker.intake import Intake
from lg_deploy.worker.leases import BlockingRenewal
from lg_deploy.worker.retry import RetryPolicy

logger = logging.getLogger(__name__)


@dataclass
class Runtime:
    """The live parts of one lg-deploy process."""

    settings: Settings
    store: ExecutionStore
    graphs: GraphRegistry
    worker: ExecutionWorker
    pool: AsyncConnectionPool[Any] | None = None
    listener: Listener | None = None
    fleet: Fleet | None = None
    threads: ThreadStore = field(default_factory=InMemoryThreadStore)
    assistants: AssistantStore = field(default_factory=InMemoryAssistantStore)
    events: EventLog | None = None
    hub: StreamHub = field(default_factory=StreamHub)
    item_store: BaseStore | None = None  # LangGraph's store (/store, get_store()); None: no tables
    crons: PostgresCronStore | None = None  # None: the memory backend keeps no crons
    webhooks: Webhooks | None = None  # None: the memory backend sends no webhooks

    def announce(self, stored: ExecutionState | None = None) -> None:
        """An execution was just stored as QUEUED: this process's claimer claims now, unless
        `stored` is due later (its run_at after its creation, both the database's clock): the
        poll finds it when due, and a claim now would find nothing.

        Other processes learn of it by NOTIFY (the insert trigger sends it) or at their poll.
        """
        if stored is None or stored.run_at <= stored.created_at:
            self.worker.wake()

    async def unserved_graphs(self) -> list[UnservedGraph]:
        """Graphs with QUEUED executions no live worker serves (none without a fleet)."""
        return await self.fleet.unserved() if self.fleet is not None else []

    async def cancel(self, execution_id: str, action: CancelAction = "interrupt") -> ExecutionState:
        """Cancel: QUEUED fails at once; RUNNING is stopped by its worker (NOTIFY, or here).
        A rollback is then forgotten, with the checkpoints it wrote."""
        state = await self.store.request_cancel(execution_id, action)
        if state.status == ExecutionStatus.RUNNING:
            # Here at once if this process runs it; other workers learn of it by NOTIFY or at
            # their next lease renewal.
            self.worker.request_stop([execution_id])
        return state

    async def stop_cancelled(self, thread_id: str) -> None:
        """Stop at once the runs of a thread this process runs that were asked to stop (other
        workers learn of them by NOTIFY or at their next lease renewal)."""
        runs = await self.store.list_thread_runs(thread_id, status=ExecutionStatus.RUNNING)
        self.worker.request_stop([r.execution_id for r in runs if r.cancel_requested_at])


def build_registry(
    settings: Settings,
    cwd: Path | None = None,
    checkpointer: BaseCheckpointSaver[Any] | None = None,
    thread_checkpointer: BaseCheckpointSaver[Any] | None = None,
    store: BaseStore | None = None,
) -> GraphRegistry:
    """The configured graphs, or the shipped examples when none are configured.

    `checkpointer` is used for thread-less runs only when LG_DEPLOY_CHECKPOINTS is on;
    runs on a thread always use `thread_checkpointer`. Every graph is given `store`.
    """
    specs = settings.graphs if settings.graphs else DEFAULT_GRAPHS
    base_dir = settings.config.resolve().parent if settings.config else cwd or Path(os.getcwd())
    registry = GraphRegistry(
        specs,
        base_dir=base_dir,
        checkpointer=checkpointer if settings.checkpoints else None,
        thread_checkpointer=thread_checkpointer or checkpointer,
        store=store,
    )
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
        kept = memory_item_store()
        registry = graphs or build_registry(
            settings, checkpointer=memory_checkpointer(), store=kept
        )
        store = InMemoryExecutionStore()
        opened = runtime_over(settings, store, graphs=registry, metrics=metrics, item_store=kept)
        async with opened as rt:
            yield rt
        return
    with contextlib.ExitStack() as stack:
        conninfo = resolve_conninfo(settings, stack)
        if settings.migrate_on_start:
            await migrate(conninfo)
        async with contextlib.AsyncExitStack() as async_stack:
            saver = await _open_checkpointer(async_stack, conninfo, settings)
            items = await _open_item_store(async_stack, conninfo, settings)
            registry = graphs or build_registry(settings, checkpointer=saver, store=items)
            channels: tuple[str, ...] = CHANNELS
            if not finish_notices:  # a worker alone waits for no run and streams to nobody
                channels = _without(_without(CHANNELS, FINISHED_CHANNEL), EVENTS_CHANNEL)
            async with _postgres_runtime(
                settings, registry, conninfo, metrics, channels
            ) as runtime:
                runtime.item_store = items
                yield runtime


async def _open_checkpointer(
    stack: contextlib.AsyncExitStack, conninfo: str, settings: Settings
) -> BaseCheckpointSaver[Any] | None:
    """LangGraph's Postgres checkpointer, which runs on a thread always need.

    A role that may not create its tables (before the owner has) still starts when
    LG_DEPLOY_CHECKPOINTS is off: thread-less runs need none, runs on a thread then fail saying so.
    """
    try:
        return await stack.enter_async_context(postgres_checkpointer(conninfo))
    except psycopg.errors.InsufficientPrivilege as error:
        if settings.checkpoints:
            raise
        logger.warning(
            "checkpoint tables missing and this role may not create them (%s): runs on a"
            " thread will fail until the owner starts lg-deploy once",
            str(error).splitlines()[0],
        )
        return None


async def _open_item_store(
    stack: contextlib.AsyncExitStack, conninfo: str, settings: Settings
) -> BaseStore | None:
    """LangGraph's Postgres store; None (the /store routes answer 503, get_store() fails) for
    a role that may not create its tables before the owner has."""
    try:
        return await stack.enter_async_context(postgres_item_store(conninfo, settings))
    except psycopg.errors.InsufficientPrivilege as error:
        logger.warning(
            "store tables missing and this role may not create them (%s): the store is"
            " unavailable until the owner starts lg-deploy once",
            str(error).splitlines()[0],
        )
        return None


@contextlib.asynccontextmanager
async def runtime_over(
    settings: Settings,
    store: InMemoryExecutionStore,
    *,
    graphs: GraphRegistry | None = None,
    metrics: Metrics | None = None,
    item_store: BaseStore | None = None,
) -> AsyncIterator[Runtime]:
    """A runtime over a given memory store (the memory backend, tests' fakes), worker running;
    LangGraph's store is `item_store`, or a new InMemoryStore."""
    items = memory_item_store() if item_store is None else item_store
    registry = graphs or build_registry(settings, store=items)
    claimer = MemoryClaimer(store, worker_id=make_worker_id(), lease_seconds=settings.lease_seconds)
    hub = StreamHub()
    events = InMemoryEventLog(store, hub.notify)
    worker = make_worker(settings, store, claimer, registry, metrics, events=events)
    async with _running(worker, settings, metrics):
        saver = registry.thread_saver
        threads = InMemoryThreadStore(store, saver if isinstance(saver, InMemorySaver) else None)
        yield Runtime(
            settings,
            store,
            registry,
            worker,
            threads=threads,
            events=events,
            hub=hub,
            item_store=items,
        )


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
    threads = PostgresThreadStore(pool)
    assistants = PostgresAssistantStore(pool)
    claimer = PostgresClaimer(
        pool,
        worker_id=worker_id,
        graph_ids=registry.names(),
        lease_seconds=settings.lease_seconds,
        listener=listener,
    )
    events = PostgresEventLog(pool)
    worker = make_worker(
        settings,
        store,
        claimer,
        registry,
        metrics,
        blocking_renewal=functools.partial(renew_leases_blocking, conninfo),
        events=events,
    )
    hub = StreamHub(listener)
    if listener is not None:
        # Only a hint (anyone may NOTIFY): the worker asks the database which runs to stop.
        listener.subscribe(CANCEL_CHANNEL, lambda _payload: worker.check_cancellations())
    retention = retention_loop(
        pool,
        settings.retention_seconds,
        settings.retention_interval_seconds,
        stream_events_seconds=settings.stream_events_seconds,
        thread_ttl_seconds=settings.thread_ttl_seconds,
    )
    crons = cron_loop(
        pool,
        interval_seconds=settings.cron_interval_seconds,
        missed_seconds=settings.cron_missed_seconds,
        max_attempts=settings.max_attempts,
    )
    fleet = Fleet(
        pool,
        worker_id=worker_id,
        graph_ids=registry.names(),
        concurrency=settings.worker_concurrency,
        ttl_seconds=settings.lease_seconds,
        fail_never_served_after_seconds=settings.unserved_graph_seconds,
        recover_gone_workers=settings.recover_gone_workers,
    )
    try:
        if listener is not None:
            await listener.start()
        try:
            if settings.run_graphs:  # an API-only process serves no graph to the fleet
                await fleet.start()
            webhooks = open_webhooks(
                settings, pool, worker_id=worker_id, load=store.get, listener=listener
            )
            async with webhooks as hooks, _running(worker, settings, metrics), retention, crons:
                yield Runtime(
                    settings,
                    store,
                    registry,
                    worker,
                    pool,
                    listener,
                    fleet if settings.run_graphs else None,
                    threads,
                    assistants,
                    events,
                    hub,
                    crons=PostgresCronStore(pool),
                    webhooks=hooks,
                )
        finally:
            hub.close()
            await claimer.close()
            if settings.run_graphs:
                await fleet.stop()
            if listener is not None:
                await listener.stop()
    finally:
        await pool.close()


def _without(channels: tuple[str, ...], unwanted: str) -> tuple[str, ...]:
    return tuple(channel for channel in channels if channel != unwanted)


def make_worker(
    settings: Settings,
    store: ExecutionStore,
    claimer: Claimer,
    graphs: GraphRunner,
    metrics: Metrics | None = None,
    *,
    blocking_renewal: BlockingRenewal | None = None,
    events: EventLog | None = None,
) -> ExecutionWorker:
    """A worker over `claimer` with every tunable from `settings`."""
    intake = Intake(
        claimer,
        poll_interval_seconds=settings.poll_interval_seconds,
        claim_ahead=settings.claim_ahead,
        hold_seconds=settings.claim_hold_seconds,
    )
    return ExecutionWorker(
        store,
        intake,
        graphs,
        concurrency=settings.worker_concurrency,
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
        events=events,
    )


@contextlib.asynccontextmanager
async def _running(
    worker: ExecutionWorker, settings: Settings, metrics: Metrics | None
) -> AsyncIterator[None]:
    """The worker running, with the event loop watched while it does (nothing, in a process
    that runs no graphs: LG_DEPLOY_RUN_GRAPHS=false)."""
    if not settings.run_graphs:
        yield
        return
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
