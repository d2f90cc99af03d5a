"""ExecutionStatus, ExecutionState and the one table of allowed status transitions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from lg_deploy.settings import DEFAULT_MAX_ATTEMPTS


class ExecutionStatus(StrEnum):
    """The lifecycle states of an execution (docs/schema.md, the lifecycle)."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    INTERRUPTED = "INTERRUPTED"  # stopped at interrupt() or a breakpoint; resumed by a new run


# How a cancel stops a run: it ends FAILED "cancelled" (interrupt), or is then forgotten with
# the checkpoints it wrote (rollback, sql/migrations/0010).
CancelAction = Literal["interrupt", "rollback"]
# The platform's stream modes (executions_stream_mode_known in SQL says the same).
StreamMode = Literal[
    "values",
    "updates",
    "messages",
    "messages-tuple",
    "custom",
    "debug",
    "tasks",
    "checkpoints",
    "events",
]
ROLLBACK: CancelAction = "rollback"

FINAL_STATUSES: frozenset[ExecutionStatus] = frozenset(
    {ExecutionStatus.COMPLETED, ExecutionStatus.FAILED, ExecutionStatus.INTERRUPTED}
)

# The lifecycle, as pairs (from, to). sql/migrations/0001 holds the same pairs in
# lg_deploy.execution_transitions; a test proves the two agree.
ALLOWED_TRANSITIONS: frozenset[tuple[ExecutionStatus, ExecutionStatus]] = frozenset(
    {
        (ExecutionStatus.QUEUED, ExecutionStatus.RUNNING),
        (ExecutionStatus.QUEUED, ExecutionStatus.FAILED),
        (ExecutionStatus.RUNNING, ExecutionStatus.COMPLETED),
        (ExecutionStatus.RUNNING, ExecutionStatus.FAILED),
        (ExecutionStatus.RUNNING, ExecutionStatus.QUEUED),
        (ExecutionStatus.RUNNING, ExecutionStatus.INTERRUPTED),
    }
)


# The fields an update may change; identity, input and the clocks belong to the store.
MUTABLE_FIELDS: tuple[str, ...] = (
    "status",
    "output",
    "error",
    "traceback",
    "attempts",
    "max_attempts",
    "priority",
    "run_at",
    "worker_id",
    "lease_expires_at",
    "interrupts",
)


def can_transition(current: ExecutionStatus, new: ExecutionStatus) -> bool:
    """True when an execution in `current` may move to `new` (same status: while not final)."""
    if current == new:
        return current not in FINAL_STATUSES
    return (current, new) in ALLOWED_TRANSITIONS


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def new_execution_id() -> str:
    """A fresh random execution id (UUID text)."""
    return str(uuid.uuid4())


class ExecutionState(BaseModel):
    """The persisted state of one execution: a row of lg_deploy.executions (docs/schema.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    execution_id: str = Field(default_factory=new_execution_id)
    graph_id: str = Field(min_length=1, max_length=200)
    status: ExecutionStatus = ExecutionStatus.QUEUED
    input: dict[str, Any] | None = Field(
        description="null only on a thread: continue from its last checkpoint"
    )
    output: dict[str, Any] | None = None
    error: str | None = None
    traceback: str | None = Field(
        default=None, description="the full traceback behind `error`, when a graph raised"
    )
    created_at: AwareDatetime = Field(default_factory=utcnow)
    updated_at: AwareDatetime = Field(default_factory=utcnow)
    attempts: int = Field(default=0, ge=0)
    max_attempts: int = Field(default=DEFAULT_MAX_ATTEMPTS, ge=1)
    priority: int = Field(default=0, ge=-100, le=100)
    run_at: AwareDatetime = Field(default_factory=utcnow)
    worker_id: str | None = None
    lease_expires_at: AwareDatetime | None = None
    started_at: AwareDatetime | None = None
    finished_at: AwareDatetime | None = None
    request_id: str | None = None
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    timeout_seconds: float | None = Field(default=None, gt=0, le=604_800)
    cancel_requested_at: AwareDatetime | None = None
    cancel_action: CancelAction | None = Field(
        default=None, description="interrupt, or rollback: forgotten once it ends cancelled"
    )
    metadata: dict[str, Any] = Field(default_factory=dict)
    thread_id: str | None = Field(default=None, description="the thread this run continues")
    config: dict[str, Any] = Field(default_factory=dict, description="the run's LangGraph config")
    context: dict[str, Any] = Field(default_factory=dict, description="the run's runtime context")
    command: dict[str, Any] | None = Field(
        default=None, description="a LangGraph Command (resume, update, goto) instead of input"
    )
    interrupt_before: list[str] | None = Field(default=None, description='breakpoints; ["*"]: all')
    interrupt_after: list[str] | None = Field(default=None, description='breakpoints; ["*"]: all')
    multitask_strategy: str | None = Field(
        default=None, description="reject, enqueue, interrupt or rollback, as the run asked"
    )
    interrupts: dict[str, Any] | None = Field(
        default=None, description="INTERRUPTED: pending interrupts by task id"
    )
    assistant_id: str | None = Field(
        default=None, description="the stored assistant it was created with; null: its graph's"
    )
    stream_mode: list[StreamMode] | None = Field(
        default=None, description="stream modes recorded in run_events; null: none"
    )
    stream_subgraphs: bool = Field(default=False, description="record subgraphs' events too")
    stream_resumable: bool = Field(default=False, description="its events carry SSE ids")
    webhook: str | None = Field(
        default=None,
        max_length=2048,
        description="POSTed to once final (docs/webhooks.md); null: the deployment default",
    )

    @field_validator("execution_id", "thread_id", "assistant_id")
    @classmethod
    def _canonical_uuid(cls, value: str | None) -> str | None:
        """Execution, thread and assistant ids are UUIDs in canonical lower-case text form."""
        return None if value is None else str(uuid.UUID(value))

    @model_validator(mode="after")
    def _lifecycle_invariants(self) -> ExecutionState:
        """The same row invariants as the CHECK constraints of lg_deploy.executions."""
        _check_row_invariants(self)
        return self

    @property
    def is_final(self) -> bool:
        """True once the execution is COMPLETED, FAILED or INTERRUPTED."""
        return self.status in FINAL_STATUSES

    def evolve(self, **changes: Any) -> ExecutionState:
        """A validated copy with `changes` applied."""
        return ExecutionState.model_validate({**self.__dict__, **changes})

    def advance(self, **changes: Any) -> ExecutionState:
        """A copy with `changes` lg-deploy computed itself: row invariants checked, fields not.

        The worker's outcomes take this path (a third of `evolve`'s cost); anything from
        outside goes through `evolve`.
        """
        moved = self.model_copy(update=changes)
        _check_row_invariants(moved)
        return moved


def _check_row_invariants(state: ExecutionState) -> None:
    """Raise ValueError unless `state` keeps the CHECK constraints of lg_deploy.executions."""
    if state.attempts > state.max_attempts:
        raise ValueError("attempts cannot exceed max_attempts")
    if state.input is None and state.thread_id is None:
        raise ValueError("input may be null only on a thread (to continue it)")
    if state.command is not None and state.thread_id is None:
        raise ValueError("a command needs a thread to resume")
    if state.cancel_action is not None and state.cancel_requested_at is None:
        raise ValueError("a cancel action needs a cancel request")
    if state.status == ExecutionStatus.QUEUED and state.attempts >= state.max_attempts:
        raise ValueError("a QUEUED execution must have attempts left")
    if state.status == ExecutionStatus.RUNNING and (
        state.worker_id is None or state.lease_expires_at is None
    ):
        raise ValueError("a RUNNING execution must have a worker_id and a lease")


class ExecutionEvent(BaseModel):
    """One row of an execution's history: its insert or one status change."""

    model_config = ConfigDict(frozen=True)

    event_id: int
    execution_id: str
    from_status: ExecutionStatus | None
    to_status: ExecutionStatus
    at: AwareDatetime
    worker_id: str | None = None
    attempt: int
    error: str | None = None
    traceback: str | None = None


