"""ExecutionRun: one claimed execution's run, from its RUNNING row to its recorded outcome."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from lg_deploy.errors import LgDeployError
from lg_deploy.failures import describe_error, traceback_of
from lg_deploy.graphs import GraphOutcome, GraphRun
from lg_deploy.logs import bound
from lg_deploy.metrics import Metrics
from lg_deploy.models import ExecutionState, ExecutionStatus, Finish, Requeue, utcnow
from lg_deploy.store.protocol import ExecutionStore
from lg_deploy.streams.encode import dumps
from lg_deploy.streams.protocol import METADATA_EVENT, Attempt, EventLog
from lg_deploy.streams.sink import CLOSE_SECONDS, EventSink
from lg_deploy.worker.outcomes import OutcomeWriter
from lg_deploy.worker.retry import RetryPolicy

logger = logging.getLogger(__package__)  # "lg_deploy.worker", as operators filter it

STORE_RETRY_SECONDS = 1.0
CANCELLED = "cancelled"
LEASE_LOST = "lease lost"
STOP_FLUSH_SECONDS = 5.0  # a stopped graph's last events: not worth holding a stop longer


class GraphRunner(Protocol):
    """Runs the graph an execution names (GraphRegistry is the real one)."""

    async def execute(self, run: GraphRun) -> GraphOutcome:
        """The graph's output as a JSON object, and whether it stopped at an interrupt; raises
        on failure or unknown graph."""
        ...


def graph_run_of(state: ExecutionState, stream: EventSink | None = None) -> GraphRun:
    """What an execution asks of its graph (a thread-less run's thread is its own id)."""
    return GraphRun(
        graph_id=state.graph_id,
        input=state.input,
        run_id=state.execution_id,
        thread_id=state.thread_id or state.execution_id,
        on_thread=state.thread_id is not None,
        command=state.command,
        config=state.config,
        context=state.context,
        interrupt_before=state.interrupt_before,
        interrupt_after=state.interrupt_after,
        attempt=state.attempts,
        worker_id=state.worker_id,
        stream_mode=tuple(state.stream_mode or ()),
        stream_subgraphs=state.stream_subgraphs,
        stream=stream,
    )


def open_stream(state: ExecutionState, context: RunContext) -> EventSink | None:
    """The sink of a run that streams, its `metadata` event first (each attempt sends one)."""
    if context.events is None or state.stream_mode is None:
        return None
    sink = EventSink(context.events, Attempt(state.execution_id, state.attempts, context.worker_id))
    sink.emit(METADATA_EVENT, dumps({"run_id": state.execution_id, "attempt": state.attempts}))
    return sink


@dataclass(frozen=True)
class RunContext:
    """What every run of one worker shares."""

    worker_id: str
    store: ExecutionStore
    graphs: GraphRunner
    outcomes: OutcomeWriter
    retry: RetryPolicy
    execution_timeout_seconds: float | None
    metrics: Metrics | None
    wake_later: Callable[[float], None]  # claim again after this many seconds
    events: EventLog | None = None  # where runs with stream modes record what they stream


class ExecutionRun:
    """One claimed execution on this worker: runs its graph, then records the outcome.

    `graph_done` is set once the graph has run (only the outcome is left to write: the slot may
    take the next row); `interrupt` stops a graph still running, as a cancel or a lost lease.
    If the run task is cancelled without a reason (the worker stops), the run is requeued.
    """

    def __init__(self, state: ExecutionState, context: RunContext) -> None:
        self.state = state
        self.context = context
        self.graph_done = asyncio.Event()
        self.stop_reason: str | None = None
        self.stream: EventSink | None = None
        self.task: asyncio.Task[ExecutionState | None] | None = None

    @property
    def execution_id(self) -> str:
        """The execution this run is of."""
        return self.state.execution_id

    @property
    def attempt(self) -> int:
        """The attempt this run is, as its lease names it."""
        return self.state.attempts

    def interrupt(self, reason: str) -> bool:
        """Stop the graph if it still runs (an outcome being written keeps its fence).

        Asked again while the graph still runs, it cancels again (keeping the first reason): on
        Python 3.11 a cancel that lands as the graph's task gets a connection from a
        psycopg_pool pool is lost (the pool waits with asyncio.wait_for), and the lease beats
        that report the stop again are what deliver it then.
        """
        if self.graph_done.is_set() or self.task is None or self.task.done():
            return False
        if self.stop_reason is None:
            self.stop_reason = reason
        self.task.cancel()
        return True

    async def run(self) -> ExecutionState | None:
        """Run to an outcome; the stored state, or None if the row was not recorded here."""
        state = self.state
        with bound(
            execution_id=state.execution_id,
            graph_id=state.graph_id,
            request_id=state.request_id,
            attempt=state.attempts,
        ):
            try:
                logger.info("execution started")
                return await self._run_and_record(time.monotonic())
            except asyncio.CancelledError:
                self.graph_done.set()  # the graph is stopped: only the outcome is left
                await self._close_stream(STOP_FLUSH_SECONDS)
                if self.stop_reason is None:  # the worker is stopping
                    await self.requeue_interrupted()
                    raise
                return await self._interrupted(self.stop_reason)
            finally:
                self.graph_done.set()

    async def _interrupted(self, reason: str) -> ExecutionState | None:
        """A run was stopped on purpose: record "cancelled", or give up a lost lease."""
        _uncancel()
        if reason == LEASE_LOST:
            if self.context.metrics is not None:
                self.context.metrics.leases_lost.inc()
            logger.warning("execution abandoned: its lease passed to another attempt")
            return None
        return await self._record(Finish(self.state, ExecutionStatus.FAILED, error=CANCELLED))

    async def _run_and_record(self, began: float) -> ExecutionState | None:
        """Run the graph of the RUNNING state that began here at monotonic time `began`."""
        state, context = self.state, self.context
        if context.metrics is not None:
            context.metrics.started.labels(state.graph_id).inc()
            if state.started_at is not None:
                waited = (state.started_at - state.run_at).total_seconds()
                context.metrics.pickup_seconds.labels(state.graph_id).observe(max(0.0, waited))
        timeout = state.timeout_seconds or context.execution_timeout_seconds
        deadline: asyncio.Timeout | None = None
        self.stream = open_stream(state, context)
        try:
            running = context.graphs.execute(graph_run_of(state, self.stream))
            if timeout is None:
                outcome = await running
            else:
                async with asyncio.timeout(timeout) as deadline:
                    outcome = await running
        except Exception as exc:
            self.graph_done.set()
            await self._close_stream()
            if deadline is not None and deadline.expired():
                error = f"timed out after {timeout:g} s"
                return await self._record(Finish(state, ExecutionStatus.FAILED, error=error))
            if context.retry.retryable(exc):
                return await self._retry_later(exc, began)
            error, trace = describe_error(exc), traceback_of(exc)
            failed = Finish(state, ExecutionStatus.FAILED, error=error, traceback=trace)
            return await self._record(failed, failure=exc)
        self.graph_done.set()
        await self._close_stream()
        if outcome.interrupted:
            stopped = Finish(
                state,
                ExecutionStatus.INTERRUPTED,
                output=outcome.output,
                interrupts=outcome.interrupts,
            )
            return await self._record(stopped)
        return await self._record(Finish(state, ExecutionStatus.COMPLETED, output=outcome.output))

    async def _close_stream(self, timeout_seconds: float = CLOSE_SECONDS) -> None:
        """Record every event the graph streamed before the outcome that ends its stream."""
        if self.stream is not None:
            await self.stream.close(timeout_seconds)

    async def _retry_later(self, exc: Exception, began: float) -> ExecutionState | None:
        """QUEUED again after a backoff, timed on the database clock (see `_database_now`).

        The row decides whether attempts are left, by its own max_attempts: else FAILED.
        """
        state, context = self.state, self.context
        delay = context.retry.delay_seconds(state.attempts)
        run_at = _database_now(state, began) + timedelta(seconds=delay)
        described = describe_error(exc)
        requeue = Requeue(
            state,
            error=described,
            final_error=described,
            traceback=traceback_of(exc),
            run_at=run_at,
            numbered=True,
        )
        stored = await self._record(requeue, failure=exc)
        if stored is not None and stored.status == ExecutionStatus.QUEUED:
            context.wake_later(delay)
            if context.metrics is not None:
                context.metrics.retries.labels(state.graph_id).inc()
        return stored

    async def _record(
        self, outcome: Finish | Requeue, *, failure: BaseException | None = None
    ) -> ExecutionState | None:
        """Store the outcome, fenced by this attempt; retried while the database is away.

        `failure`, the graph's exception, is logged with its traceback.
        """
        while True:
            try:
                stored = await self.context.outcomes.write(outcome)
            except LgDeployError as refused:
                logger.warning("outcome not recorded: %s", refused)
                return None
            except Exception:
                logger.exception("could not record the outcome; retrying")
                await asyncio.sleep(STORE_RETRY_SECONDS)
                continue
            _log_outcome(stored.status, stored.error, failure)
            self._observe(stored)
            return stored

    def _observe(self, final: ExecutionState) -> None:
        metrics = self.context.metrics
        if metrics is None or not final.is_final or final.started_at is None:
            return
        seconds = ((final.finished_at or utcnow()) - final.started_at).total_seconds()
        metrics.finished.labels(final.graph_id, final.status.value).inc()
        metrics.run_seconds.labels(final.graph_id, final.status.value).observe(seconds)

    async def requeue_interrupted(self) -> None:
        """Back to the queue as the worker stops, or FAILED when no attempts are left."""
        context = self.context
        reason = f"interrupted: worker {context.worker_id} stopped"
        requeue = Requeue(self.state, error=reason, final_error=f"{reason}; no attempts left")
        try:
            (back,) = await context.store.requeue_running(context.worker_id, [requeue])
            if isinstance(back, LgDeployError):
                raise back
            logger.info("execution requeued as %s", back.status)
        except Exception as error:
            logger.warning("could not requeue execution: %s", error)


def _log_outcome(status: ExecutionStatus, error: str | None, failure: BaseException | None) -> None:
    """The outcome's log line; a graph's exception at ERROR (WARNING if retried), with traceback."""
    message = f"execution {status.lower()}" + (f": {error}" if error else "")
    if failure is None:
        logger.info(message)
    else:
        level = logging.WARNING if status == ExecutionStatus.QUEUED else logging.ERROR
        own = isinstance(failure, LgDeployError)  # its message says it all
        logger.log(level, message, exc_info=None if own else failure)


def _database_now(state: ExecutionState, began: float) -> datetime:
    """The store's clock now: its `started_at` for this run plus the time elapsed here since.

    A worker whose own clock is off would otherwise shift every backoff by its error.
    """
    if state.started_at is None:
        return utcnow()
    return state.started_at + timedelta(seconds=time.monotonic() - began)


def _uncancel() -> None:
    """Forget the cancellations this task has handled itself (it then ends normally), also
    one that was lost on the way and asked again."""
    task = asyncio.current_task()
    while task is not None and task.cancelling():
        task.uncancel()
