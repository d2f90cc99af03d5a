"""The ExecutionStore protocol: persistence of execution state, nothing else."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from lg_deploy.errors import LgDeployError
from lg_deploy.models import (
    CancelAction,
    ExecutionEvent,
    ExecutionState,
    ExecutionStatus,
    Finish,
    LeaseRenewal,
    PageCursor,
    Requeue,
    StatusCount,
)


class ExecutionStore(Protocol):
    """Creates, reads and atomically updates executions; every update is a guarded transition."""

    async def create(self, state: ExecutionState, *, delay_seconds: float = 0.0) -> ExecutionState:
        """Persist a new QUEUED execution and return it as stored.

        Without an explicit run_at it is due `delay_seconds` from now (store clock). Raises
        ExecutionExists for a taken id, IdempotencyKeyUsed (with the existing one) for a taken key.
        """
        ...

    async def get(self, execution_id: str) -> ExecutionState | None:
        """The execution with this id, or None."""
        ...

    async def update(
        self, state: ExecutionState, *, expected_status: ExecutionStatus
    ) -> ExecutionState:
        """Store `state` only if the stored row is still in `expected_status`.

        Leaving RUNNING also requires the stored attempt and worker to equal `state`'s (fencing).
        Raises ExecutionNotFound, or InvalidTransition when the guard refuses the change.
        """
        ...

    async def finish_running(
        self, worker_id: str, finishes: Sequence[Finish]
    ) -> list[ExecutionState | LgDeployError]:
        """Record each final outcome while its attempt by `worker_id` still holds the RUNNING row.

        Writes only status, output, error and traceback, in one step where the store can; the
        stored state of each, or its refusal (not found, lost the row, a value it cannot keep).
        """
        ...

    async def requeue_running(
        self, worker_id: str, requeues: Sequence[Requeue]
    ) -> list[ExecutionState | LgDeployError]:
        """Return held runs to the queue, or FAILED when the row has no attempts left (Requeue).

        Fenced and answered as `finish_running`; writes only status, error, traceback, run_at.
        """
        ...

    async def list_executions(
        self,
        *,
        status: ExecutionStatus | None = None,
        graph_id: str | None = None,
        limit: int = 50,
        before: PageCursor | None = None,
    ) -> list[ExecutionState]:
        """Executions newest first, optionally filtered, strictly older than `before`."""
        ...

    async def list_thread_runs(
        self,
        thread_id: str,
        *,
        status: ExecutionStatus | None = None,
        limit: int = 10,
        offset: int = 0,
    ) -> list[ExecutionState]:
        """A thread's runs newest first, optionally of one status; one page."""
        ...

    async def delete_final(self, execution_id: str) -> bool:
        """Delete a finished execution and its events; False when absent or still in flight."""
        ...

    async def events(self, execution_id: str) -> list[ExecutionEvent]:
        """The history of one execution, oldest first (empty for an unknown id)."""
        ...

    async def count_active(self) -> list[StatusCount]:
        """How many executions are QUEUED and RUNNING, per graph."""
        ...

    async def renew_leases(
        self, worker_id: str, held: dict[str, int], lease_seconds: float
    ) -> LeaseRenewal:
        """Extend the leases of {execution_id: attempt} this worker still holds, in one step."""
        ...

    async def recover_expired(
        self, *, now: datetime | None = None, limit: int = 100
    ) -> list[tuple[str, ExecutionStatus]]:
        """Recover RUNNING executions whose lease passed (QUEUED, or FAILED when none left)."""
        ...

    async def request_cancel(
        self, execution_id: str, action: CancelAction = "interrupt"
    ) -> ExecutionState:
        """QUEUED: FAILED "cancelled" now; RUNNING: marked for its worker to stop. With
        `action` rollback the run is forgotten as it ends cancelled (and its checkpoints).

        Raises ExecutionNotFound, or InvalidTransition when it is already final.
        """
        ...
