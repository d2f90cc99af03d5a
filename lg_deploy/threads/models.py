"""Thread and ThreadQuery: one conversation as stored, and what a thread search asks for."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

from lg_deploy.models import CancelAction

SortKey = Literal["thread_id", "status", "created_at", "updated_at", "state_updated_at"]


class ThreadStatus(StrEnum):
    """A thread's status, as the LangGraph API names it."""

    IDLE = "idle"
    BUSY = "busy"
    INTERRUPTED = "interrupted"
    ERROR = "error"


class Thread(BaseModel):
    """One thread as stored (the LangGraph API's Thread resource)."""

    model_config = ConfigDict(frozen=True)

    thread_id: str
    status: ThreadStatus
    metadata: dict[str, Any]
    config: dict[str, Any]
    values: dict[str, Any] | None
    interrupts: dict[str, Any]
    error: Any
    created_at: AwareDatetime
    updated_at: AwareDatetime
    state_updated_at: AwareDatetime


@dataclass(frozen=True)
class ThreadQuery:
    """Which threads a search or count wants: containment filters, a status, ids, an order."""

    metadata: dict[str, Any]
    values: dict[str, Any] | None = None
    status: ThreadStatus | None = None
    ids: list[str] | None = None
    sort_by: SortKey = "created_at"
    descending: bool = True
    limit: int = 10
    offset: int = 0


@dataclass(frozen=True)
class RunAdmission:
    """How a run joins its thread: create a missing thread?, refuse if one is in flight?, or
    cancel those in flight first (interrupt, or rollback: forgotten with their checkpoints)?"""

    create_thread: bool = False
    reject_if_busy: bool = False
    cancel_in_flight: CancelAction | None = None
    assistant_id: str = ""  # labels the thread's metadata with graph_id and assistant_id
    delay_seconds: float = 0.0  # due this long after now (after_seconds)
