"""ExecutionWorker (LLD 6.1): dequeue, load, RUNNING, run the graph, COMPLETED or FAILED."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
import uuid
from collections.abc import Coroutine, Iterable
from datetime import datetime, timedelta
from typing import Any, Protocol

from lg_deploy.errors import LgDeployError
from lg_deploy.failures import describe_error, traceback_of
from lg_deploy.leases import BlockingRenewal, LeaseKeeper
from lg_deploy.logs import bound
from lg_deploy.metrics import Metrics
from lg_deploy.models import (
    ExecutionState,
    ExecutionStatus,
    Finish,
    LeaseRenewal,
    Requeue,
    utcnow,
)
from lg_deploy.outcomes import OutcomeWriter
from lg_deploy.queue.protocol import ClaimingQueue, ExecutionQueue
from lg_deploy.retry import RetryPolicy
from lg_deploy.store.protocol import ExecutionStore

logger = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 4
DEFAULT_LEASE_SECONDS = 10.0
DEFAULT_RECOVERY_INTERVAL_SECONDS = 2.0
STORE_RETRY_SECONDS = 1.0
# After the grace period, cancelled executions get this long to hand themselves back.
HAND_BACK_SECONDS = 10.0
CANCELLED = "cancelled"
LEASE_LOST = "lease lost"


class GraphRunner(Protocol):
    """Runs the graph an execution names (GraphRegistry is the real one)."""

    async def run(
        self, graph_id: str, input: dict[str, Any], *, thread_id: str | None = None
    ) -> dict[str, Any]:
        """The graph's output as a JSON object; raises on failure or unknown graph."""
        ...


