"""The ExecutionQueue protocol (LLD 5.1): schedules execution ids; a claiming queue keeps states."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from lg_deploy.models import ExecutionState


class ExecutionQueue(Protocol):
    """Hands execution ids to workers; the state is the store's (or what a claim just stored)."""

    async def enqueue(self, execution_id: str) -> None:
        """Make `execution_id` available to a worker (waits while a bounded queue is full)."""
        ...

    async def dequeue(self) -> str:
        """Wait for the next execution id to run; cancelling the wait loses no id."""
        ...


@runtime_checkable
class ClaimingQueue(ExecutionQueue, Protocol):
    """A queue that is the store's table: dequeue claims the row, and keeps what it stored.

    A row stored QUEUED is already in such a queue (and the store announced it), so a caller
    that has just stored one only wakes the local claimer instead of enqueueing the id. Rows it
    claimed that no caller has taken yet are leased to the worker too, which renews them.
    """

    def claimed(self, execution_id: str) -> ExecutionState | None:
        """The state the claim of a dequeued id stored (handed over once), else None."""
        ...

    def wake(self) -> None:
        """Claim again now instead of at the next poll."""
        ...

    def held(self) -> dict[str, int]:
        """Rows claimed for this worker that no caller has taken yet, id -> attempt."""
        ...

    def forget(self, execution_id: str, *, claimed_before: float) -> bool:
        """Drop an untaken row claimed before `claimed_before` (monotonic) whose lease was lost."""
        ...

    async def hand_back(self, execution_ids: Iterable[str]) -> None:
        """Hand back untaken rows: QUEUED again, or FAILED "cancelled" if a cancel was asked."""
        ...
