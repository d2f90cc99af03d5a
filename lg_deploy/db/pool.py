"""The connection pool: opened explicitly, autocommit, every connection checked on checkout."""

from __future__ import annotations

from typing import Any

from psycopg_pool import AsyncConnectionPool

POOL_OPEN_TIMEOUT_SECONDS = 30.0
APPLICATION_NAME = "lg-deploy"


async def open_pool(
    conninfo: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    application_name: str = APPLICATION_NAME,
) -> AsyncConnectionPool[Any]:
    """An open pool of autocommit connections to `conninfo`; raises if none can be made in time."""
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        conninfo,
        min_size=min_size,
        max_size=max_size,
        kwargs={"autocommit": True, "application_name": application_name},
        check=AsyncConnectionPool.check_connection,
        open=False,
        name=application_name,
    )
    await pool.open(wait=True, timeout=POOL_OPEN_TIMEOUT_SECONDS)
    return pool
