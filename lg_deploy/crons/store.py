"""Crons in PostgreSQL: create, read, change, delete, search; rows become Cron in one place."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any, LiteralString

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from lg_deploy.crons.models import Cron, CronChanges, CronQuery, NewCron
from lg_deploy.crons.schedule import next_tick
from lg_deploy.db.queries import query

_JSON_FIELDS = ("input", "config", "context", "metadata", "payload")


def row_to_cron(row: dict[str, Any]) -> Cron:
    """The one place a lg_deploy.crons row becomes a Cron."""
    return Cron(
        cron_id=str(row["cron_id"]),
        assistant_id=str(row["assistant_id"] or row["graph_id"]),
        graph_id=row["graph_id"],
        thread_id=None if row["thread_id"] is None else str(row["thread_id"]),
        schedule=row["schedule"],
        timezone=row["timezone"],
        on_run_completed=None if row["thread_id"] else row["on_run_completed"],
        end_time=row["end_time"],
        enabled=row["enabled"],
        next_run_date=row["next_run_at"],
        last_tick_at=row["last_tick_at"],
        error=row["error"],
        payload=row["payload"],
        metadata=row["metadata"],
        user_id=row["user_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _jsonb(values: dict[str, Any]) -> dict[str, Any]:
    return {k: Jsonb(v) if k in _JSON_FIELDS and v is not None else v for k, v in values.items()}


class PostgresCronStore:
    """The crons table over one connection pool."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool

    async def _rows(self, name: LiteralString, params: dict[str, Any]) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query(name), params)
            rows: list[dict[str, Any]] = await cur.fetchall() if cur.description else []
            return rows

    async def create(self, cron: NewCron) -> Cron:
        """Store the cron with its first tick (ScheduleError for a schedule it cannot read)."""
        first: datetime | None = next_tick(cron.schedule, cron.timezone, datetime.now(UTC))
        if cron.end_time is not None and first is not None and first > cron.end_time:
            first = None
        params = _jsonb({**dataclasses.asdict(cron), "next_run_at": first, "user_id": None})
        (row,) = await self._rows("insert_cron", params)
        return row_to_cron(row)

    async def get(self, cron_id: str) -> Cron | None:
        """The cron, or None."""
        rows = await self._rows("get_cron", {"cron_id": cron_id})
        return row_to_cron(rows[0]) if rows else None

    async def update(self, cron_id: str, changes: CronChanges) -> Cron | None:
        """Apply `changes` and recompute the next tick from now; None when there is no cron."""
        current = await self.get(cron_id)
        if current is None:
            return None
        schedule = changes.schedule or current.schedule
        timezone = changes.timezone or current.timezone
        end_time = changes.end_time if changes.set_end_time else current.end_time
        following: datetime | None = next_tick(schedule, timezone, datetime.now(UTC))
        if end_time is not None and following is not None and following > end_time:
            following = None
        params = _jsonb({**dataclasses.asdict(changes), "cron_id": cron_id})
        params["next_run_at"] = following
        rows = await self._rows("update_cron", params)
        return row_to_cron(rows[0]) if rows else None

    async def delete(self, cron_id: str) -> bool:
        """Delete the cron (its executions stay); False when there was none."""
        return bool(await self._rows("delete_cron", {"cron_id": cron_id}))

    async def search(self, wanted: CronQuery) -> list[Cron]:
        """Every matching cron, newest first."""
        rows = await self._rows("search_crons", _jsonb(dataclasses.asdict(wanted)))
        return [row_to_cron(row) for row in rows]

    async def count(self, wanted: CronQuery) -> int:
        """How many crons match."""
        rows = await self._rows("count_crons", _jsonb(dataclasses.asdict(wanted)))
        return int(rows[0]["count"])