class LeaseRenewal(BaseModel):
    """What a lease renewal found: executions still held, and those asked to stop."""

    model_config = ConfigDict(frozen=True)

    held: frozenset[str]
    cancel_requested: frozenset[str]


class StatusCount(BaseModel):
    """How many executions of one graph are in one status."""

    model_config = ConfigDict(frozen=True)

    graph_id: str
    status: ExecutionStatus
    count: int


class UnservedGraph(BaseModel):
    """A graph with QUEUED executions no live worker serves (view lg_deploy.unserved_graphs)."""

    model_config = ConfigDict(frozen=True)

    graph_id: str
    queued: int = Field(description="its QUEUED executions")
    due: int = Field(description="of those, the ones whose run_at has come")
    oldest_due_at: AwareDatetime | None = Field(description="run_at of the longest-waiting one")
    waiting_seconds: float = Field(description="how long that one has waited since it was due")
    last_served_at: AwareDatetime | None = Field(
        description="when a worker serving this graph last started; null: never served"
    )


class PageCursor(BaseModel):
    """Where a newest-first listing continues: strictly older than this (created_at, id)."""

    model_config = ConfigDict(frozen=True)

    created_at: AwareDatetime
    execution_id: str


@dataclass(frozen=True)
class Finish:
    """A run's final outcome, recorded for the attempt that ran it (ExecutionStore.finish_running).

    Only status, output, error, traceback and interrupts are written: what an operator changed
    on the row meanwhile (its priority, max_attempts) stays.
    """

    running: ExecutionState
    status: ExecutionStatus
    output: dict[str, Any] | None = None
    error: str | None = None
    traceback: str | None = None
    interrupts: dict[str, Any] | None = None  # INTERRUPTED: the pending ones, by task id

    def __post_init__(self) -> None:
        if self.status not in FINAL_STATUSES:
            raise ValueError(f"a finish is COMPLETED, FAILED or INTERRUPTED, not {self.status}")


@dataclass(frozen=True)
class Requeue:
    """A run returned to the queue by the attempt that held it (ExecutionStore.requeue_running).

    The row decides with its own max_attempts: QUEUED with `error` (and, when `numbered`, the
    attempt it was and how many it has) due at `run_at` (its own when None), or FAILED with
    `final_error` when no attempts are left. Only status, error, traceback and run_at change.
    """

    running: ExecutionState
    error: str
    final_error: str
    traceback: str | None = None
    run_at: datetime | None = None
    numbered: bool = False

    def error_if_requeued(self, attempts: int, max_attempts: int) -> str:
        """The error a QUEUED row keeps, as requeue_running words it."""
        if not self.numbered:
            return self.error
        return f"{self.error} (attempt {attempts} of {max_attempts}; retrying)"
