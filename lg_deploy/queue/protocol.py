"""The ExecutionQueue protocol (LLD 5.1): schedules execution ids, never state."""

from __future__ import annotations

from typing import Protocol


class ExecutionQueue(Protocol):
    """Hands execution ids to workers; the state itself is always read from the store."""

    async def enqueue(self, execution_id: str) -> None:
        """Make `execution_id` available to a worker (waits while a bounded queue is full)."""
        ...

    async def dequeue(self) -> str:
        """Wait for the next execution id to run; cancelling the wait loses no id."""
        ...
