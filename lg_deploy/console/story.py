"""One execution's history read as a story: its attempts, and the points of its timeline chart."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from lg_deploy.console.charts import TimelineEvent
from lg_deploy.models import ExecutionEvent, ExecutionStatus


@dataclass(frozen=True)
class Attempt:
    """One claim of an execution: who ran it, from when to when, and how it ended."""

    number: int
    worker_id: str | None
    started_at: datetime
    ended_at: datetime | None
    outcome: str | None
    error: str | None
    traceback: str | None

    @property
    def seconds(self) -> float | None:
        """How long the attempt ran (None while it runs)."""
        return None if self.ended_at is None else (self.ended_at - self.started_at).total_seconds()


def attempts_of(events: list[ExecutionEvent]) -> list[Attempt]:
    """Each RUNNING spell in the history, with the status change that ended it, oldest first."""
    attempts: list[Attempt] = []
    current: ExecutionEvent | None = None
    for event in events:
        if event.to_status == ExecutionStatus.RUNNING:
            current = event
            continue
        if current is not None and event.from_status == ExecutionStatus.RUNNING:
            attempts.append(_attempt(current, event))
            current = None
    if current is not None:
        attempts.append(_attempt(current, None))
    return attempts


def _attempt(start: ExecutionEvent, end: ExecutionEvent | None) -> Attempt:
    return Attempt(
        number=start.attempt,
        worker_id=start.worker_id,
        started_at=start.at,
        ended_at=end.at if end else None,
        outcome=end.to_status.value if end else None,
        error=end.error if end else None,
        traceback=end.traceback if end else None,
    )


def timeline_events(events: list[ExecutionEvent]) -> list[TimelineEvent]:
    """The history as the timeline chart's points."""
    return [TimelineEvent(e.at, e.to_status.value, e.attempt, e.worker_id) for e in events]
