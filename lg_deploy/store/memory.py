"""InMemoryExecutionStore (LLD 4.2): a dict behind a lock, with the same rules as PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

from lg_deploy.errors import ExecutionExists, InvalidTransition
from lg_deploy.models import MUTABLE_FIELDS, ExecutionState, ExecutionStatus, utcnow
from lg_deploy.store.protocol import check_transition, explain_refusal


class InMemoryExecutionStore:
    """Single-process store for development and tests; state is lost when the process ends."""

    def __init__(self) -> None:
        self._rows: dict[str, ExecutionState] = {}
        self._lock = asyncio.Lock()

    async def create(self, state: ExecutionState) -> ExecutionState:
        """Persist a new QUEUED execution and return it as stored."""
        check_new(state)
        async with self._lock:
            if state.execution_id in self._rows:
                raise ExecutionExists(state.execution_id)
            now = utcnow()
            run_at = state.run_at if "run_at" in state.model_fields_set else now
            stored = state.evolve(created_at=now, updated_at=now, run_at=run_at)
            self._rows[state.execution_id] = stored
            return stored

    async def get(self, execution_id: str) -> ExecutionState | None:
        """The execution with this id, or None."""
        return self._rows.get(execution_id)

    async def update(
        self, state: ExecutionState, *, expected_status: ExecutionStatus
    ) -> ExecutionState:
        """Store `state` only if the stored row is still in `expected_status` (and attempt)."""
        check_transition(state, expected_status)
        async with self._lock:
            stored = self._rows.get(state.execution_id)
            if stored is None or not _guard_holds(stored, state, expected_status):
                raise explain_refusal(state.execution_id, stored, state, expected_status)
            updated = stored.evolve(**_changes(stored, state))
            self._rows[state.execution_id] = updated
            return updated


def check_new(state: ExecutionState) -> None:
    """Raise InvalidTransition unless `state` is a fresh QUEUED execution (as the SQL guard)."""
    fresh = (
        state.status == ExecutionStatus.QUEUED
        and state.attempts == 0
        and state.worker_id is None
        and state.lease_expires_at is None
        and state.output is None
    )
    if not fresh:
        raise InvalidTransition(state.execution_id, "a new execution must be QUEUED and unclaimed")


def _guard_holds(
    stored: ExecutionState, wanted: ExecutionState, expected_status: ExecutionStatus
) -> bool:
    if stored.status != expected_status:
        return False
    if stored.status != ExecutionStatus.RUNNING:
        return True
    return stored.attempts == wanted.attempts and stored.worker_id == wanted.worker_id


def _changes(stored: ExecutionState, wanted: ExecutionState) -> dict[str, Any]:
    """The mutable fields of `wanted` plus the clocks, as the SQL guard trigger keeps them."""
    now = utcnow()
    changes: dict[str, Any] = {name: getattr(wanted, name) for name in MUTABLE_FIELDS}
    changes["updated_at"] = now
    if wanted.status != stored.status:
        if wanted.status == ExecutionStatus.RUNNING:
            changes["started_at"] = now
        elif wanted.status == ExecutionStatus.QUEUED:
            changes["lease_expires_at"] = None
        else:
            changes.update(finished_at=now, lease_expires_at=None)
    return changes
