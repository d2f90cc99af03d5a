"""PostgresClaimer: the executions table is the queue; claims use FOR UPDATE SKIP LOCKED."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from lg_deploy.db.listener import QUEUED_CHANNEL, Listener
from lg_deploy.db.queries import query
from lg_deploy.models import ExecutionState
from lg_deploy.store.postgres import row_to_state
from lg_deploy.tasks import wait_for_event

logger = logging.getLogger(__name__)


class PostgresClaimer:
    """Claims QUEUED rows of its graphs for one worker, in one statement per claim.

    Only rows whose graph is in `graph_ids` are read or claimed: other deployments' rows sharing
    the table are never touched. NOTIFY on `lg_deploy_queued` (the insert and requeue triggers
    send it) ends a wait early; it is only a hint, the claim decides.
    """

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        *,
        worker_id: str,
        graph_ids: Collection[str],
        lease_seconds: float,
        listener: Listener | None = None,
    ) -> None:
        self.worker_id = worker_id
        self._pool = pool
        self._graph_ids = sorted(set(graph_ids))
        self._lease_seconds = lease_seconds
        self._hint = asyncio.Event()
        self._unsubscribe = (
            listener.subscribe(QUEUED_CHANNEL, lambda _payload: self._hint.set())
            if listener
            else None
        )
        self.claimed_total = 0

    async def claim(self, limit: int) -> list[ExecutionState]:
        """Claim up to `limit` due rows for this worker (query `claim_executions`)."""
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
        return [row_to_state(row) for row in rows]

    async def release(self, states: Sequence[ExecutionState]) -> None:
        """Give back claimed rows no run started (query `release_unstarted`); never raises."""
        if not states:
            return
        params = {
            "execution_ids": [state.execution_id for state in states],
            "attempts": [state.attempts for state in states],
            "worker_id": self.worker_id,
            "reason": f"released unstarted by worker {self.worker_id}",
        }
        try:
            async with self._pool.connection() as conn:
                await conn.execute(query("release_unstarted"), params)
        except psycopg.Error as error:
            logger.warning("could not release %d claimed executions: %s", len(states), error)

    def wake(self) -> None:
        """End the current wait at once."""
        self._hint.set()

    async def wait(self, seconds: float) -> None:
        """Until woken, a NOTIFY of new rows, or `seconds` pass."""
        await wait_for_event(self._hint, seconds)
        self._hint.clear()

    async def close(self) -> None:
        """Stop listening for new rows."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
