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
    timeout_seconds: float = 5.0,
    prepared_statements: bool = True,
) -> AsyncConnectionPool[Any]:
    """An open pool of autocommit connections; a checkout waits at most `timeout_seconds`."""
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        conninfo,
        min_size=min_size,
        max_size=max_size,
        kwargs={
            "autocommit": True,
            "application_name": application_name,
            # Behind PgBouncer in transaction mode, server-side prepared statements break.
            **({} if prepared_statements else {"prepare_threshold": None}),
        },
        check=AsyncConnectionPool.check_connection,
        open=False,
        timeout=timeout_seconds,
        name=application_name,
    )
    await pool.open(wait=True, timeout=POOL_OPEN_TIMEOUT_SECONDS)
    return pool
