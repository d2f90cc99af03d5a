"""LangGraph's store (the /store routes, get_store() in graphs): Postgres in schema lg_deploy,
its expired items swept in the background; or langgraph's InMemoryStore for the memory backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from langgraph.store.base import BaseStore, TTLConfig
from langgraph.store.memory import InMemoryStore
from langgraph.store.postgres.aio import AsyncPostgresStore

from lg_deploy.checkpoints import search_path_kwargs, setup_once
from lg_deploy.db.pool import open_pool, while_unreachable
from lg_deploy.db.queries import query
from lg_deploy.settings import Settings
from lg_deploy.tasks import cancel_and_wait

ITEM_POOL_MAX_SIZE = 4
# Each collision is a step another process took, so there can be no more than the store has.
SETUP_COLLISIONS = len(AsyncPostgresStore.MIGRATIONS)
SECONDS_PER_MINUTE = 60.0

logger = logging.getLogger(__name__)


def ttl_config(settings: Settings) -> TTLConfig:
    """The store's TTL behaviour: expired items are never read (before the sweep deletes them),
    a read refreshes an item's TTL unless LG_DEPLOY_STORE_REFRESH_TTL_ON_READ is false, and an
    item put without a TTL gets LG_DEPLOY_STORE_DEFAULT_TTL_SECONDS (if set)."""
    config = TTLConfig(refresh_on_read=settings.store_refresh_ttl_on_read, omit_expired=True)
    if settings.store_default_ttl_seconds is not None:
        config["default_ttl"] = settings.store_default_ttl_seconds / SECONDS_PER_MINUTE
    return config


def memory_item_store() -> BaseStore:
    """Items in this process only, for the memory backend (no TTL: a put with one is refused)."""
    return InMemoryStore()


@contextlib.asynccontextmanager
async def postgres_item_store(conninfo: str, settings: Settings) -> AsyncIterator[BaseStore]:
    """An AsyncPostgresStore on its own small pool, its tables created in schema lg_deploy (as
    the checkpointer's are), expired items swept every LG_DEPLOY_STORE_TTL_SWEEP_SECONDS."""
    search_path = await while_unreachable(lambda: search_path_kwargs(conninfo), "store search path")
    pool = await open_pool(
        conninfo,
        max_size=ITEM_POOL_MAX_SIZE,
        application_name="lg-deploy-store",
        prepared_statements=False,
        connection_kwargs=search_path,
    )
    try:
        store = AsyncPostgresStore(pool, ttl=ttl_config(settings))
        try:
            await while_unreachable(
                lambda: setup_once(
                    conninfo, store.setup, _is_current, collisions=SETUP_COLLISIONS, what="store"
                ),
                "store setup",
            )
            async with ttl_sweep(store, settings.store_ttl_sweep_seconds):
                yield store
        finally:
            # The task batching its operations (langgraph starts it with the store) ends here,
            # not when the loop closes.
            await cancel_and_wait(store._task)
    finally:
        await pool.close()


@contextlib.asynccontextmanager
async def ttl_sweep(store: AsyncPostgresStore, interval_seconds: float) -> AsyncIterator[None]:
    """While the block runs: delete the expired items now, then every `interval_seconds`."""

    async def run() -> None:
        while True:
            try:
                deleted = await store.sweep_ttl()
                if deleted > 0:
                    logger.info("store TTL sweep deleted %d expired items", deleted)
            except Exception as error:
                logger.warning("store TTL sweep failed (%s); will retry", error)
            await asyncio.sleep(interval_seconds)

    task = asyncio.create_task(run(), name="lg-deploy-store-ttl")
    try:
        yield
    finally:
        await cancel_and_wait(task)


async def _is_current(conn: psycopg.AsyncConnection[Any]) -> bool:
    """True when LangGraph's store tables exist at the store's latest version."""
    cursor = await conn.execute(query("store_tables_exist"))
    row = await cursor.fetchone()
    if not (row and row[0]):
        return False
    cursor = await conn.execute(query("store_version"))
    row = await cursor.fetchone()
    latest = len(AsyncPostgresStore.MIGRATIONS) - 1
    return bool(row and row[0] is not None and row[0] >= latest)
