"""PostgresThreadStore: threads as rows of lg_deploy.threads (sql/queries/threads.sql)."""

from __future__ import annotations

import uuid
from typing import Any, LiteralString

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from lg_deploy.checkpoints import tables_exist
from lg_deploy.db.queries import query
from lg_deploy.errors import InvalidTransition, ThreadBusy, ThreadNotFound
from lg_deploy.models import ExecutionState
from lg_deploy.store.postgres import insert_params, row_to_state
from lg_deploy.store.rules import check_new
from lg_deploy.threads.models import RunAdmission, Thread, ThreadQuery, ThreadStatus

THREAD_ADMISSION_LOCK = 0x6C677468  # the advisory lock class of thread admissions ("lgth")


def row_to_thread(row: dict[str, Any]) -> Thread:
    """A lg_deploy.threads row as a Thread, taken as stored (the table's checks hold it)."""
    fields = {name: row[name] for name in Thread.model_fields}
    fields["thread_id"] = str(row["thread_id"])
    fields["status"] = ThreadStatus(row["status"])
    return Thread.model_construct(**fields)


def _filters(query_: ThreadQuery) -> dict[str, Any]:
    return {
        "metadata": Jsonb(query_.metadata),
        "values": None if query_.values is None else Jsonb(query_.values),
        "status": None if query_.status is None else query_.status.value,
        "ids": query_.ids,
    }


class PostgresThreadStore:
    """Threads in lg_deploy.threads, over the service's pool."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool

    async def create(self, thread_id: str | None, metadata: dict[str, Any]) -> Thread | None:
        """A new idle thread (a fresh id when None); None when `thread_id` is taken."""
        params = {"thread_id": thread_id, "metadata": Jsonb(metadata)}
        rows = await self._fetch("insert_thread", params)
        return row_to_thread(rows[0]) if rows else None

    async def get(self, thread_id: str) -> Thread | None:
        """The thread with this id, or None."""
        rows = await self._fetch("get_thread", {"thread_id": thread_id})
        return row_to_thread(rows[0]) if rows else None

    async def merge_metadata(self, thread_id: str, metadata: dict[str, Any]) -> Thread | None:
        """Merge `metadata` into the thread's (given keys replace); the thread, or None."""
        params = {"thread_id": thread_id, "metadata": Jsonb(metadata)}
        rows = await self._fetch("merge_thread_metadata", params)
        return row_to_thread(rows[0]) if rows else None

    async def delete(self, thread_id: str) -> bool:
        """Delete the thread, its runs and its checkpoints; False when there was none."""
        return await self.delete_many([thread_id]) == 1

    async def delete_many(self, thread_ids: list[str]) -> int:
        """Delete the threads among `thread_ids` (runs and checkpoints too), in one transaction;
        how many existed."""
        async with self._pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(query("delete_threads"), {"ids": thread_ids})
            row = await cursor.fetchone()
            if await tables_exist(conn):
                params = {"thread_ids": [str(uuid.UUID(i)) for i in thread_ids]}
                await conn.execute(query("delete_thread_checkpoints"), params)
        return int(row[0]) if row else 0

    async def copy(self, thread_id: str) -> Thread | None:
        """A new thread with this one's metadata, values and checkpoints, in one transaction."""
        target = str(uuid.uuid4())
        async with (
            self._pool.connection() as conn,
            conn.transaction(),
            conn.cursor(row_factory=dict_row) as cur,
        ):
            await cur.execute(query("copy_thread"), {"source": thread_id, "target": target})
            row = await cur.fetchone()
            if row is None:
                return None
            if await tables_exist(conn):
                params = {"source": str(uuid.UUID(thread_id)), "target": target}
                await cur.execute(query("copy_thread_checkpoints"), params)
        return row_to_thread(row)

    async def search(self, query_: ThreadQuery) -> list[Thread]:
        """One page of the threads `query_` asks for, in its order."""
        params = {
            **_filters(query_),
            "sort_by": query_.sort_by,
            "descending": query_.descending,
            "limit": query_.limit,
            "offset": query_.offset,
        }
        return [row_to_thread(row) for row in await self._fetch("search_threads", params)]

    async def count(self, query_: ThreadQuery) -> int:
        """How many threads match `query_`'s filters and ids (its order and page aside)."""
        rows = await self._fetch("count_threads", _filters(query_))
        return int(rows[0]["count"])

    async def submit_run(self, state: ExecutionState, admission: RunAdmission) -> ExecutionState:
        """Add a QUEUED run to its thread in one transaction, holding the thread's admission
        lock (so two runs asking to be refused on a busy thread cannot both get in)."""
        check_new(state)
        thread_id = state.thread_id
        assert thread_id is not None
        async with (
            self._pool.connection() as conn,
            conn.transaction(),
            conn.cursor(row_factory=dict_row) as cur,
        ):
            lock = {"lock_class": THREAD_ADMISSION_LOCK, "thread_id": thread_id}
            await cur.execute(query("lock_thread_admission"), lock)
            await cur.execute(query("get_thread"), {"thread_id": thread_id})
            if await cur.fetchone() is None:
                if not admission.create_thread:
                    raise ThreadNotFound(thread_id)
                params = {"thread_id": thread_id, "metadata": Jsonb({})}
                await cur.execute(query("insert_thread"), params)
            if admission.reject_if_busy:
                await cur.execute(query("thread_runs_in_flight"), {"thread_id": thread_id})
                if await cur.fetchall():
                    raise ThreadBusy(thread_id)
            if admission.cancel_in_flight is not None:
                params = {
                    "execution_id": None,
                    "thread_id": thread_id,
                    "action": admission.cancel_in_flight,
                }
                await cur.execute(query("request_cancel"), params)
            labels = {
                "thread_id": thread_id,
                "graph_id": state.graph_id,
                "assistant_id": admission.assistant_id,
            }
            await cur.execute(query("label_thread_graph"), labels)
            await cur.execute(
                query("insert_execution"), insert_params(state, admission.delay_seconds)
            )
            row = await cur.fetchone()
        if row is None:  # its idempotency key is taken
            raise InvalidTransition(state.execution_id, "idempotency key already used")
        return row_to_state(row)

    async def set_state(
        self, thread_id: str, values: dict[str, Any], interrupts: dict[str, Any], interrupted: bool
    ) -> None:
        """Cache the thread's state after an update (see ThreadStore.set_state)."""
        params = {
            "thread_id": thread_id,
            "values": Jsonb(values),
            "interrupts": Jsonb(interrupts),
            "interrupted": interrupted,
        }
        async with self._pool.connection() as conn:
            await conn.execute(query("set_thread_state"), params)

    async def _fetch(self, name: LiteralString, params: dict[str, Any]) -> list[dict[str, Any]]:
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query(name), params)
            rows: list[dict[str, Any]] = await cur.fetchall()
            return rows
