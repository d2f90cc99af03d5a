"""The EventLog on lg_deploy.run_events: fenced batch appends, one NOTIFY per batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg.rows import dict_row, tuple_row
from psycopg_pool import AsyncConnectionPool

from lg_deploy.db.queries import query
from lg_deploy.models import ExecutionStatus
from lg_deploy.streams.protocol import Attempt, RunEvents, StreamEvent


class PostgresEventLog:
    """Runs' stream events in lg_deploy.run_events."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool

    async def append(self, attempt: Attempt, events: Sequence[tuple[str, str]]) -> int:
        """One INSERT and one NOTIFY for the batch, in one transaction; 0 for a stale attempt."""
        params = {
            "execution_id": attempt.execution_id,
            "attempt": attempt.attempt,
            "worker_id": attempt.worker_id,
            "events": [event for event, _ in events],
            "datas": [data for _, data in events],
        }
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("append_run_events"), params)
            row = await cur.fetchone()
        return int(row["appended"]) if row else 0

    async def run_events(self, execution_id: str, after: int, limit: int) -> RunEvents:
        """The run's status and events after `after`, read in one snapshot."""
        params = {"execution_id": execution_id, "after": after, "limit": limit}
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("read_run_events"), params)
            rows = await cur.fetchall()
        if not rows:
            return RunEvents(None, [])
        events = [
            StreamEvent(row["event_id"], execution_id, row["event"], row["data"])
            for row in rows
            if row["event_id"] is not None
        ]
        return RunEvents(ExecutionStatus(rows[0]["status"]), events)

    async def last_run_event(self, execution_id: str) -> int:
        """The run's newest event id (0: none yet)."""
        return await self._scalar(query("last_run_event"), {"execution_id": execution_id})

    async def thread_events(self, thread_id: str, after: int, limit: int) -> list[StreamEvent]:
        """A thread's events after `after`, oldest first."""
        params = {"thread_id": thread_id, "after": after, "limit": limit}
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("read_thread_events"), params)
            rows = await cur.fetchall()
        return [
            StreamEvent(row["event_id"], str(row["execution_id"]), row["event"], row["data"])
            for row in rows
        ]

    async def last_thread_event(self, thread_id: str) -> int:
        """The thread's newest event id (0: none yet)."""
        return await self._scalar(query("last_thread_event"), {"thread_id": thread_id})

    async def _scalar(self, sql: Any, params: dict[str, Any]) -> int:
        async with self._pool.connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
            await cur.execute(sql, params)
            row = await cur.fetchone()
        return int(row[0]) if row else 0
