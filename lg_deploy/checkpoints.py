"""The optional LangGraph Postgres checkpointer, on the same database, in schema lg_deploy."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, cast

import psycopg
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
)
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg import AsyncCursor
from psycopg.rows import DictRow, dict_row, tuple_row
from psycopg_pool import AsyncConnectionPool

from lg_deploy.db.migrations import MIGRATION_LOCK_KEY
from lg_deploy.db.pool import open_pool, while_unreachable
from lg_deploy.db.queries import query
from lg_deploy.errors import ConfigError, StaleAttempt
from lg_deploy.graphs import FENCE_KEY

CHECKPOINT_POOL_MAX_SIZE = 4
CHECKPOINT_SCHEMA = "lg_deploy"
SEARCH_PATH_OPTION = f"-c search_path={CHECKPOINT_SCHEMA}"
# What PgBouncer answers a startup packet carrying `options` (its 1.18 and older do).
REFUSED_OPTIONS = "unsupported startup parameter"
SETUP_LOCK_KEY = MIGRATION_LOCK_KEY - 1
SETUP_POLL_SECONDS = 0.1
# Each collision is a step another process took, so there can be no more than the saver has.
SETUP_COLLISIONS = len(AsyncPostgresSaver.MIGRATIONS)

# What a setup running beside another one's DDL raises: catalog rows it just created, a deadlock.
_COLLISIONS = (
    psycopg.errors.UniqueViolation,
    psycopg.errors.DuplicateObject,
    psycopg.errors.DuplicateTable,
    psycopg.errors.DeadlockDetected,
)

logger = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def postgres_checkpointer(conninfo: str) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    """An AsyncPostgresSaver on its own small pool, its tables created in schema lg_deploy."""
    search_path = await while_unreachable(
        lambda: search_path_kwargs(conninfo), "checkpointer search path"
    )
    pool = await open_pool(
        conninfo,
        max_size=CHECKPOINT_POOL_MAX_SIZE,
        application_name="lg-deploy-checkpoints",
        prepared_statements=False,
        connection_kwargs={"row_factory": dict_row, **search_path},
    )
    try:
        saver = FencedPostgresSaver(pool)
        await while_unreachable(lambda: _setup_once(conninfo, saver), "checkpointer setup")
        yield saver
    finally:
        await pool.close()


class FencedPostgresSaver(AsyncPostgresSaver):
    """LangGraph's Postgres saver, refusing a run's checkpoint writes once its attempt no longer
    holds the run (StaleAttempt), as outcomes are fenced.

    A worker paused past its lease (a stopped process, a stalled host) goes on with its graph
    when it wakes, until its next lease beat tells it to stop; meanwhile another attempt may
    have finished the run, and the thread's next run begun: a step it saved then would become
    the thread's latest checkpoint. Each write of a run that names its attempt (FENCE_KEY in
    its configurable) first checks the run's row; a write already sent when the lease passes is
    not undone, so the window is one statement, not a lease beat.
    """

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Save a checkpoint, unless its attempt was taken over."""
        await self._check_fence(config)
        return await super().aput(config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Save a task's writes, unless its attempt was taken over."""
        await self._check_fence(config)
        await super().aput_writes(config, writes, task_id, task_path)

    @contextlib.asynccontextmanager
    async def _cursor(self, *, pipeline: bool = False) -> AsyncIterator[AsyncCursor[DictRow]]:
        """A cursor on a connection of its own from the pool, as LangGraph's saver gives, but
        without the saver's process-wide lock: that lock guards one shared connection, and on a
        pool it made every checkpoint read and write of every run in the process wait in one
        line (thread runs of a 16-slot worker ran one checkpoint statement at a time)."""
        pool = cast(AsyncConnectionPool[Any], self.conn)  # postgres_checkpointer gives a pool
        async with pool.connection() as conn:
            if not pipeline:
                async with conn.cursor(binary=True, row_factory=dict_row) as cur:
                    yield cur
            elif self.supports_pipeline:
                async with conn.pipeline(), conn.cursor(binary=True, row_factory=dict_row) as cur:
                    yield cur
            else:
                async with (
                    conn.transaction(),
                    conn.cursor(binary=True, row_factory=dict_row) as cur,
                ):
                    yield cur

    async def _check_fence(self, config: RunnableConfig) -> None:
        fence = config.get("configurable", {}).get(FENCE_KEY)
        if fence is None:
            return
        pool = cast(AsyncConnectionPool[Any], self.conn)  # postgres_checkpointer gives a pool
        async with pool.connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
            await cur.execute(query("attempt_holds_run"), fence)
            row = await cur.fetchone()
        if not (row and row[0]):
            raise StaleAttempt(fence["execution_id"], fence["attempt"])


async def search_path_kwargs(conninfo: str) -> dict[str, Any]:
    """The connection keywords that put the saver's unqualified tables in schema lg_deploy.

    LangGraph's saver names its tables without a schema, so its connections need lg_deploy
    first on their search_path: set by the startup `options`, or, behind a PgBouncer that
    refuses or drops those, by the server itself (PgBouncer's `connect_query`). Checked here
    once, so a server that does neither stops the start naming the fix instead of failing runs.
    """
    kwargs: dict[str, Any] = {"options": SEARCH_PATH_OPTION}
    try:
        conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True, **kwargs)
    except psycopg.OperationalError as error:
        if REFUSED_OPTIONS not in str(error):
            raise
        kwargs = {}
        conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
    async with conn:
        cursor = await conn.execute(query("search_path_head"))
        row = await cursor.fetchone()
    if not row or row[0] != CHECKPOINT_SCHEMA:
        raise ConfigError(
            f"LangGraph's checkpoint tables live in schema {CHECKPOINT_SCHEMA}, but this"
            f" connection's search path starts at {row[0] if row else None!r}: the server (a"
            " PgBouncer?) ignored the startup option search_path. Behind PgBouncer, add"
            f" connect_query='SET search_path = {CHECKPOINT_SCHEMA}, public' to the database"
            " entry lg-deploy uses (docs/operations.md, Behind PgBouncer)"
        )
    return kwargs


