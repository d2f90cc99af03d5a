"""PostgresExecutionStore (LLD 4.3): durable state in lg_deploy.executions through a pool."""

from __future__ import annotations

from typing import Any, LiteralString

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from lg_deploy.db.queries import query
from lg_deploy.errors import ExecutionExists, InvalidTransition
from lg_deploy.models import (
    MUTABLE_FIELDS,
    ExecutionEvent,
    ExecutionState,
    ExecutionStatus,
    PageCursor,
    StatusCount,
)
from lg_deploy.store.memory import check_new
from lg_deploy.store.protocol import check_transition, explain_refusal


def row_to_state(row: dict[str, Any]) -> ExecutionState:
    """The one place a lg_deploy.executions row becomes an ExecutionState."""
    fields = {name: row[name] for name in ExecutionState.model_fields}
    fields["execution_id"] = str(row["execution_id"])
    return ExecutionState.model_validate(fields)


class PostgresExecutionStore:
    """Store backed by lg_deploy.executions; the database guards every transition."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool

    async def create(self, state: ExecutionState) -> ExecutionState:
        """Persist a new QUEUED execution and return it as stored (clocks from the database)."""
        check_new(state)
        params = {
            "execution_id": state.execution_id,
            "graph_id": state.graph_id,
            "input": Jsonb(state.input),
            "max_attempts": state.max_attempts,
            "priority": state.priority,
            "run_at": state.run_at if "run_at" in state.model_fields_set else None,
            "request_id": state.request_id,
            "idempotency_key": state.idempotency_key,
        }
        try:
            row = await self._fetch_one(query("insert_execution"), params)
        except psycopg.errors.UniqueViolation as error:
            raise ExecutionExists(state.execution_id) from error
        assert row is not None
        return row_to_state(row)

    async def get(self, execution_id: str) -> ExecutionState | None:
        """The execution with this id, or None."""
        row = await self._fetch_one(query("get_execution"), {"execution_id": execution_id})
        return row_to_state(row) if row else None

    async def update(
        self, state: ExecutionState, *, expected_status: ExecutionStatus
    ) -> ExecutionState:
        """Store `state` only if the row is still in `expected_status` (see ExecutionStore)."""
        check_transition(state, expected_status)
        params: dict[str, Any] = {name: getattr(state, name) for name in MUTABLE_FIELDS}
        params["output"] = None if state.output is None else Jsonb(state.output)
        params.update(
            execution_id=state.execution_id,
            expected_status=expected_status,
            expected_attempts=state.attempts,
            expected_worker_id=state.worker_id,
        )
        try:
            row = await self._fetch_one(query("update_execution"), params)
        except psycopg.errors.CheckViolation as error:
            raise InvalidTransition(state.execution_id, _first_line(error)) from error
        if row is None:
            stored = await self.get(state.execution_id)
            raise explain_refusal(state.execution_id, stored, state, expected_status)
        return row_to_state(row)

    async def list_executions(
        self,
        *,
        status: ExecutionStatus | None = None,
        graph_id: str | None = None,
        limit: int = 50,
        before: PageCursor | None = None,
    ) -> list[ExecutionState]:
        """Executions newest first, optionally filtered, strictly older than `before`."""
        params = {
            "status": status,
            "graph_id": graph_id,
            "limit": limit,
            "before_created_at": before.created_at if before else None,
            "before_execution_id": before.execution_id if before else None,
        }
        rows = await self._fetch_all(query("list_executions"), params)
        return [row_to_state(row) for row in rows]

    async def events(self, execution_id: str) -> list[ExecutionEvent]:
        """The history of one execution, oldest first (empty for an unknown id)."""
        rows = await self._fetch_all(query("list_events"), {"execution_id": execution_id})
        return [
            ExecutionEvent.model_validate({**row, "execution_id": str(row["execution_id"])})
            for row in rows
        ]

    async def count_active(self) -> list[StatusCount]:
        """How many executions are QUEUED and RUNNING, per graph."""
        rows = await self._fetch_all(query("count_active"), {})
        return [StatusCount.model_validate(row) for row in rows]

    async def _fetch_all(self, sql: LiteralString, params: dict[str, Any]) -> list[dict[str, Any]]:
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql, params)
            rows: list[dict[str, Any]] = await cur.fetchall()
            return rows

    async def _fetch_one(self, sql: LiteralString, params: dict[str, Any]) -> dict[str, Any] | None:
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql, params)
            row: dict[str, Any] | None = await cur.fetchone()
            return row


def _first_line(error: psycopg.Error) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__
