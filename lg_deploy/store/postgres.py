"""PostgresExecutionStore: durable state in lg_deploy.executions through a pool."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, LiteralString

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from lg_deploy.db import jsonb
from lg_deploy.db.queries import query
from lg_deploy.errors import (
    ExecutionExists,
    ExecutionNotFound,
    IdempotencyKeyUsed,
    InvalidTransition,
    LgDeployError,
)
from lg_deploy.models import (
    MUTABLE_FIELDS,
    CancelAction,
    ExecutionEvent,
    ExecutionState,
    ExecutionStatus,
    Finish,
    LeaseRenewal,
    PageCursor,
    Requeue,
    StatusCount,
)
from lg_deploy.store.rules import check_new, check_transition, explain_refusal

# The columns finish_running and requeue_running return, as the database decided them; the
# rest are as the worker holds them, but for the lease, which an outcome ends.
HELD_DECIDED = (
    "status",
    "error",
    "run_at",
    "started_at",
    "finished_at",
    "updated_at",
    "cancel_requested_at",
)

STATE_FIELDS = tuple(ExecutionState.model_fields)
BLOCKING_CONNECT_TIMEOUT_SECONDS = 5


def row_to_state(row: dict[str, Any]) -> ExecutionState:
    """The one place a lg_deploy.executions row becomes an ExecutionState; it never refuses one.

    The table's CHECK constraints already hold every row, so the row is taken as it is: a value
    the model would refuse (an empty idempotency key inserted by SQL, say) must not make the row
    unreadable, or sink the claim that picked it up with its batch-mates.
    """
    fields = {name: row[name] for name in STATE_FIELDS}
    fields["execution_id"] = str(row["execution_id"])
    for name in ("thread_id", "assistant_id"):
        if row[name] is not None:
            fields[name] = str(row[name])
    fields["status"] = ExecutionStatus(row["status"])
    return ExecutionState.model_construct(**fields)


def insert_params(state: ExecutionState, delay_seconds: float) -> dict[str, Any]:
    """The parameters of query insert_execution for a new execution."""
    return {
        "execution_id": state.execution_id,
        "graph_id": state.graph_id,
        "input": None if state.input is None else Jsonb(state.input),
        "max_attempts": state.max_attempts,
        "priority": state.priority,
        "run_at": state.run_at if "run_at" in state.model_fields_set else None,
        "request_id": state.request_id,
        "idempotency_key": state.idempotency_key,
        "timeout_seconds": state.timeout_seconds,
        "metadata": Jsonb(state.metadata),
        "delay_seconds": delay_seconds,
        "thread_id": state.thread_id,
        "config": Jsonb(state.config),
        "context": Jsonb(state.context),
        "command": None if state.command is None else Jsonb(state.command),
        "interrupt_before": state.interrupt_before,
        "interrupt_after": state.interrupt_after,
        "multitask_strategy": state.multitask_strategy,
        "assistant_id": state.assistant_id,
        "stream_mode": state.stream_mode,
        "stream_subgraphs": state.stream_subgraphs,
        "stream_resumable": state.stream_resumable,
        "webhook": state.webhook,
    }


class PostgresExecutionStore:
    """Store backed by lg_deploy.executions; the database guards every transition."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool

    @property
    def pool(self) -> AsyncConnectionPool[Any]:
        """The pool this store talks through."""
        return self._pool

    async def create(self, state: ExecutionState, *, delay_seconds: float = 0.0) -> ExecutionState:
        """Persist a new QUEUED execution (clocks from the database; see ExecutionStore.create)."""
        check_new(state)
        params = insert_params(state, delay_seconds)
        try:
            row = await self._fetch_one(query("insert_execution"), params)
        except psycopg.errors.UniqueViolation as error:
            raise ExecutionExists(state.execution_id) from error
        if row is None:
            raise await self._key_used(state)
        return row_to_state(row)

    async def _key_used(self, state: ExecutionState) -> Exception:
        """The error for an insert that found its idempotency key taken (read in a new snapshot)."""
        key = state.idempotency_key
        assert key is not None
        row = await self._fetch_one(query("get_by_idempotency_key"), {"idempotency_key": key})
        if row is None:  # the holder was deleted in between: the caller may simply retry
            return InvalidTransition(state.execution_id, f"idempotency key {key!r} is busy; retry")
        return IdempotencyKeyUsed(row_to_state(row), key)

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
        params["interrupts"] = None if state.interrupts is None else Jsonb(state.interrupts)
        params.update(
            execution_id=state.execution_id,
            expected_status=expected_status,
            expected_attempts=state.attempts,
            expected_worker_id=state.worker_id,
        )
        try:
            row = await self._fetch_one(query("update_execution"), params)
        except (psycopg.errors.CheckViolation, psycopg.DataError) as error:
            raise InvalidTransition(state.execution_id, _first_line(error)) from error
        if row is None:
            stored = await self.get(state.execution_id)
            raise explain_refusal(state.execution_id, stored, state, expected_status)
        return row_to_state(row)

    async def finish_running(
        self, worker_id: str, finishes: Sequence[Finish]
    ) -> list[ExecutionState | LgDeployError]:
        """Final outcomes of held runs in one statement (see ExecutionStore.finish_running)."""
        rows = [
            {
                "execution_id": finish.running.execution_id,
                "attempt": finish.running.attempts,
                "status": finish.status.value,
                "output": finish.output,
                "error": finish.error,
                "traceback": finish.traceback,
                "interrupts": finish.interrupts,
            }
            for finish in finishes
        ]
        kept = [
            {"output": f.output, "traceback": f.traceback, "interrupts": f.interrupts}
            for f in finishes
        ]
        runs = [finish.running for finish in finishes]
        return await self._write_held("finish_running", worker_id, runs, rows, kept)

    async def requeue_running(
        self, worker_id: str, requeues: Sequence[Requeue]
    ) -> list[ExecutionState | LgDeployError]:
        """Held runs back to the queue in one statement (see ExecutionStore.requeue_running)."""
        rows = [
            {
                "execution_id": requeue.running.execution_id,
                "attempt": requeue.running.attempts,
                "error": requeue.error,
                "final_error": requeue.final_error,
                "traceback": requeue.traceback,
                "run_at": _iso(requeue.run_at),
                "numbered": requeue.numbered,
            }
            for requeue in requeues
        ]
        kept = [{"traceback": requeue.traceback} for requeue in requeues]
        runs = [requeue.running for requeue in requeues]
        return await self._write_held("requeue_running", worker_id, runs, rows, kept)

    async def _write_held(
        self,
        name: str,
        worker_id: str,
        runs: list[ExecutionState],
        rows: list[dict[str, Any]],
        kept: list[dict[str, Any]],
    ) -> list[ExecutionState | LgDeployError]:
        """Run an outcome statement over `rows`; each run's stored state, or why it was refused.

        A value that refuses one row refuses the statement, so then each is written alone, and
        only the row at fault gets the refusal.
        """
        if not rows:
            return []
        params = {"rows": jsonb.dumps(rows), "worker_id": worker_id}
        try:
            returned = await self._fetch_all(query(name), params)
        except (psycopg.errors.CheckViolation, psycopg.DataError) as error:
            if len(rows) == 1:
                return [InvalidTransition(runs[0].execution_id, _first_line(error))]
            results: list[ExecutionState | LgDeployError] = []
            for run, alone, own in zip(runs, rows, kept, strict=True):
                results.extend(await self._write_held(name, worker_id, [run], [alone], [own]))
            return results
        by_id = {row["execution_id"]: row for row in returned}
        results = []
        for run, own in zip(runs, kept, strict=True):
            if (stored_row := by_id.get(run.execution_id)) is None:
                stored = await self.get(run.execution_id)
                results.append(
                    explain_refusal(run.execution_id, stored, run, ExecutionStatus.RUNNING)
                )
            else:
                decided = {name: stored_row[name] for name in HELD_DECIDED}
                decided["status"] = ExecutionStatus(stored_row["status"])
                decided["lease_expires_at"] = None
                results.append(run.model_copy(update={**own, **decided}))
        return results

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

    async def list_thread_runs(
        self,
        thread_id: str,
        *,
        status: ExecutionStatus | None = None,
        limit: int = 10,
        offset: int = 0,
    ) -> list[ExecutionState]:
        """A thread's runs newest first, optionally of one status; one page."""
        params = {"thread_id": thread_id, "status": status, "limit": limit, "offset": offset}
        rows = await self._fetch_all(query("list_thread_runs"), params)
        return [row_to_state(row) for row in rows]

    async def delete_final(self, execution_id: str) -> bool:
        """Delete a finished execution and its events; False when absent or still in flight."""
        params = {"execution_id": execution_id}
        return await self._fetch_one(query("delete_final_execution"), params) is not None

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

    async def renew_leases(
        self, worker_id: str, held: dict[str, int], lease_seconds: float
    ) -> LeaseRenewal:
        """Extend the leases of {execution_id: attempt} this worker still holds (one statement)."""
        if not held:
            return LeaseRenewal(held=frozenset(), cancel_requested=frozenset())
        params = {
            "worker_id": worker_id,
            "execution_ids": list(held),
            "attempts": list(held.values()),
            "lease_seconds": lease_seconds,
        }
        rows = await self._fetch_all(query("renew_leases"), params)
        return LeaseRenewal(
            held=frozenset(str(row["execution_id"]) for row in rows),
            cancel_requested=frozenset(
                str(row["execution_id"]) for row in rows if row["cancel_requested"]
            ),
        )

    async def recover_expired(
        self, *, now: datetime | None = None, limit: int = 100
    ) -> list[tuple[str, ExecutionStatus]]:
        """Recover RUNNING executions whose lease passed (database clock unless `now` given)."""
        rows = await self._fetch_all(query("recover_expired"), {"now": now, "limit": limit})
        return [(str(row["execution_id"]), ExecutionStatus(row["status"])) for row in rows]

    async def request_cancel(
        self, execution_id: str, action: CancelAction = "interrupt"
    ) -> ExecutionState:
        """QUEUED: FAILED "cancelled" now; RUNNING: marked, and its worker told by NOTIFY."""
        params = {"execution_id": execution_id, "thread_id": None, "action": action}
        row = await self._fetch_one(query("request_cancel"), params)
        if row is not None:
            return row_to_state(row)
        current = await self.get(execution_id)
        if current is None:
            raise ExecutionNotFound(execution_id)
        raise InvalidTransition(execution_id, f"it is {current.status} and final")

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


def renew_leases_blocking(
    conninfo: str, worker_id: str, held: dict[str, int], lease_seconds: float
) -> None:
    """`renew_leases` on a connection of its own, with no event loop: for a thread to call."""
    params = {
        "worker_id": worker_id,
        "execution_ids": list(held),
        "attempts": list(held.values()),
        "lease_seconds": lease_seconds,
    }
    with psycopg.connect(
        conninfo,
        autocommit=True,
        connect_timeout=BLOCKING_CONNECT_TIMEOUT_SECONDS,
        application_name="lg-deploy-watchdog",
    ) as conn:
        conn.execute(query("renew_leases"), params)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _first_line(error: psycopg.Error) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__
