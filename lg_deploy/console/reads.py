"""What the console reads and writes in PostgreSQL: the named queries of sql/queries/console.sql."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from lg_deploy.console.charts import MinuteCount
from lg_deploy.db.queries import query
from lg_deploy.models import ExecutionState
from lg_deploy.store.postgres import row_to_state

THROUGHPUT_MINUTES = 60
GRAPH_STATS_HOURS = 24


@dataclass(frozen=True)
class ExecutionFilter:
    """Which executions a listing wants; None: any."""

    status: str | None = None
    graph_id: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    metadata: dict[str, Any] | None = None
    thread_id: str | None = None
    execution_id: str | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True)
class Keyset:
    """Where a newest-first page continues: strictly before this (created_at, id)."""

    created_at: datetime
    row_id: str


class ConsoleReads:
    """The console's queries over one connection pool."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool

    async def _fetch(self, name: LiteralString, params: dict[str, Any]) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query(name), params)
            rows: list[dict[str, Any]] = await cur.fetchall()
            return rows

    async def queue_depth(self) -> list[dict[str, Any]]:
        """Per graph: QUEUED due now, QUEUED for later, RUNNING."""
        return await self._fetch("console_queue_depth", {})

    async def finished_per_minute(self, minutes: int = THROUGHPUT_MINUTES) -> list[MinuteCount]:
        """Completed and failed executions in each minute of the last `minutes`."""
        rows = await self._fetch("console_finished_per_minute", {"minutes": minutes})
        return [MinuteCount(r["minute"], r["completed"], r["failed"]) for r in rows]

    async def oldest_waiting(self) -> dict[str, Any] | None:
        """The QUEUED execution due for the longest time, or None."""
        rows = await self._fetch("console_oldest_waiting", {})
        return rows[0] if rows else None

    async def live_workers(self) -> list[dict[str, Any]]:
        """Workers alive now and the executions each runs."""
        return await self._fetch("console_live_workers", {})

    async def search(
        self, wanted: ExecutionFilter, before: Keyset | None, limit: int
    ) -> list[ExecutionState]:
        """One newest-first page of executions matching `wanted`, strictly before `before`."""
        params = {
            **wanted.__dict__,
            "metadata": None if wanted.metadata is None else Jsonb(wanted.metadata),
            "before_created_at": before.created_at if before else None,
            "before_execution_id": before.row_id if before else None,
            "limit": limit,
        }
        return [row_to_state(row) for row in await self._fetch("console_search_executions", params)]

    async def graph_names(self) -> list[str]:
        """Every graph served once or named by a waiting execution."""
        return [row["graph_id"] for row in await self._fetch("console_graph_names", {})]

    async def graph_stats(self, hours: int = GRAPH_STATS_HOURS) -> dict[str, dict[str, Any]]:
        """Per graph: how many finished in the last `hours`, by outcome."""
        rows = await self._fetch("console_graph_stats", {"hours": hours})
        return {row["graph_id"]: row for row in rows}

    async def run_events(self, execution_id: str, after: int, limit: int) -> list[dict[str, Any]]:
        """What the run streamed after event `after`, oldest first."""
        params = {"execution_id": execution_id, "after": after, "limit": limit}
        return await self._fetch("console_run_events", params)

    async def threads(
        self, status: str | None, before: Keyset | None, limit: int
    ) -> list[dict[str, Any]]:
        """One newest-first page of threads, with how many runs each has."""
        params = {
            "status": status,
            "before_created_at": before.created_at if before else None,
            "before_thread_id": before.row_id if before else None,
            "limit": limit,
        }
        return await self._fetch("console_list_threads", params)

    async def retry_failed(self, execution_ids: list[str], request_id: str | None) -> list[str]:
        """New QUEUED executions repeating the FAILED thread-less ones named; their ids."""
        params = {"execution_ids": execution_ids, "request_id": request_id}
        rows = await self._fetch("console_retry_failed", params)
        return [str(row["execution_id"]) for row in rows]
