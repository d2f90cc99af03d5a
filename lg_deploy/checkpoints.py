"""The optional LangGraph Postgres checkpointer, on the same database, in schema lg_deploy."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

CHECKPOINT_POOL_MAX_SIZE = 4


@contextlib.asynccontextmanager
async def postgres_checkpointer(conninfo: str) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    """An AsyncPostgresSaver on its own small pool, its tables created in schema lg_deploy."""
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        conninfo,
        max_size=CHECKPOINT_POOL_MAX_SIZE,
        kwargs={
            "autocommit": True,
            "row_factory": dict_row,
            "prepare_threshold": None,
            "options": "-c search_path=lg_deploy",
            "application_name": "lg-deploy-checkpoints",
        },
        check=AsyncConnectionPool.check_connection,
        open=False,
    )
    await pool.open(wait=True)
    try:
        saver = AsyncPostgresSaver(pool)
        await saver.setup()
        yield saver
    finally:
        await pool.close()


def memory_checkpointer() -> BaseCheckpointSaver[Any]:
    """Checkpoints in this process only, for the memory backend."""
    return InMemorySaver()
