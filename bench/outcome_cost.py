"""Client CPU per row of the worker's two statements, for A/B of the store's hot path.

    ADMIN_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python -m bench.outcome_cost

Creates (and drops) the database lgd_outcome_cost on that server, puts 64 executions per call
in RUNNING, then times this process's CPU (not the server's) around 200 calls of each step:
`finish_running` of 64 outcomes (each call the next 64 rows), and reading 64 rows back as the
claim does, through lg-deploy's pool and through a plain psycopg connection.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from lg_deploy.db.migrations import migrate
from lg_deploy.db.pool import open_pool
from lg_deploy.models import ExecutionStatus, Finish
from lg_deploy.store.postgres import PostgresExecutionStore, row_to_state

ROWS = 64
CALLS = 200
WARM_UP = 20
DATABASE = "lgd_outcome_cost"


async def cpu_us_per_row(step: Callable[[], Awaitable[Any]]) -> float:
    """This process's CPU microseconds per row for one call of `step`, after a warm-up."""
    for _ in range(WARM_UP):
        await step()
    started = time.process_time()
    for _ in range(CALLS):
        await step()
    return (time.process_time() - started) / CALLS / ROWS * 1e6


async def measure(url: str) -> None:
    """Print the CPU cost per row of each step."""
    await migrate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO lg_deploy.executions (graph_id, input)"
            " SELECT 'noop', jsonb_build_object('n', i) FROM generate_series(1, %s) AS i",
            (ROWS * (CALLS + WARM_UP),),
        )
        conn.execute(
            "UPDATE lg_deploy.executions SET status = 'RUNNING', attempts = 1,"
            " worker_id = 'w', lease_expires_at = now() + interval '1 hour'"
        )
    pool = await open_pool(url, max_size=2)
    plain = await psycopg.AsyncConnection.connect(url, autocommit=True)
    try:
        store = PostgresExecutionStore(pool)

        async def read(conn: psycopg.AsyncConnection[Any]) -> list[dict[str, Any]]:
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute("SELECT * FROM lg_deploy.executions")
                return await cur.fetchall()

        async def read_pooled() -> list[dict[str, Any]]:
            async with pool.connection() as conn:
                return await read_some(conn)

        async def read_some(conn: psycopg.AsyncConnection[Any]) -> list[dict[str, Any]]:
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute("SELECT * FROM lg_deploy.executions LIMIT %s", (ROWS,))
                return await cur.fetchall()

        everything = [row_to_state(row) for row in await read(plain)]
        finishes = [Finish(s, ExecutionStatus.COMPLETED, output={"n": 1}) for s in everything]
        batches = iter([finishes[at : at + ROWS] for at in range(0, len(finishes), ROWS)])
        rows = await read_some(plain)
        gc.freeze()  # the rows prepared for later calls are not the step's garbage to scan

        async def update() -> None:
            await store.finish_running("w", next(batches))

        async def convert() -> None:
            [row_to_state(row) for row in rows]

        print(f"finish_running, {ROWS} outcomes: {await cpu_us_per_row(update):.1f} us/row")
        print(f"read rows, lg-deploy pool: {await cpu_us_per_row(read_pooled):.1f} us/row")
        plain_cost = await cpu_us_per_row(lambda: read_some(plain))
        print(f"read rows, plain psycopg: {plain_cost:.1f} us/row")
        print(f"row_to_state: {await cpu_us_per_row(convert):.1f} us/row")
    finally:
        await plain.close()
        await pool.close()


def main() -> None:
    """Create the database, measure, drop it."""
    admin = os.environ.get("ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        conn.execute(f"CREATE DATABASE {DATABASE}")
    try:
        asyncio.run(measure(make_conninfo(admin, dbname=DATABASE)))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DATABASE}")


if __name__ == "__main__":
    main()
