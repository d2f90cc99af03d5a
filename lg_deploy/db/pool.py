"""The connection pool: opened explicitly, autocommit, fast jsonb decoding; idle ones checked."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool

from lg_deploy.db import jsonb
from lg_deploy.settings import DEFAULT_POOL_MAX_SIZE, DEFAULT_POOL_TIMEOUT_SECONDS

POOL_OPEN_TIMEOUT_SECONDS = 30.0
UNREACHABLE_RETRY_SECONDS = 0.5
APPLICATION_NAME = "lg-deploy"
# A connection back in the pool for less than this was just proven alive by its last statement;
# only connections idle longer are checked with a round trip on checkout (pgxpool does the same).
CHECK_IDLE_SECONDS = 1.0

logger = logging.getLogger(__name__)
T = TypeVar("T")


async def open_pool(
    conninfo: str,
    *,
    min_size: int = 1,
    max_size: int = DEFAULT_POOL_MAX_SIZE,
    application_name: str = APPLICATION_NAME,
    timeout_seconds: float = DEFAULT_POOL_TIMEOUT_SECONDS,
    prepared_statements: bool = True,
    connection_kwargs: dict[str, Any] | None = None,
) -> AsyncConnectionPool[Any]:
    """An open pool of autocommit connections; a checkout waits at most `timeout_seconds`.

    A connection idle for `CHECK_IDLE_SECONDS` or more is checked on checkout; one found dead
    makes the pool test all its idle ones at once, so after a database restart the pool
    recovers in one step instead of one dead connection per wait.
    """
    sweeps: set[asyncio.Task[None]] = set()
    returned_at: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], float] = (
        weakref.WeakKeyDictionary()
    )

    async def stamp(conn: psycopg.AsyncConnection[Any]) -> None:
        returned_at[conn] = time.monotonic()

    async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
        set_json_loads(jsonb.loads, conn)

    async def check(conn: psycopg.AsyncConnection[Any]) -> None:
        if time.monotonic() - returned_at.get(conn, float("-inf")) < CHECK_IDLE_SECONDS:
            return
        try:
            await AsyncConnectionPool.check_connection(conn)
        except psycopg.Error:
            sweep = asyncio.get_running_loop().create_task(pool.check())
            sweeps.add(sweep)
            sweep.add_done_callback(sweeps.discard)
            raise

    kwargs: dict[str, Any] = {"autocommit": True, "application_name": application_name}
    if not prepared_statements:  # behind PgBouncer in transaction mode, server prepares break
        kwargs["prepare_threshold"] = None
    kwargs.update(connection_kwargs or {})
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        conninfo,
        min_size=min_size,
        max_size=max_size,
        kwargs=kwargs,
        configure=configure,
        check=check,
        reset=stamp,
        open=False,
        timeout=timeout_seconds,
        name=application_name,
    )
    await pool.open(wait=True, timeout=POOL_OPEN_TIMEOUT_SECONDS)
    return pool


async def while_unreachable(step: Callable[[], Awaitable[T]], what: str) -> T:
    """`step()`, run again while the server cannot be reached or drops the connection (down,
    starting up, crash-restarting) for up to POOL_OPEN_TIMEOUT_SECONDS, as a pool waits at open.

    For the one-off statements a process makes as it starts; `what` names the step in the log.
    """
    deadline = time.monotonic() + POOL_OPEN_TIMEOUT_SECONDS
    while True:
        try:
            return await step()
        except psycopg.OperationalError as error:
            if time.monotonic() > deadline:
                raise
            reason = str(error).strip().splitlines()[0]
            logger.warning(
                "%s: cannot reach the database yet (%s); retrying in %g s",
                what,
                reason,
                UNREACHABLE_RETRY_SECONDS,
            )
        await asyncio.sleep(UNREACHABLE_RETRY_SECONDS)
