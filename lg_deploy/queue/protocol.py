"""The queue protocols: ExecutionQueue (a queue of ids) and the worker's Claimer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from lg_deploy.models import ExecutionState


class ExecutionQueue(Protocol):
    """Hands execution ids to consumers; the state is the store's."""

    async def enqueue(self, execution_id: str) -> None:
        """Make `execution_id` available (waits while a bounded queue is full)."""
        ...

    async def dequeue(self) -> str:
        """Wait for the next execution id; cancelling the wait loses no id."""
        ...


class Claimer(Protocol):
    """Claims due QUEUED rows of a store for one worker: the one path from queue to worker.

    A claim moves rows to RUNNING, leased to `worker_id`, highest priority first, then earliest
    `run_at`, then execution id, and returns them as stored.
    """

    worker_id: str

    async def claim(self, limit: int) -> list[ExecutionState]:
        """Claim up to `limit` due rows (none waits); the claimed rows, in claim order."""
        ...

    async def release(self, states: Sequence[ExecutionState]) -> None:
        """Give back claimed rows no run started: QUEUED, the claim uncounted (FAILED "cancelled"
        if a cancel was asked meanwhile); rows no longer held by this claim are left alone."""
        ...

    def wake(self) -> None:
        """Rows may be due now: end the current `wait` at once."""
        ...

    async def wait(self, seconds: float) -> None:
        """Until `wake`, a sign of new rows, the next row coming due, or `seconds` pass."""
        ...

    async def close(self) -> None:
        """Stop listening for new rows."""
        ...
