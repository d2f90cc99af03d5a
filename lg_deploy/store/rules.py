"""The rules both stores apply, as the SQL schema does: new rows, transitions, refusals, expiry."""

from __future__ import annotations

from lg_deploy.errors import ExecutionNotFound, InvalidTransition, LgDeployError
from lg_deploy.models import ExecutionState, ExecutionStatus, can_transition


def check_new(state: ExecutionState) -> None:
    """Raise InvalidTransition unless `state` is a fresh QUEUED execution (as the SQL guard)."""
    fresh = (
        state.status == ExecutionStatus.QUEUED
        and state.attempts == 0
        and state.worker_id is None
        and state.lease_expires_at is None
        and state.output is None
        and state.error is None
        and state.traceback is None
        and state.started_at is None
        and state.finished_at is None
        and state.cancel_requested_at is None
    )
    if not fresh:
        message = "a new execution must be QUEUED, unclaimed and not yet run"
        raise InvalidTransition(state.execution_id, message)


def check_transition(state: ExecutionState, expected_status: ExecutionStatus) -> None:
    """Raise InvalidTransition unless the lifecycle allows expected_status -> state.status."""
    if not can_transition(expected_status, state.status):
        raise InvalidTransition(
            state.execution_id,
            f"cannot go from {expected_status} to {state.status}",
        )


def explain_refusal(
    execution_id: str,
    stored: ExecutionState | None,
    wanted: ExecutionState,
    expected_status: ExecutionStatus,
) -> LgDeployError:
    """The domain error for an update the store refused, from what is stored now."""
    if stored is None:
        return ExecutionNotFound(execution_id)
    if stored.status != expected_status:
        return InvalidTransition(
            execution_id, f"expected {expected_status} but it is {stored.status}"
        )
    return InvalidTransition(
        execution_id,
        f"attempt {wanted.attempts} by {wanted.worker_id} no longer owns it "
        f"(attempt {stored.attempts} by {stored.worker_id} does)",
    )


def lease_expiry_outcome(row: ExecutionState) -> tuple[ExecutionStatus, str]:
    """What an expired lease turns a RUNNING row into, as the recover_expired query decides."""
    if row.cancel_requested_at is not None:
        return ExecutionStatus.FAILED, "cancelled"
    reason = (
        f"lease expired: worker {row.worker_id} stopped renewing "
        f"attempt {row.attempts} of {row.max_attempts}"
    )
    if row.attempts < row.max_attempts:
        return ExecutionStatus.QUEUED, reason
    return ExecutionStatus.FAILED, f"{reason}; no attempts left"
