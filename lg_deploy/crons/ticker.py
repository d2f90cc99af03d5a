"""The cron ticker: each second, any process takes the due ticks of the crons no other process
is ticking, and creates their executions in the transaction that moves each cron on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from lg_deploy.crons.schedule import ScheduleError, due_ticks, next_tick
from lg_deploy.db.queries import query
from lg_deploy.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

CRONS_PER_PASS = 100


def plan(row: dict[str, Any], now: datetime, missed_seconds: float) -> dict[str, Any]:
    """What one pass does with one due cron: the ticks to run, its next tick, whether it stays
    enabled, and why not (a schedule it cannot read, or its end_time passed)."""
    cron_id = str(row["cron_id"])
    try:
        ticks: list[datetime] = []
        following: datetime | None
        if row["next_run_at"] is None:  # inserted by SQL: its first tick is the next one
            following = next_tick(row["schedule"], row["timezone"], now)
            if row["end_time"] is not None and following > row["end_time"]:
                following = None
        else:
            due = due_ticks(
                row["schedule"],
                row["timezone"],
                row["next_run_at"],
                now,
                missed_seconds=missed_seconds,
                end_time=row["end_time"],
            )
            ticks, following = due.run, due.next_run_at
    except ScheduleError as error:
        logger.warning("cron disabled: %s", error, extra={"cron_id": cron_id})
        return {
            "cron_id": cron_id,
            "ticks": [],
            "next_run_at": None,
            "enabled": False,
            "error": str(error),
        }
    return {
        "cron_id": cron_id,
        "ticks": [tick.isoformat() for tick in ticks],
        "next_run_at": following.isoformat() if following else None,
        "enabled": following is not None,
        "error": None,
    }


async def tick_once(
    pool: AsyncConnectionPool[Any], *, missed_seconds: float, max_attempts: int
) -> int:
    """One pass over the due crons; how many executions it created."""
    async with (
        pool.connection() as conn,
        conn.transaction(),
        conn.cursor(row_factory=dict_row) as cur,
    ):
        await cur.execute(query("lock_due_crons"), {"limit": CRONS_PER_PASS})
        due = await cur.fetchall()
        if not due:
            return 0
        now = datetime.now(UTC)
        plans = [plan(row, now, missed_seconds) for row in due]
        params = {"ticks": Jsonb(plans), "max_attempts": max_attempts}
        await cur.execute(query("take_cron_ticks"), params)
        made = await cur.fetchone()
    return int(made["made"]) if made else 0


@contextlib.asynccontextmanager
async def cron_loop(
    pool: AsyncConnectionPool[Any],
    *,
    interval_seconds: float,
    missed_seconds: float,
    max_attempts: int,
) -> AsyncIterator[None]:
    """Tick the crons every `interval_seconds` while the block runs (0: never)."""
    if interval_seconds <= 0:
        yield
        return

    async def loop() -> None:
        while True:
            try:
                made = await tick_once(
                    pool, missed_seconds=missed_seconds, max_attempts=max_attempts
                )
                if made:
                    logger.info("cron ticks created executions", extra={"count": made})
            except psycopg.OperationalError as error:
                logger.warning("cron tick failed (%s); trying again", type(error).__name__)
            except Exception:
                logger.exception("cron tick failed; trying again")
            await asyncio.sleep(interval_seconds)

    task = asyncio.get_running_loop().create_task(loop(), name="lg-deploy-crons")
    try:
        yield
    finally:
        await cancel_and_wait(task)
