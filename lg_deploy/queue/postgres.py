"""PostgresExecutionQueue: the executions table is the queue; claims use FOR UPDATE SKIP LOCKED."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from lg_deploy.db.queries import query
from lg_deploy.models import ExecutionState
from lg_deploy.queue.listener import QUEUED_CHANNEL, Listener
from lg_deploy.store.postgres import row_to_state

logger = logging.getLogger(__name__)

POLL_INTERVAL_SECONDS = 1.0
LEASE_SECONDS = 30.0
CLAIM_RETRY_SECONDS = 1.0


class PostgresExecutionQueue:
    """Claims QUEUED rows for one worker process, as many at a time as there are waiting slots.

    `dequeue` callers are the free worker slots: the claimer claims exactly as many due rows as
    there are callers waiting, in one statement, and wakes on NOTIFY or every poll interval.
    The claim returns the rows as it stored them, so the worker need not read them again.
    """

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        *,
        worker_id: str,
        listener: Listener | None = None,
        lease_seconds: float = LEASE_SECONDS,
        poll_interval_seconds: float = POLL_INTERVAL_SECONDS,
    ) -> None:
        self._pool = pool
        self.worker_id = worker_id
        self._lease_seconds = lease_seconds
        self._poll_interval_seconds = poll_interval_seconds
        self._ready: deque[str] = deque()
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
        return self._ready.popleft()

    def claimed(self, execution_id: str) -> ExecutionState | None:
        """The RUNNING state this queue's claim stored for a dequeued id (once), else None."""
        return self._states.pop(execution_id, None)

    def wake(self) -> None:
        """Claim again now instead of at the next poll."""
        self._hint.set()

    async def close(self) -> None:
        """Stop claiming; hand back claimed ids no caller took (QUEUED again, claim uncounted)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._claimer is not None:
            self._claimer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._claimer
            self._claimer = None
        for getter in self._getters:
            getter.cancel()
        self._getters.clear()
        if self._ready:
            await self._release(list(self._ready))
            self._ready.clear()
        self._states.clear()

    def _on_notify(self, _payload: str) -> None:
        self._hint.set()

    def _wake_getters(self) -> None:
        available = len(self._ready)
        while self._getters and available:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)
                available -= 1

    async def _claim_loop(self) -> None:
        while True:
            wanted = len(self._getters) - len(self._ready)
            if wanted <= 0:
                self._demand.clear()
                await self._demand.wait()
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
            self._ready.extend(claimed)
            self._wake_getters()
            if len(claimed) < wanted:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._hint.wait(), self._poll_interval_seconds)

    async def _claim(self, limit: int) -> list[str]:
        params = {
            "limit": limit,
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

    async def _release(self, execution_ids: list[str]) -> None:
        params = {
            "execution_ids": execution_ids,
            "worker_id": self.worker_id,
            "reason": f"handed back unstarted by worker {self.worker_id}",
        }
        try:
            async with self._pool.connection() as conn:
                await conn.execute(query("release_unstarted"), params)
        except psycopg.Error as error:
            logger.warning(
                "could not hand back %d claimed executions: %s", len(execution_ids), error
            )