async def _setup_once(conninfo: str, saver: AsyncPostgresSaver) -> None:
    """Run the saver's setup in one process at a time (setup_once)."""
    await setup_once(
        conninfo, saver.setup, _is_current, collisions=SETUP_COLLISIONS, what="checkpointer"
    )


async def setup_once(
    conninfo: str,
    setup: Callable[[], Awaitable[None]],
    is_current: Callable[[psycopg.AsyncConnection[Any]], Awaitable[bool]],
    *,
    collisions: int,
    what: str,
) -> None:
    """Run a LangGraph `setup` in one process at a time, and tolerate two at once behind PgBouncer.

    A polled try-lock, not a blocking lock: setup runs CREATE INDEX CONCURRENTLY, which waits
    for other sessions' snapshots, so a process blocked on the lock would deadlock with it (and
    a lock held by an open transaction would too). Behind PgBouncer in transaction mode a
    session lock is taken on whichever server connection serves the statement, where another
    client's try can find it held by "itself": so each poll first checks whether the tables are
    already current, and a setup that collides with another one (a duplicate migration row, a
    catalog row the other just created, a deadlock between their DDL) starts over from that check,
    at most `collisions` times (each is a step another process took).
    """
    collided = 0
    async with await psycopg.AsyncConnection.connect(
        conninfo, autocommit=True, prepare_threshold=None
    ) as conn:
        while not await is_current(conn):  # current: a role without DDL rights can start
            cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)", (SETUP_LOCK_KEY,))
            row = await cursor.fetchone()
            if not (row and row[0]):
                await asyncio.sleep(SETUP_POLL_SECONDS)
                continue
            try:
                await setup()
            except _COLLISIONS:
                collided += 1
                if collided >= collisions:
                    raise
                logger.info("%s setup ran beside another process's; checking again", what)
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (SETUP_LOCK_KEY,))


async def tables_exist(conn: psycopg.AsyncConnection[Any]) -> bool:
    """Whether LangGraph's checkpoint tables exist (its saver creates them at the first start)."""
    cursor = await conn.execute(query("checkpoint_tables_exist"))
    row = await cursor.fetchone()
    return bool(row and row[0])


async def _is_current(conn: psycopg.AsyncConnection[Any]) -> bool:
    """True when LangGraph's checkpoint tables exist at the saver's latest version."""
    if not await tables_exist(conn):
        return False
    cursor = await conn.execute(query("checkpoint_version"))
    row = await cursor.fetchone()
    latest = len(AsyncPostgresSaver.MIGRATIONS) - 1
    return bool(row and row[0] is not None and row[0] >= latest)


def memory_checkpointer() -> BaseCheckpointSaver[Any]:
    """Checkpoints in this process only, for the memory backend."""
    return InMemorySaver()
