"""Plain-SQL helpers: insert rows as psql or another system would, and read them back."""

from __future__ import annotations

from typing import Any, LiteralString

import psycopg
from psycopg import sql as pgsql
from psycopg.types.json import Jsonb

SqlConn = psycopg.Connection[Any]


def insert_row(conn: SqlConn, **columns: Any) -> str:
    """INSERT an echo execution with these columns as well; its id (RETURNING execution_id)."""
    row = {"graph_id": "echo", "input": Jsonb({"n": 1}), **columns}
    statement = pgsql.SQL(
        "INSERT INTO lg_deploy.executions ({}) VALUES ({}) RETURNING execution_id"
    )
    names = pgsql.SQL(", ").join(map(pgsql.Identifier, row))
    values = pgsql.SQL(", ").join(pgsql.Placeholder() * len(row))
    found = conn.execute(statement.format(names, values), list(row.values())).fetchone()
    assert found is not None
    return str(found[0])


def history(sql: SqlConn, execution_id: str) -> list[tuple[str | None, str]]:
    """(from_status, to_status) of each event of the execution, oldest first."""
    rows = sql.execute(
        "SELECT from_status, to_status FROM lg_deploy.execution_events"
        " WHERE execution_id = %s ORDER BY event_id",
        (execution_id,),
    ).fetchall()
    return [(row[0], row[1]) for row in rows]


def count_rows(sql: SqlConn, table: LiteralString = "executions") -> int:
    """How many rows a table of schema lg_deploy holds."""
    row = sql.execute(
        pgsql.SQL("SELECT count(*) FROM lg_deploy.{}").format(pgsql.Identifier(table))
    ).fetchone()
    assert row is not None
    return int(row[0])


def insert_rows(sql: SqlConn, count: int = 1) -> list[str]:
    """Insert `count` echo executions in ONE plain SQL statement, as another system would."""
    rows = sql.execute(
        "INSERT INTO lg_deploy.executions (graph_id, input)"
        " SELECT 'echo', jsonb_build_object('i', i) FROM generate_series(1, %s) AS i"
        " RETURNING execution_id::text",
        (count,),
    ).fetchall()
    return [row[0] for row in rows]


def scalar(sql: SqlConn, query: str, *params: Any) -> Any:
    """The single value `query` returns."""
    row = sql.execute(query, params or None).fetchone()
    assert row is not None
    return row[0]


def count_running(sql: SqlConn) -> int:
    """How many executions are RUNNING."""
    return int(scalar(sql, "SELECT count(*) FROM lg_deploy.executions WHERE status = 'RUNNING'"))


def status_of(sql: SqlConn, execution_id: str) -> str:
    """The execution's status now, as psql reads it."""
    row = sql.execute(
        "SELECT status FROM lg_deploy.executions WHERE execution_id = %s", (execution_id,)
    ).fetchone()
    assert row is not None
    return str(row[0])
