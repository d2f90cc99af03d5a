"""AsyncioExecutionQueue: a bounded asyncio.Queue of ids, whose bound is the backpressure."""

from __future__ import annotations

import asyncio

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
