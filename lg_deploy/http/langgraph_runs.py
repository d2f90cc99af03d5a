"""Executions as the LangGraph Platform shows runs: the Run object, its status, its outcome.

A thread-less run's thread id is its run id. A cancelled execution is an `interrupted` run, and
a run whose graph stopped at an interrupt is `success` with its thread `interrupted`, as on the
platform.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from lg_deploy.assistants.catalog import assistant_id_of
from lg_deploy.failures import error_parts
from lg_deploy.models import ExecutionState, ExecutionStatus

RUN_STATUS = {
    ExecutionStatus.QUEUED: "pending",
    ExecutionStatus.RUNNING: "running",
    ExecutionStatus.COMPLETED: "success",
    ExecutionStatus.FAILED: "error",
    # The platform's run ends "success" when its graph stops at an interrupt; its thread says
    # "interrupted" (lg_deploy.threads).
    ExecutionStatus.INTERRUPTED: "success",
}
CANCELLED_ERROR = "cancelled"  # the error the worker and the SQL write on a cancelled execution
INTERRUPTED = "interrupted"


class Run(BaseModel):
    """The platform's Run: here, an execution."""

    run_id: str
    thread_id: str
    assistant_id: str
    status: str = Field(description="pending, running, success, error or interrupted (cancelled)")
    created_at: str
    updated_at: str
    metadata: dict[str, Any]
    kwargs: dict[str, Any]
    multitask_strategy: str


def run_assistant_id(state: ExecutionState) -> str:
    """The assistant a run was created with: its stored one, else its graph's system one."""
    return state.assistant_id or assistant_id_of(state.graph_id)


def is_cancelled(state: ExecutionState) -> bool:
    """True for an execution stopped on purpose (FAILED "cancelled")."""
    return state.status == ExecutionStatus.FAILED and state.error == CANCELLED_ERROR


def run_status(state: ExecutionState) -> str:
    """The platform's run status: a cancelled execution is `interrupted`, as there."""
    return INTERRUPTED if is_cancelled(state) else RUN_STATUS[state.status]


def thread_of(state: ExecutionState) -> str:
    """The thread a run is on: its own, or for a thread-less run its run id (as there)."""
    return state.thread_id or state.execution_id


def run_of(state: ExecutionState, multitask_strategy: str | None = None) -> dict[str, Any]:
    """An execution as the platform's Run object."""
    thread = thread_of(state)
    config = {**state.config}
    config["configurable"] = {**config.get("configurable", {}), "thread_id": thread}
    kwargs = {
        "input": state.input,
        "command": state.command,
        "config": config,
        "context": state.context,
        "interrupt_before": state.interrupt_before,
        "interrupt_after": state.interrupt_after,
        "stream_mode": state.stream_mode,
        "subgraphs": state.stream_subgraphs,
        "resumable": state.stream_resumable,
        "webhook": state.webhook,
    }
    return Run(
        run_id=state.execution_id,
        thread_id=thread,
        assistant_id=run_assistant_id(state),
        status=run_status(state),
        created_at=state.created_at.isoformat(),
        updated_at=state.updated_at.isoformat(),
        metadata=state.metadata,
        kwargs=kwargs,
        # the platform's default
        multitask_strategy=multitask_strategy or state.multitask_strategy or "enqueue",
    ).model_dump()


def outcome_of(state: ExecutionState) -> dict[str, Any]:
    """What /runs/wait and /join answer: the output, or the platform's __error__ object; a
    cancelled run, like an interrupted one there, answers its values (none reach lg-deploy)."""
    if state.status in (ExecutionStatus.COMPLETED, ExecutionStatus.INTERRUPTED):
        return state.output or {}
    if state.status == ExecutionStatus.FAILED and not is_cancelled(state):
        return {"__error__": error_parts(state.error)}
    return {}
