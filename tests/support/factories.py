"""Builders of ExecutionState values and of rows moved along the lifecycle in a store."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from lg_deploy.models import ExecutionState, ExecutionStatus, utcnow
from lg_deploy.store.protocol import ExecutionStore

QUEUED, RUNNING = ExecutionStatus.QUEUED, ExecutionStatus.RUNNING
COMPLETED, FAILED = ExecutionStatus.COMPLETED, ExecutionStatus.FAILED


def make_state(**overrides: Any) -> ExecutionState:
    """A QUEUED execution of the echo graph; any field can be overridden."""
    fields: dict[str, Any] = {"graph_id": "echo", "input": {"n": 1}}
    fields.update(overrides)
    return ExecutionState(**fields)


def moved(state: ExecutionState, status: ExecutionStatus, **changes: Any) -> ExecutionState:
    """`state` asked to move to `status`; entering RUNNING claims it for worker-a."""
    if status == RUNNING and state.status != RUNNING:
        changes = {
            "attempts": state.attempts + 1,
            "worker_id": "worker-a",
            "lease_expires_at": utcnow() + timedelta(seconds=30),
            **changes,
        }
    if status == COMPLETED:
        changes = {"output": {"done": True}, **changes}
    if status == FAILED:
        changes = {"error": "boom", **changes}
    return state.evolve(status=status, **changes)


async def bring_to(store: ExecutionStore, status: ExecutionStatus) -> ExecutionState:
    """A new execution moved along the lifecycle until it is in `status`."""
    state = await store.create(make_state())
    if status == QUEUED:
        return state
    state = await store.update(moved(state, RUNNING), expected_status=QUEUED)
    if status == RUNNING:
        return state
    return await store.update(moved(state, status), expected_status=RUNNING)
