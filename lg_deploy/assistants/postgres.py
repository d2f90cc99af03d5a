"""PostgresAssistantStore: rows of lg_deploy.assistants and assistant_versions (assistants.sql)."""

from __future__ import annotations

from typing import Any, LiteralString, TypeVar

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from lg_deploy.assistants.models import (
    Assistant,
    AssistantChange,
    AssistantQuery,
    AssistantVersion,
    NewAssistant,
)
from lg_deploy.db.queries import query

Row = TypeVar("Row", Assistant, AssistantVersion)


def row_to(model: type[Row], row: dict[str, Any]) -> Row:
    """A row of either table as its model, taken as stored (the tables' checks hold it)."""
    fields = {name: row[name] for name in model.model_fields}
    fields["assistant_id"] = str(row["assistant_id"])
    return model.model_construct(**fields)


def _filters(query_: AssistantQuery) -> dict[str, Any]:
    return {"metadata": Jsonb(query_.metadata), "graph_id": query_.graph_id, "name": query_.name}


def _optional(value: dict[str, Any] | None) -> Jsonb | None:
    return None if value is None else Jsonb(value)


class PostgresAssistantStore:
    """Assistants in lg_deploy.assistants, their versions in assistant_versions, over a pool."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool

    async def create(self, new: NewAssistant) -> Assistant | None:
        """A new assistant at version 1 (a fresh id when none is given); None when it is taken."""
        params = {
            "assistant_id": new.assistant_id,
            "graph_id": new.graph_id,
            "name": new.name,
            "description": new.description,
            "config": Jsonb(new.config),
            "context": Jsonb(new.context),
            "metadata": Jsonb(new.metadata),
        }
        rows = await self._fetch("insert_assistant", params)
        return row_to(Assistant, rows[0]) if rows else None

    async def get(self, assistant_id: str) -> Assistant | None:
        """The assistant with this id, or None."""
        rows = await self._fetch("get_assistant", {"assistant_id": assistant_id})
        return row_to(Assistant, rows[0]) if rows else None

    async def update(self, assistant_id: str, change: AssistantChange) -> Assistant | None:
        """A new version (one past the highest) with `change` applied, made current, in one
        transaction with the assistant locked (so two updates get two versions)."""
        params = {
            "assistant_id": assistant_id,
            "graph_id": change.graph_id,
            "name": change.name,
            "description": change.description,
            "config": _optional(change.config),
            "context": _optional(change.context),
            "metadata": Jsonb(change.metadata),
        }
        async with (
            self._pool.connection() as conn,
            conn.transaction(),
            conn.cursor(row_factory=dict_row) as cur,
        ):
            await cur.execute(query("lock_assistant"), {"assistant_id": assistant_id})
            if await cur.fetchone() is None:
                return None
            await cur.execute(query("insert_assistant_version"), params)
            made = await cur.fetchone()
            assert made is not None  # the assistant is locked: it is there
            latest = {"assistant_id": assistant_id, "version": made["version"]}
            await cur.execute(query("set_assistant_version"), latest)
            row = await cur.fetchone()
        return None if row is None else row_to(Assistant, row)

    async def set_latest(self, assistant_id: str, version: int) -> Assistant | None:
        """Make an existing version current again; None when the assistant or version is absent."""
        params = {"assistant_id": assistant_id, "version": version}
        rows = await self._fetch("set_assistant_version", params)
        return row_to(Assistant, rows[0]) if rows else None

    async def delete(self, assistant_id: str) -> bool:
        """Delete the assistant and its versions; False when there was none."""
        return bool(await self._fetch("delete_assistant", {"assistant_id": assistant_id}))

    async def search(self, query_: AssistantQuery) -> list[Assistant]:
        """One page of the assistants `query_` asks for, in its order (the id breaks ties)."""
        params = {
            **_filters(query_),
            "sort_by": query_.sort_by,
            "descending": query_.descending,
            "limit": query_.limit,
            "offset": query_.offset,
        }
        return [row_to(Assistant, row) for row in await self._fetch("search_assistants", params)]

    async def count(self, query_: AssistantQuery) -> int:
        """How many assistants match `query_`'s filters (its order and page aside)."""
        rows = await self._fetch("count_assistants", _filters(query_))
        return int(rows[0]["count"])

    async def versions(
        self, assistant_id: str, metadata: dict[str, Any], limit: int, offset: int
    ) -> list[AssistantVersion]:
        """One page of an assistant's versions whose metadata contains `metadata`, newest first."""
        params = {
            "assistant_id": assistant_id,
            "metadata": Jsonb(metadata),
            "limit": limit,
            "offset": offset,
        }
        rows = await self._fetch("assistant_versions", params)
        return [row_to(AssistantVersion, row) for row in rows]

    async def _fetch(self, name: LiteralString, params: dict[str, Any]) -> list[dict[str, Any]]:
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query(name), params)
            rows: list[dict[str, Any]] = await cur.fetchall()
            return rows
