"""PostgresExecutionQueue: the executions table is the queue; claims use FOR UPDATE SKIP LOCKED."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Collection, Iterable
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from lg_deploy.db.queries import query
from lg_deploy.models import ExecutionState
from lg_deploy.queue.listener import QUEUED_CHANNEL, Listener
from lg_deploy.queue.pace import ClaimPace
from lg_deploy.store.postgres import row_to_state
from lg_deploy.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

POLL_INTERVAL_SECONDS = 1.0
LEASE_SECONDS = 30.0
CLAIM_RETRY_SECONDS = 1.0
# Rows claimed ahead that no slot has taken after this long are handed back to other workers.
HOLD_SECONDS = 1.0


class PostgresExecutionQueue:
    """Claims QUEUED rows of its graphs for one worker: one for each waiting slot, plus some ahead.

    Only rows whose graph is in `graph_ids` are claimed: other deployments' rows sharing the
    table are never touched.

    `dequeue` callers are the free worker slots: the claimer claims as many due rows as there
    are callers waiting, in one statement, and wakes on NOTIFY or every poll interval. At a
    fast pace it also claims ahead what the slots will start in the next 20 ms (ClaimPace, at
    most `claim_ahead`), so that slots finishing together find rows waiting.
    Rows claimed ahead are the worker's to renew (`held`); any no slot takes within
    `hold_seconds` are handed back. The claim returns the rows as it stored them, so the
    worker need not read them again. (`pace` replaces the ClaimPace, as tests do.)
    """

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        *,
        worker_id: str,
        graph_ids: Collection[str],
        listener: Listener | None = None,
        lease_seconds: float = LEASE_SECONDS,
        poll_interval_seconds: float = POLL_INTERVAL_SECONDS,
        claim_ahead: int = 0,
        hold_seconds: float = HOLD_SECONDS,
        pace: ClaimPace | None = None,
    ) -> None:
        self._pool = pool
        self.worker_id = worker_id
        self._graph_ids = sorted(set(graph_ids))
        self._lease_seconds = lease_seconds
        self._poll_interval_seconds = poll_interval_seconds
        self._pace = pace or ClaimPace(claim_ahead)
        self._ahead = 0  # as of the last claim
        self._hold_seconds = hold_seconds
        self._ready: deque[str] = deque()
        self._claimed_at: dict[str, float] = {}  # ids in _ready: when claimed (monotonic)
        self._states: dict[str, ExecutionState] = {}
        self._getters: deque[asyncio.Future[None]] = deque()
        self._demand = asyncio.Event()
        self._hint = asyncio.Event()
        self._claimer: asyncio.Task[None] | None = None
        self._unsubscribe = (
            listener.subscribe(QUEUED_CHANNEL, self._on_notify) if listener else None
        )
        self.claimed_total = 0

    async def enqueue(self, execution_id: str) -> None:
        """Tell every worker process that `execution_id` is waiting (NOTIFY is only a hint)."""
        self._hint.set()
        async with self._pool.connection() as conn:
            await conn.execute("SELECT pg_notify(%s, %s)", (QUEUED_CHANNEL, execution_id))

    async def dequeue(self) -> str:
        """Wait until an execution is claimed (RUNNING, owned by this worker) and return its id."""
        if self._claimer is None:
            self._claimer = asyncio.create_task(self._claim_loop(), name="lg-deploy-claimer")
        while not self._ready:
            getter = asyncio.get_running_loop().create_future()
            self._getters.append(getter)
            self._demand.set()
            try:
                await getter
            except asyncio.CancelledError:
                with contextlib.suppress(ValueError):
                    self._getters.remove(getter)
                if self._ready:
                    self._wake_getters()
                raise
        execution_id = self._ready.popleft()
        del self._claimed_at[execution_id]
        self._pace.started()
        if self._ahead and len(self._ready) <= self._ahead // 2:
            self._demand.set()  # claim the next rows ahead before these run out
        return execution_id

    def claimed(self, execution_id: str) -> ExecutionState | None:
        """The RUNNING state this queue's claim stored for a dequeued id (once), else None."""
        return self._states.pop(execution_id, None)

    def wake(self) -> None:
        """Claim again now instead of at the next poll."""
        self._hint.set()

    def held(self) -> dict[str, int]:
        """Rows claimed for this worker that no slot has taken yet, id -> attempt: to renew."""
        return {execution_id: self._states[execution_id].attempts for execution_id in self._ready}

    def forget(self, execution_id: str, *, claimed_before: float) -> bool:
        """Drop an untaken row claimed before `claimed_before` (monotonic) whose lease was lost.

        False if it is not waiting here, or was claimed again since (a newer lease).
        """
        claimed_at = self._claimed_at.get(execution_id)
        if claimed_at is None or claimed_at >= claimed_before:
            return False
        return self._take(execution_id) is not None

    async def hand_back(self, execution_ids: Iterable[str]) -> None:
        """Hand back untaken rows: QUEUED again, or FAILED "cancelled" if a cancel was asked."""
        states = [state for i in execution_ids if (state := self._take(i)) is not None]
        if states:
            await self._release(states)

    async def close(self) -> None:
        """Stop claiming; hand back claimed ids no caller took (QUEUED again, claim uncounted)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        await cancel_and_wait(self._claimer)
        self._claimer = None
        for getter in self._getters:
            getter.cancel()
        self._getters.clear()
        await self.hand_back(list(self._ready))
        self._states.clear()

    def _on_notify(self, _payload: str) -> None:
        self._hint.set()

    def _take(self, execution_id: str) -> ExecutionState | None:
        """Remove an untaken row from the ready line; its state, or None if not there."""
        if self._claimed_at.pop(execution_id, None) is None:
            return None
        self._ready.remove(execution_id)
        return self._states.pop(execution_id, None)

    def _wake_getters(self) -> None:
        available = len(self._ready)
        while self._getters and available:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)
                available -= 1

    def _wanted(self) -> int:
        """Rows to claim now: one per waiting slot plus the pace's ahead, or 0 while enough wait.

        Claims ahead go out once half of what was ahead is taken, so they come in batches.
        """
        self._ahead = self._pace.ahead()
        short = len(self._getters) - len(self._ready)
        if short <= 0 and len(self._ready) > self._ahead // 2:
            return 0
        return short + self._ahead

    async def _claim_loop(self) -> None:
        while True:
            await self._hand_back_stale()
            wanted = self._wanted()
            if wanted <= 0:
                self._demand.clear()
                await self._wait_for_demand()
                continue
            self._hint.clear()
            try:
                claimed = await self._claim(wanted)
            except psycopg.Error as error:
                logger.warning("claim failed (%s); retrying in %.1f s", error, CLAIM_RETRY_SECONDS)
                await asyncio.sleep(CLAIM_RETRY_SECONDS)
                continue
            except Exception:
                logger.exception("claim failed unexpectedly; retrying")
                await asyncio.sleep(CLAIM_RETRY_SECONDS)
                continue
            now = time.monotonic()
            self._ready.extend(claimed)
            self._claimed_at.update((execution_id, now) for execution_id in claimed)
            self._wake_getters()
            if len(claimed) < wanted:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._hint.wait(), self._poll_interval_seconds)

    async def _wait_for_demand(self) -> None:
        """Until a slot asks, or the oldest untaken row is due to be handed back."""
        if not self._ready:
            await self._demand.wait()
            return
        due = self._claimed_at[self._ready[0]] + self._hold_seconds - time.monotonic()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._demand.wait(), max(0.0, due))

    async def _hand_back_stale(self) -> None:
        """Hand back rows claimed ahead that no slot took within the hold time."""
        limit = time.monotonic() - self._hold_seconds
        if not self._ready or self._claimed_at[self._ready[0]] > limit:  # the oldest is first
            return
        stale = [i for i in self._ready if self._claimed_at[i] <= limit]
        if stale:
            logger.info("handing back %d claimed executions no slot took in time", len(stale))
            await self.hand_back(stale)

    async def _claim(self, limit: int) -> list[str]:
        params = {
            "limit": limit,
            "graph_ids": self._graph_ids,
            "worker_id": self.worker_id,
            "lease_seconds": self._lease_seconds,
            "now": None,
        }
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("claim_executions"), params)
            rows = await cur.fetchall()
        self.claimed_total += len(rows)
        states = [row_to_state(row) for row in rows]
        self._states.update((state.execution_id, state) for state in states)
        return [state.execution_id for state in states]

    async def _release(self, states: list[ExecutionState]) -> None:
        params = {
            "execution_ids": [state.execution_id for state in states],
            "attempts": [state.attempts for state in states],
            "worker_id": self.worker_id,
            "reason": f"handed back unstarted by worker {self.worker_id}",
        }
        try:
            async with self._pool.connection() as conn:
                await conn.execute(query("release_unstarted"), params)
        except psycopg.Error as error:
            logger.warning("could not hand back %d claimed executions: %s", len(states), error)
