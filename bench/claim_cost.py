"""Wall time of one claim statement, this tree's against another checkout's, on the same server.

    ADMIN_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python -m bench.claim_cost [OTHER_CHECKOUT] [ROUNDS]

Each side gets a database migrated by its own `sql/migrations` and claims with its own
`claim_executions`: 300 (CLAIM_COUNT) claims of 64 rows from as many QUEUED rows of the graph
`noop`, beside CLAIM_OTHER_ROWS (0) QUEUED rows of another graph, inserted first (this tree's
claim never reads them; an older claim, which takes any graph, takes them). The sides alternate,
ROUNDS times (3), and each round prints both medians in milliseconds. Without OTHER_CHECKOUT only
this tree is timed. The databases lgd_claim_cost_* are created and dropped.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from lg_deploy.db.migrations import migrate
from lg_deploy.db.queries import parse_named_queries

ROOT = Path(__file__).resolve().parent.parent
CLAIMS = int(os.environ.get("CLAIM_COUNT", "300"))
LIMIT = 64
OTHER_ROWS = int(os.environ.get("CLAIM_OTHER_ROWS", "0"))


def claim_sql(checkout: Path) -> str:
    """The claim_executions statement of a checkout."""
    return parse_named_queries((checkout / "sql/queries/executions.sql").read_text())[
        "claim_executions"
    ]


def prepare(admin_url: str, name: str, checkout: Path) -> str:
    """A fresh database migrated by `checkout`'s migrations; its URL."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_conninfo(admin_url, dbname=name)
    asyncio.run(migrate(url, checkout / "sql/migrations"))
    return url


def median_claim_ms(url: str, sql: str) -> float:
    """Refill the queue, then the median wall time of CLAIMS claims of LIMIT rows."""
    params = {"limit": LIMIT, "worker_id": "w", "lease_seconds": 30, "now": None}
    params["graph_ids"] = ["noop"]  # an older claim ignores it
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE lg_deploy.executions CASCADE")
        conn.execute(
            "INSERT INTO lg_deploy.executions (graph_id, input)"
            " SELECT 'other', '{}' FROM generate_series(1, %s)",
            (OTHER_ROWS,),
        )
        conn.execute(
            "INSERT INTO lg_deploy.executions (graph_id, input)"
            " SELECT 'noop', '{}' FROM generate_series(1, %s)",
            (CLAIMS * LIMIT,),
        )
        conn.execute("VACUUM ANALYZE lg_deploy.executions")
        times = []
        for _ in range(CLAIMS):
            started = time.perf_counter()
            conn.execute(sql, params).fetchall()
            times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main(argv: list[str]) -> None:
    """Time the claim of this tree, and of another checkout when given."""
    admin_url = os.environ["ADMIN_URL"]
    other = Path(argv[0]).resolve() if argv else None
    rounds = int(argv[1]) if len(argv) > 1 else 3
    sides = [("this", ROOT)] + ([("other", other)] if other else [])
    urls = {name: prepare(admin_url, f"lgd_claim_cost_{name}", tree) for name, tree in sides}
    try:
        for number in range(rounds):
            figures = [
                f"{name} {median_claim_ms(urls[name], claim_sql(tree)):.2f} ms"
                for name, tree in sides
            ]
            print(f"round {number + 1}: " + ", ".join(figures), flush=True)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            for name, _ in sides:
                conn.execute(f'DROP DATABASE IF EXISTS "lgd_claim_cost_{name}"')


if __name__ == "__main__":
    main(sys.argv[1:])
