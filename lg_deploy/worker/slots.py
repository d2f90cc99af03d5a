"""ExecutionWorker: `concurrency` slots, each taking claimed rows from the intake, one at a time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Coroutine, Iterable
from typing import Any

from lg_deploy.metrics import Metrics
from lg_deploy.models import ExecutionState, LeaseRenewal
from lg_deploy.store.protocol import ExecutionStore
from lg_deploy.streams.protocol import EventLog
from lg_deploy.worker.intake import Intake
from lg_deploy.worker.leases import BlockingRenewal, LeaseKeeper
from lg_deploy.worker.outcomes import OutcomeWriter
from lg_deploy.worker.retry import RetryPolicy
from lg_deploy.worker.run import CANCELLED, LEASE_LOST, ExecutionRun, GraphRunner, RunContext

logger = logging.getLogger(__package__)  # "lg_deploy.worker", as operators filter it

# After the grace period, runs still going get this long to requeue themselves.
REQUEUE_SECONDS = 10.0


def make_worker_id() -> str:
    """A worker id unique to this process run: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class ExecutionWorker:
    """Runs up to `concurrency` graphs at once, writing outcomes meanwhile; failures stay apart.

    Rows come from `intake` (its claimer's worker id is this worker's); each becomes one
    ExecutionRun. A slot is free again once its run's graph is done, while the outcome is
    still being written.
    """

    def __init__(
        self,
        store: ExecutionStore,
        intake: Intake,
        graphs: GraphRunner,
        *,
        concurrency: int,
        lease_seconds: float,
        recovery_interval_seconds: float,
        retry: RetryPolicy,
        execution_timeout_seconds: float | None = None,
        metrics: Metrics | None = None,
        blocking_renewal: BlockingRenewal | None = None,
        events: EventLog | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.store = store
        self.intake = intake
        self.graphs = graphs
        self.concurrency = concurrency
        self.worker_id = intake.claimer.worker_id
        self.metrics = metrics
        self.leases = LeaseKeeper(
            store,
            wake=intake.wake,
            worker_id=self.worker_id,
            held=self._held,
            on_renewal=self._on_renewal,
            lease_seconds=lease_seconds,
            recovery_interval_seconds=recovery_interval_seconds,
            metrics=metrics,
            blocking_renewal=blocking_renewal,
            held_now=self._held_now,
        )
        self._context = RunContext(
            worker_id=self.worker_id,
            store=store,
            graphs=graphs,
            outcomes=OutcomeWriter(store, self.worker_id),
            retry=retry,
            execution_timeout_seconds=execution_timeout_seconds,
            metrics=metrics,
            wake_later=self._wake_later,
            events=events,
        )
        self._slots: set[asyncio.Task[None]] = set()
        self._idle: set[asyncio.Task[None]] = set()
        self._runs: dict[str, ExecutionRun] = {}
        self._background: set[asyncio.Task[None]] = set()  # timers
        self._asked_at = 0.0  # when the lease keeper last asked what is held (monotonic)
        self._stopping = False

    @property
    def running_ids(self) -> list[str]:
        """Ids of the executions this worker is running now (graph or outcome)."""
        return list(self._runs)

    @property
    def graph_running_ids(self) -> list[str]:
        """Ids of the executions whose graph runs here now (not those only writing an outcome)."""
        return [i for i, run in self._runs.items() if not run.graph_done.is_set()]

    def wake(self) -> None:
        """Rows may be due: claim now instead of at the next poll."""
        self.intake.wake()

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
        """Stop claiming, let running executions finish for `grace_seconds`, requeue the rest."""
        self._stopping = True
        for slot in self._idle:
            slot.cancel()
        await asyncio.sleep(0)  # tasks just created take their first step, so they can requeue
        busy = [run.task for run in self._runs.values() if run.task and not run.task.done()]
        if busy and grace_seconds > 0:
            await asyncio.wait(busy, timeout=grace_seconds)
        running = [run.task for run in self._runs.values() if run.task is not None]
        for task in running:
            task.cancel()
        waited: set[asyncio.Task[Any]] = {*self._slots, *running}
        if waited:
            _done, pending = await asyncio.wait(waited, timeout=REQUEUE_SECONDS)
            for task in pending:
                logger.error("task %s did not stop; abandoning it", task.get_name())
        await self.intake.close()
        await self.leases.stop()
        for task in self._background:
            task.cancel()
        self._slots.clear()
        self._idle.clear()
        logger.info("worker %s stopped", self.worker_id)

    def request_stop(self, execution_ids: Iterable[str]) -> None:
        """Stop these executions, whose cancel the store has recorded, if this worker runs them."""
        for execution_id in execution_ids:
            if (run := self._runs.get(execution_id)) is not None:
                run.interrupt(CANCELLED)

    def check_cancellations(self) -> None:
        """A hint that some cancel was requested: ask the store now (a renewal reports them)."""
        self.leases.beat_now()

    def _held(self) -> dict[str, int]:
        """Leases to renew at a beat; notes when it was asked, for `_on_renewal`."""
        self._asked_at = time.monotonic()
        return self._held_now()

    def _held_now(self) -> dict[str, int]:
        """The runs here, and rows claimed that no slot took yet: id -> attempt."""
        held = {execution_id: run.attempt for execution_id, run in self._runs.items()}
        held.update(self.intake.held())
        return held

    def _on_renewal(self, renewal: LeaseRenewal, asked: dict[str, int]) -> None:
        for execution_id in asked:
            if execution_id in renewal.held:
                continue
            run = self._runs.get(execution_id)
            if self.intake.forget(execution_id, claimed_before=self._asked_at):
                logger.warning("lease of claimed execution %s lost before it started", execution_id)
            elif (
                run is not None
                and not run.graph_done.is_set()  # its outcome may be what ended the lease
                and run.attempt == asked[execution_id]
                and run.interrupt(LEASE_LOST)
            ):
                logger.warning("lease of execution %s lost; stopping it here", execution_id)
        unstarted = []
        for execution_id in renewal.cancel_requested:
            if (run := self._runs.get(execution_id)) is not None:
                run.interrupt(CANCELLED)
            else:
                unstarted.append(execution_id)
        if unstarted:
            self._in_background(self.intake.release(unstarted))

    async def _slot(self) -> None:
        """Take one claimed row at a time; free again once its graph has run."""
        me = asyncio.current_task()
        assert me is not None
        while not self._stopping:
            self._idle.add(me)
            try:
                state = await self.intake.dequeue()
            finally:
                self._idle.discard(me)
            run = self._begin(state)
            try:
                await run.graph_done.wait()  # cancelling the slot cancels only this wait
            except asyncio.CancelledError:
                assert run.task is not None
                if not run.task.done():
                    run.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await run.task
                raise

    async def run_claimed(self, state: ExecutionState) -> ExecutionState | None:
        """Run a row claimed for this worker (RUNNING, leased to it) to its outcome, no slot.

        The stored outcome, or None when the row was not recorded here (lease lost).
        """
        run = self._begin(state)
        assert run.task is not None
        return await run.task

    def _begin(self, state: ExecutionState) -> ExecutionRun:
        """Start the run of a row claimed for this worker."""
        run = ExecutionRun(state, self._context)
        run.task = asyncio.create_task(self._run_quietly(run))
        self._runs[state.execution_id] = run
        run.task.add_done_callback(lambda _task: self._ended(run))
        return run

    def _ended(self, run: ExecutionRun) -> None:
        """The run's task is over, even if it never began: its slot is free, it is not held."""
        run.graph_done.set()
        self._runs.pop(run.execution_id, None)

    async def _run_quietly(self, run: ExecutionRun) -> ExecutionState | None:
        try:
            return await run.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("execution %s: unexpected worker error", run.execution_id)
            return None

    def _wake_later(self, seconds: float) -> None:
        """Claim again once `seconds` have passed (a retry comes due)."""

        async def later() -> None:
            await asyncio.sleep(seconds)
            self.intake.wake()

        self._in_background(later())

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` as a task the worker cancels when it stops."""
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
