"""Retention: delete finished executions (their history, checkpoints) and old stream events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

from psycopg_pool import AsyncConnectionPool

from lg_deploy.checkpoints import tables_exist
from lg_deploy.db.queries import query
from lg_deploy.tasks import cancel_and_wait
from lg_deploy.threads.postgres import PostgresThreadStore

logger = logging.getLogger(__name__)

PRUNE_BATCH_SIZE = 500
_DURATION = re.compile(r"^\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_duration(text: str) -> float:
    """Seconds in "90", "45s", "30m", "12h", "7d" or "2w"; ValueError otherwise."""
    match = _DURATION.match(text.lower())
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 90s, 30m, 12h, 7d or 2w")
    return float(match["number"]) * _UNIT_SECONDS[match["unit"]]


async def count_prunable(pool: AsyncConnectionPool[Any], older_than_seconds: float) -> int:
    """How many finished executions are older than `older_than_seconds`."""
    async with pool.connection() as conn:
        cursor = await conn.execute(
            query("count_prunable"), {"older_than_seconds": older_than_seconds}
        )
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def prune(
    pool: AsyncConnectionPool[Any],
    older_than_seconds: float,
    *,
    batch_size: int = PRUNE_BATCH_SIZE,
) -> int:
    """Delete every finished execution older than the cut-off, one short transaction per batch."""
    deleted = 0
    async for batch in _batches(pool, older_than_seconds, batch_size):
        deleted += batch
    return deleted


async def _batches(
    pool: AsyncConnectionPool[Any], older_than_seconds: float, batch_size: int
) -> AsyncIterator[int]:
    params = {"older_than_seconds": older_than_seconds, "batch_size": batch_size}
    while True:
        async with pool.connection() as conn:
            cursor = await conn.execute(query("prune_finished"), params)
            ids = [row[0] for row in await cursor.fetchall()]
            if ids and await tables_exist(conn):
                await conn.execute(query("delete_thread_checkpoints"), {"thread_ids": ids})
        if not ids:
            return
        yield len(ids)
        await asyncio.sleep(0)  # let other work use the pool between batches


async def prune_stream_events(
    pool: AsyncConnectionPool[Any],
    older_than_seconds: float,
    *,
    batch_size: int = PRUNE_BATCH_SIZE,
) -> int:
    """Delete the stream events of runs final for longer than the cut-off, batch by batch."""
    params = {"older_than_seconds": older_than_seconds, "batch_size": batch_size}
    deleted = 0
    while True:
        async with pool.connection() as conn:
            cursor = await conn.execute(query("prune_run_events"), params)
        count: int = cursor.rowcount
        deleted += count
        if count < batch_size:
            return deleted
        await asyncio.sleep(0)


async def prune_threads(
    pool: AsyncConnectionPool[Any],
    ttl_seconds: float,
    *,
    batch_size: int = PRUNE_BATCH_SIZE,
) -> int:
    """Delete threads unchanged for `ttl_seconds` with no run in flight (their runs and
    checkpoints too), batch by batch; how many."""
    threads = PostgresThreadStore(pool)
    params = {"ttl_seconds": ttl_seconds, "batch_size": batch_size}
    deleted = 0
    while True:
        async with pool.connection() as conn:
            cursor = await conn.execute(query("expired_threads"), params)
            ids = [str(row[0]) for row in await cursor.fetchall()]
        if ids:
            deleted += await threads.delete_many(ids)
        if len(ids) < batch_size:
            return deleted
        await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def retention_loop(
    pool: AsyncConnectionPool[Any],
    retention_seconds: float | None,
    interval_seconds: float,
    *,
    stream_events_seconds: float | None = None,
    thread_ttl_seconds: float | None = None,
) -> AsyncIterator[None]:
    """While the block runs, every interval: prune executions older than `retention_seconds`,
    the stream events of runs final for longer than `stream_events_seconds`, and threads
    unchanged for `thread_ttl_seconds`."""
    if retention_seconds is None and stream_events_seconds is None and thread_ttl_seconds is None:
        yield
        return

    async def run() -> None:
        while True:
            try:
                if stream_events_seconds is not None:
                    events = await prune_stream_events(pool, stream_events_seconds)
                    if events > 0:
                        logger.info("retention deleted %d stream events", events)
                deleted = await prune(pool, retention_seconds) if retention_seconds else 0
                if deleted > 0:
                    logger.info("retention deleted %d finished executions", deleted)
                if thread_ttl_seconds is not None:
                    expired = await prune_threads(pool, thread_ttl_seconds)
                    if expired > 0:
                        logger.info("retention deleted %d expired threads", expired)
            except Exception as error:
                logger.warning("retention failed (%s); will retry", error)
            await asyncio.sleep(interval_seconds)

    task = asyncio.create_task(run(), name="lg-deploy-retention")
    try:
        yield
    finally:
        await cancel_and_wait(task)
