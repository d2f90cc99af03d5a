"""The bare baseline for HTTP submit: Starlette, the same pool, one INSERT per POST.

`python -m uvicorn bench.bare_app:app` with BENCH_DATABASE_URL set.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from psycopg.types.json import Jsonb
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from lg_deploy.db.pool import open_pool

INSERT = (
    "INSERT INTO lg_deploy.executions (graph_id, input, run_at)"
    " VALUES (%s, %s, now() + make_interval(secs => %s)) RETURNING execution_id, status"
)


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    """Open the pool as lg-deploy does (same function, same default size)."""
    pool = await open_pool(os.environ["BENCH_DATABASE_URL"])
    try:
        yield {"pool": pool}
    finally:
        await pool.close()


async def submit(request: Request) -> JSONResponse:
    """Insert one execution; 202 with its id."""
    body = await request.json()
    async with request.state.pool.connection() as conn:
        cursor = await conn.execute(
            INSERT, (body["graph_id"], Jsonb(body["input"]), body.get("delay_seconds", 0))
        )
        row = await cursor.fetchone()
    return JSONResponse({"execution_id": str(row[0]), "status": row[1]}, status_code=202)


async def ok(request: Request) -> JSONResponse:
    """Readiness."""
    return JSONResponse({"ok": True})


app = Starlette(
    routes=[Route("/executions", submit, methods=["POST"]), Route("/readyz", ok)],
    lifespan=lifespan,
)
