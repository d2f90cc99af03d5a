"""In one process: AsyncioExecutionQueue (bounded ids) and MemoryClaimer (the memory store's)."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence

from lg_deploy.models import ExecutionState, utcnow
from lg_deploy.store.memory import InMemoryExecutionStore
from lg_deploy.tasks import wait_for_event

DEFAULT_MAXSIZE = 10_000


class AsyncioExecutionQueue:
    """In-process FIFO of execution ids; `enqueue` waits while `maxsize` ids are pending."""

    def __init__(self, maxsize: int = DEFAULT_MAXSIZE) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self._queue: asyncio.Queue[str] = asyncio.Queue(maxsize)

    async def enqueue(self, execution_id: str) -> None:
        """Append the id, waiting while the queue is full."""
        await self._queue.put(execution_id)

    def try_enqueue(self, execution_id: str) -> bool:
        """Append the id at once if there is room; False when the queue is full."""
        try:
            self._queue.put_nowait(execution_id)
        except asyncio.QueueFull:
            return False
        return True

    async def dequeue(self) -> str:
        """Wait for the oldest id."""
        return await self._queue.get()

    def qsize(self) -> int:
        """How many ids are waiting."""
        return self._queue.qsize()


class MemoryClaimer:
    """The Claimer over an InMemoryExecutionStore: claims in the claim statement's order.

    `graph_ids` None claims rows of any graph (one process: no other deployment to leave them
    to). A wait ends early when the next row comes due.
    """

    def __init__(
        self,
        store: InMemoryExecutionStore,
        *,
        worker_id: str,
        lease_seconds: float,
        graph_ids: Collection[str] | None = None,
    ) -> None:
        self.worker_id = worker_id
        self._store = store
        self._lease_seconds = lease_seconds
        self._graph_ids = frozenset(graph_ids) if graph_ids is not None else None
        self._woken = asyncio.Event()

    async def claim(self, limit: int) -> list[ExecutionState]:
        """Claim up to `limit` due rows for this worker (see Claimer.claim)."""
        return await self._store.claim(self.worker_id, limit, self._lease_seconds, self._graph_ids)

    async def release(self, states: Sequence[ExecutionState]) -> None:
        """Give back claimed rows no run started (see Claimer.release)."""
        reason = f"released unstarted by worker {self.worker_id}"
        await self._store.release_unstarted(self.worker_id, states, reason)

    def wake(self) -> None:
        """End the current wait at once."""
        self._woken.set()

    async def wait(self, seconds: float) -> None:
        """Until woken, the next row comes due, or `seconds` pass."""
        due = self._store.next_due(self._graph_ids)
        if due is not None:
            seconds = min(seconds, max(0.0, (due - utcnow()).total_seconds()))
        await wait_for_event(self._woken, seconds)
        self._woken.clear()

    async def close(self) -> None:
        """Nothing to stop: the store is in this process."""
