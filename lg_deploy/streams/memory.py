"""The EventLog in this process, for the memory backend: what lg_deploy.run_events keeps."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lg_deploy.failures import error_parts
from lg_deploy.models import ExecutionState, ExecutionStatus
from lg_deploy.store.memory import InMemoryExecutionStore
from lg_deploy.streams.encode import dumps
from lg_deploy.streams.protocol import (
    ERROR_EVENT,
    RUN_DONE_EVENT,
    Attempt,
    RunEvents,
    StreamEvent,
)
from lg_deploy.worker.run import CANCELLED


@dataclass(frozen=True)
class _Row:
    event: StreamEvent
    thread_id: str | None


class InMemoryEventLog:
    """Stream events in a list; a run's end adds its error and run_done rows, as the trigger."""

    def __init__(
        self, store: InMemoryExecutionStore, wake: Callable[[str], None] | None = None
    ) -> None:
        self._store = store
        self._wake = wake
        self._rows: list[_Row] = []
        self._ids = itertools.count(1)
        store.stream_follower = self.run_changed

    async def append(self, attempt: Attempt, events: Sequence[tuple[str, str]]) -> int:
        """Append while the attempt holds its RUNNING run; 0 otherwise."""
        state = await self._store.get(attempt.execution_id)
        if state is None or not (
            state.status == ExecutionStatus.RUNNING
            and state.attempts == attempt.attempt
            and state.worker_id == attempt.worker_id
        ):
            return 0
        for event, data in events:
            self._add(state, event, data)
        self._notify(state)
        return len(events)

    def run_changed(self, before: ExecutionStatus | None, state: ExecutionState) -> None:
        """A run's status changed: a run that ends records its error and run_done rows."""
        if before == state.status or not state.is_final:
            return
        if state.status == ExecutionStatus.FAILED and state.cancel_action == "rollback":
            return  # forgotten, its events with it
        if (
            state.stream_mode is not None
            and state.status == ExecutionStatus.FAILED
            and state.error != CANCELLED
        ):
            self._add(state, ERROR_EVENT, dumps(error_parts(state.error)))
        if state.thread_id is not None:
            done = {"status": "run_done", "run_id": state.execution_id}
            self._add(state, RUN_DONE_EVENT, dumps(done))
        self._notify(state)

    async def run_events(self, execution_id: str, after: int, limit: int) -> RunEvents:
        """The run's status and events after `after`."""
        state = await self._store.get(execution_id)
        if state is None:
            return RunEvents(None, [])
        events = [
            row.event
            for row in self._rows
            if row.event.execution_id == execution_id
            and row.event.event_id > after
            and row.event.event != RUN_DONE_EVENT
        ]
        return RunEvents(state.status, events[:limit])

    async def last_run_event(self, execution_id: str) -> int:
        """The run's newest event id (0: none)."""
        ids = [r.event.event_id for r in self._rows if r.event.execution_id == execution_id]
        return max(ids, default=0)

    async def thread_events(self, thread_id: str, after: int, limit: int) -> list[StreamEvent]:
        """The thread's events after `after`."""
        found = [r.event for r in self._rows if r.thread_id == thread_id]
        return [event for event in found if event.event_id > after][:limit]

    async def last_thread_event(self, thread_id: str) -> int:
        """The thread's newest event id (0: none)."""
        return max((r.event.event_id for r in self._rows if r.thread_id == thread_id), default=0)

    def _add(self, state: ExecutionState, event: str, data: str) -> None:
        stored = StreamEvent(next(self._ids), state.execution_id, event, data)
        self._rows.append(_Row(stored, state.thread_id))

    def _notify(self, state: ExecutionState) -> None:
        if self._wake is not None:
            self._wake(",".join(k for k in (state.execution_id, state.thread_id) if k))
