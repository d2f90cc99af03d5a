"""The EventLog protocol: a run's stream events, appended by its attempt, read in order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from lg_deploy.models import FINAL_STATUSES, ExecutionStatus

ERROR_EVENT = "error"
RUN_DONE_EVENT = "run_done"  # a thread stream's end of one run (sent as a `metadata` event)
METADATA_EVENT = "metadata"


@dataclass(frozen=True)
class Attempt:
    """The attempt a batch of events belongs to: only it may append them."""

    execution_id: str
    attempt: int
    worker_id: str


@dataclass(frozen=True)
class StreamEvent:
    """One recorded event: its id (the SSE id), the run it is of, its name and JSON text."""

    event_id: int
    execution_id: str
    event: str
    data: str


@dataclass(frozen=True)
class RunEvents:
    """A read of one run's stream: its status (None: the run is gone) and the events after the
    cursor. Events commit before the status that ends the run."""

    status: ExecutionStatus | None
    events: list[StreamEvent]

    @property
    def finished(self) -> bool:
        """True when the run is gone or final: no event will follow these."""
        return self.status is None or self.status in FINAL_STATUSES


class EventLog(Protocol):
    """Where runs' stream events are kept (lg_deploy.run_events, or memory)."""

    async def append(self, attempt: Attempt, events: Sequence[tuple[str, str]]) -> int:
        """Append (event, data) pairs while `attempt` holds its run; how many were kept."""
        ...

    async def run_events(self, execution_id: str, after: int, limit: int) -> RunEvents:
        """The run's status and its events after event id `after`, oldest first."""
        ...

    async def last_run_event(self, execution_id: str) -> int:
        """The run's newest event id (0: none yet)."""
        ...

    async def thread_events(self, thread_id: str, after: int, limit: int) -> list[StreamEvent]:
        """A thread's events after `after` (all its runs', with run_done rows), oldest first."""
        ...

    async def last_thread_event(self, thread_id: str) -> int:
        """The thread's newest event id (0: none yet)."""
        ...