def make_worker_id() -> str:
    """A worker id unique to this process run: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class ExecutionWorker:
    """Runs up to `concurrency` graphs at once, writing outcomes meanwhile; failures stay apart."""

    def __init__(
        self,
        store: ExecutionStore,
        queue: ExecutionQueue,
        graphs: GraphRunner,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        worker_id: str | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        recovery_interval_seconds: float = DEFAULT_RECOVERY_INTERVAL_SECONDS,
        execution_timeout_seconds: float | None = None,
        retry: RetryPolicy | None = None,
        metrics: Metrics | None = None,
        blocking_renewal: BlockingRenewal | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.store = store
        self.queue = queue
        self.graphs = graphs
        self.concurrency = concurrency
        self.worker_id = worker_id or make_worker_id()
        self.lease_seconds = lease_seconds
        self.execution_timeout_seconds = execution_timeout_seconds
        self.retry = retry or RetryPolicy()
        self.metrics = metrics
        self.leases = LeaseKeeper(
            store,
            queue,
            worker_id=self.worker_id,
            held=self._held,
            on_renewal=self._on_renewal,
            lease_seconds=lease_seconds,
            recovery_interval_seconds=recovery_interval_seconds,
            metrics=metrics,
            blocking_renewal=blocking_renewal,
            held_now=self._held_now,
        )
        self._outcomes = OutcomeWriter(store, self.worker_id)
        self._claiming = queue if isinstance(queue, ClaimingQueue) else None
        self._slots: set[asyncio.Task[None]] = set()
        self._idle: set[asyncio.Task[None]] = set()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._frees: dict[str, asyncio.Future[None]] = {}
        self._recording: set[str] = set()  # their graph has run; only the outcome is left
        self._attempts: dict[str, int] = {}
        self._stop_reasons: dict[str, str] = {}
        self._background: set[asyncio.Task[None]] = set()  # timers, hand-backs
        self._asked_at = 0.0  # when the lease keeper last asked what is held (monotonic)
        self._stopping = False

    @property
    def running_ids(self) -> list[str]:
        """Ids of the executions this worker is running now."""
        return list(self._running)

    @property
    def graph_running_ids(self) -> list[str]:
        """Ids of the executions whose graph runs here now (not those only writing an outcome)."""
        return [
            execution_id for execution_id in self._running if execution_id not in self._recording
        ]

    async def start(self) -> None:
        """Start `concurrency` slots, each taking one execution at a time, and the lease keeper."""
        if self._slots:
            return
        self._stopping = False
        for number in range(self.concurrency):
            self._slots.add(asyncio.create_task(self._slot(), name=f"lg-deploy-slot-{number}"))
        self.leases.start()
        logger.info("worker %s started with %d slots", self.worker_id, self.concurrency)

    async def stop(self, grace_seconds: float = 0.0) -> None:
        """Stop claiming, let running executions finish for `grace_seconds`, hand back the rest."""
        self._stopping = True
        for slot in self._idle:
            slot.cancel()
        await asyncio.sleep(0)  # tasks just created take their first step, so they can hand back
        busy = [task for task in self._running.values() if not task.done()]
        if busy and grace_seconds > 0:
            await asyncio.wait(busy, timeout=grace_seconds)
        running = list(self._running.values())
        for task in running:
            task.cancel()
        if waited := self._slots | set(running):
            _done, pending = await asyncio.wait(waited, timeout=HAND_BACK_SECONDS)
            for task in pending:
                logger.error("task %s did not stop; abandoning it", task.get_name())
        await self.leases.stop()
        for task in self._background:
            task.cancel()
        self._slots.clear()
        self._idle.clear()
        logger.info("worker %s stopped", self.worker_id)

    def request_stop(self, execution_ids: Iterable[str]) -> None:
        """Stop these executions, whose cancel the store has recorded, if this worker runs them."""
        for execution_id in execution_ids:
            self._interrupt(execution_id, CANCELLED)

    def check_cancellations(self) -> None:
        """A hint that some cancel was requested: ask the store now (a renewal reports them)."""
        self.leases.beat_now()

    def _interrupt(self, execution_id: str, reason: str) -> None:
        """Stop a run whose graph is still running; an outcome being written keeps its fence."""
        if execution_id in self._recording:
            return
        task = self._running.get(execution_id)
        if task is not None and not task.done() and execution_id not in self._stop_reasons:
            self._stop_reasons[execution_id] = reason
            task.cancel()

    def _held(self) -> dict[str, int]:
        """Leases to renew at a beat; notes when it was asked, for `_on_renewal`."""
        self._asked_at = time.monotonic()
        return self._held_now()

    def _held_now(self) -> dict[str, int]:
        """The runs here, and rows the queue claimed that no slot took yet: id -> attempt."""
        held = dict(self._attempts)
        if self._claiming is not None:
            held.update(self._claiming.held())
        return held

    def _on_renewal(self, renewal: LeaseRenewal, asked: dict[str, int]) -> None:
        for execution_id in asked:
            if execution_id in renewal.held:
                continue
            if self._claiming is not None and self._claiming.forget(
                execution_id, claimed_before=self._asked_at
            ):
                logger.warning("lease of claimed execution %s lost before it started", execution_id)
            elif (
                execution_id not in self._recording  # its outcome may be what ended the lease
                and self._attempts.get(execution_id) == asked[execution_id]
            ):
                logger.warning("lease of execution %s lost; stopping it here", execution_id)
                self._interrupt(execution_id, LEASE_LOST)
        unstarted = []
        for execution_id in renewal.cancel_requested:
            if execution_id in self._running:
                self._interrupt(execution_id, CANCELLED)
            else:
                unstarted.append(execution_id)
        if unstarted and self._claiming is not None:
            self._in_background(self._claiming.hand_back(unstarted))

    async def _slot(self) -> None:
        """Take one execution at a time; free again once its graph has run (recording overlaps)."""
        me = asyncio.current_task()
        assert me is not None
        while not self._stopping:
            self._idle.add(me)
            try:
                execution_id = await self.queue.dequeue()
            finally:
                self._idle.discard(me)
            freed = asyncio.get_running_loop().create_future()
            self._frees[execution_id] = freed
            task = asyncio.create_task(self._process_quietly(execution_id))
            self._running[execution_id] = task
            task.add_done_callback(functools.partial(self._forget, execution_id))
            try:
                await freed  # cancelling the slot cancels only this future, not the execution
            except asyncio.CancelledError:
                if not task.done():
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                raise

    def _graph_done(self, execution_id: str) -> None:
        """The graph of `execution_id` has run: nothing left to stop, and its slot is free."""
        self._recording.add(execution_id)
        self._free_slot(execution_id)

    def _free_slot(self, execution_id: str) -> None:
        """The slot running `execution_id` may take the next one."""
        freed = self._frees.pop(execution_id, None)
        if freed is not None and not freed.done():
            freed.set_result(None)

    def _forget(self, execution_id: str, _task: asyncio.Task[None]) -> None:
        self._free_slot(execution_id)
        self._running.pop(execution_id, None)
        self._stop_reasons.pop(execution_id, None)

    async def _process_quietly(self, execution_id: str) -> None:
        try:
            await self.process(execution_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("execution %s: unexpected worker error", execution_id)

    async def process(self, execution_id: str) -> ExecutionState | None:
        """Run one execution to an outcome; returns its stored state, None if not run here."""
        try:
            state = await self._begin(execution_id)
        except asyncio.CancelledError:
            await self._hand_back_if_ours(execution_id)
            raise
        except LgDeployError as error:
            logger.info("skipping execution %s: %s", execution_id, error)
            return None
        if state is None:
            return None
        with bound(
            execution_id=state.execution_id,
            graph_id=state.graph_id,
            request_id=state.request_id,
            attempt=state.attempts,
        ):
            self._attempts[execution_id] = state.attempts
            try:
                logger.info("execution started")
                return await self._run_and_record(state, time.monotonic())
            except asyncio.CancelledError:
                reason = self._stop_reasons.get(execution_id)
                if reason is None:  # the worker is stopping
                    await self._hand_back(state)
                    raise
                return await self._interrupted(state, reason)
            finally:
                self._attempts.pop(execution_id, None)
                self._recording.discard(execution_id)

    async def _interrupted(self, state: ExecutionState, reason: str) -> ExecutionState | None:
        """A run was stopped on purpose: record "cancelled", or give up a lost lease."""
        _uncancel()
        if reason == LEASE_LOST:
            if self.metrics is not None:
                self.metrics.leases_lost.inc()
            logger.warning("execution abandoned: its lease passed to another attempt")
            return None
        return await self._record(Finish(state, ExecutionStatus.FAILED, error=CANCELLED))

    async def _begin(self, execution_id: str) -> ExecutionState | None:
        """The RUNNING state this worker owns: claimed by the queue already, or claimed here."""
        state = self._claiming.claimed(execution_id) if self._claiming else None
        if state is None:
            state = await self.store.get(execution_id)
        if state is None:
            logger.warning("execution %s vanished before it ran", execution_id)
            return None
        if state.status == ExecutionStatus.RUNNING and state.worker_id == self.worker_id:
            return state
        if state.status != ExecutionStatus.QUEUED:
            logger.info("execution %s is %s; not running it", execution_id, state.status)
            return None
        if (wait := (state.run_at - utcnow()).total_seconds()) > 0:
            self._enqueue_later(execution_id, wait)
            return None
        running = state.evolve(
            status=ExecutionStatus.RUNNING,
            attempts=state.attempts + 1,
            worker_id=self.worker_id,
            lease_expires_at=utcnow() + timedelta(seconds=self.lease_seconds),
        )
        return await self.store.update(running, expected_status=ExecutionStatus.QUEUED)

    def _enqueue_later(self, execution_id: str, seconds: float) -> None:
        """For queues without due times (asyncio): offer the id again once it is due."""

        async def later() -> None:
            await asyncio.sleep(seconds)
            await self.queue.enqueue(execution_id)

        self._in_background(later())

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` as a task the worker cancels when it stops."""
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _run_and_record(self, state: ExecutionState, began: float) -> ExecutionState | None:
        """Run the graph of a RUNNING state that began here at monotonic time `began`."""
        if self.metrics is not None:
            self.metrics.started.labels(state.graph_id).inc()
            if state.started_at is not None:
                waited = (state.started_at - state.run_at).total_seconds()
                self.metrics.pickup_seconds.labels(state.graph_id).observe(max(0.0, waited))
        timeout = state.timeout_seconds or self.execution_timeout_seconds
        deadline: asyncio.Timeout | None = None
        try:
            running = self.graphs.run(state.graph_id, state.input, thread_id=state.execution_id)
            if timeout is None:
                output = await running
            else:
                async with asyncio.timeout(timeout) as deadline:
                    output = await running
        except Exception as exc:
            self._graph_done(state.execution_id)
            if deadline is not None and deadline.expired():
                error = f"timed out after {timeout:g} s"
                return await self._record(Finish(state, ExecutionStatus.FAILED, error=error))
            if self.retry.retryable(exc):
                return await self._retry_later(state, exc, began)
            failed = Finish(
                state,
                ExecutionStatus.FAILED,
                error=describe_error(exc),
                traceback=traceback_of(exc),
            )
            return await self._record(failed, failure=exc)
        self._graph_done(state.execution_id)
        return await self._record(Finish(state, ExecutionStatus.COMPLETED, output=output))

    async def _retry_later(
        self, state: ExecutionState, exc: Exception, began: float
    ) -> ExecutionState | None:
        """QUEUED again after a backoff, timed on the database clock (see `_database_now`).

        The row decides whether attempts are left, by its own max_attempts: else FAILED.
        """
        delay = self.retry.delay_seconds(state.attempts)
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
            self._enqueue_later(state.execution_id, delay)
            if self.metrics is not None:
                self.metrics.retries.labels(state.graph_id).inc()
        return stored

    async def _record(
        self, outcome: Finish | Requeue, *, failure: BaseException | None = None
    ) -> ExecutionState | None:
        """Store the outcome, fenced by this attempt; retried while the database is away.

        `failure`, the graph's exception, is logged with its traceback.
        """
        while True:
            try:
                stored = await self._outcomes.write(outcome)
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
        if self.metrics is None or not final.is_final or final.started_at is None:
            return
        seconds = ((final.finished_at or utcnow()) - final.started_at).total_seconds()
        self.metrics.finished.labels(final.graph_id, final.status.value).inc()
        self.metrics.run_seconds.labels(final.graph_id, final.status.value).observe(seconds)

    async def _hand_back_if_ours(self, execution_id: str) -> None:
        """Hand back an execution the queue claimed for this worker before it could start."""
        try:
            state = await self.store.get(execution_id)
        except Exception as error:
            logger.warning("could not hand back execution %s: %s", execution_id, error)
            return
        if state and state.status == ExecutionStatus.RUNNING and state.worker_id == self.worker_id:
            await self._hand_back(state)

    async def _hand_back(self, state: ExecutionState) -> None:
        """Return an interrupted execution to the queue, or fail it when no attempts are left."""
        reason = f"interrupted: worker {self.worker_id} stopped"
        requeue = Requeue(state, error=reason, final_error=f"{reason}; no attempts left")
        try:
            (back,) = await self.store.requeue_running(self.worker_id, [requeue])
            if isinstance(back, LgDeployError):
                raise back
            logger.info("execution handed back as %s", back.status)
            if back.status == ExecutionStatus.QUEUED:
                await self.queue.enqueue(state.execution_id)
        except Exception as error:
            logger.warning("could not hand back execution: %s", error)


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
    """Forget a cancellation this task has handled itself (it then ends normally)."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
