"""Plain-SQL helpers: queue rows, wait for outcomes, read rates and latencies from timestamps."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterable
from typing import Any

import psycopg

from bench import procs

FINAL = "status IN ('COMPLETED', 'FAILED')"


def queue_rows(url: str, count: int, graph_id: str = "noop") -> None:
    """`count` QUEUED executions in one INSERT ... SELECT (one notification, one event per row)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO lg_deploy.executions (graph_id, input)"
            " SELECT %s, jsonb_build_object('n', i) FROM generate_series(1, %s) AS i",
            (graph_id, count),
        )
        conn.execute("VACUUM ANALYZE lg_deploy.executions")


def count(url: str, where: str = FINAL) -> int:
    """Rows matching a condition."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(f"SELECT count(*) FROM lg_deploy.executions WHERE {where}").fetchone()
    return int(row[0]) if row else 0


def wait_count(
    url: str,
    wanted: int,
    children: Iterable[subprocess.Popen[bytes]] = (),
    timeout: float = 600.0,
    where: str = FINAL,
) -> None:
    """Poll until `wanted` rows match; the children must stay alive meanwhile."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            row = conn.execute(
                f"SELECT count(*) FROM lg_deploy.executions WHERE {where}"
            ).fetchone()
            if row and row[0] >= wanted:
                return
            for child in children:
                procs.check_alive(child)
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {row[0] if row else 0} of {wanted} after {timeout} s")
            time.sleep(0.1)


def drain_rate(url: str) -> float:
    """COMPLETED executions per second, first claim to last completion (database clock)."""
    with psycopg.connect(url, autocommit=True) as conn:
        failed = conn.execute(
            "SELECT count(*) FROM lg_deploy.executions WHERE status = 'FAILED'"
        ).fetchone()
        if failed and failed[0]:
            raise RuntimeError(f"{failed[0]} executions FAILED")
        row = conn.execute(
            "SELECT count(*), extract(epoch FROM max(finished_at) - min(started_at))"
            " FROM lg_deploy.executions WHERE status = 'COMPLETED'"
        ).fetchone()
    assert row is not None
    done, seconds = int(row[0]), float(row[1] or 0)
    if not done or seconds <= 0:
        raise RuntimeError("nothing completed")
    return done / seconds


def percentiles_ms(url: str, expression: str, where: str = "true") -> dict[str, float]:
    """p50/p95/p99 of an interval expression over executions, in milliseconds."""
    with psycopg.connect(url, autocommit=True) as conn:
        row: Any = conn.execute(
            "SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP"
            f" (ORDER BY extract(epoch FROM {expression}) * 1000), count(*)"
            f" FROM lg_deploy.executions WHERE {where}"
        ).fetchone()
    p50, p95, p99 = row[0]
    return {"p50": p50, "p95": p95, "p99": p99}
