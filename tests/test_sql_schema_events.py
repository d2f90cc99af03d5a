"""What psql and listeners see of the executions table: history rows, NOTIFYs and the claim index.

Rows are written with plain SQL only, as another system or an operator would.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg import Notify

from lg_deploy.db.queries import query

Conn = psycopg.Connection[Any]
QUEUED_CHANNEL = "lg_deploy_queued"
FINISHED_CHANNEL = "lg_deploy_finished"
NOTIFY_WAIT_SECONDS = 5.0
QUIET_SECONDS = 0.5
RUN = (
    "UPDATE lg_deploy.executions SET status = 'RUNNING', attempts = attempts + 1, "
    "worker_id = %(worker)s, lease_expires_at = now() + interval '30 seconds' "
)


def insert(sql: Conn, graph_id: str = "triage") -> str:
    """One QUEUED execution inserted with plain SQL; returns its id."""
    row = sql.execute(
        "INSERT INTO lg_deploy.executions (graph_id, input) VALUES (%s, '{\"ticket\": 42}') "
        "RETURNING execution_id::text",
        (graph_id,),
    ).fetchone()
    assert row is not None
    return str(row[0])


def insert_many(sql: Conn, count: int, graph_id: str = "bulk") -> list[str]:
    """`count` QUEUED executions inserted by one statement; returns their ids."""
    rows = sql.execute(
        "INSERT INTO lg_deploy.executions (graph_id, input) "
        "SELECT %s, jsonb_build_object('n', g) FROM generate_series(1, %s) AS g "
        "RETURNING execution_id::text",
        (graph_id, count),
    ).fetchall()
    return [row[0] for row in rows]


def update(sql: Conn, assignments: str, execution_id: str, **params: object) -> None:
    """UPDATE one execution by id with plain SQL."""
    sql.execute(
        f"UPDATE lg_deploy.executions SET {assignments} WHERE execution_id = %(id)s",
        {"id": execution_id, **params},
    )


def run(sql: Conn, execution_id: str, worker: str = "w-1") -> None:
    """QUEUED -> RUNNING as a claim would do it."""
    sql.execute(RUN + "WHERE execution_id = %(id)s", {"id": execution_id, "worker": worker})


def events(sql: Conn, execution_id: str) -> list[tuple[Any, ...]]:
    """(from, to, worker_id, attempt, error) of one execution's history, in event_id order."""
    return sql.execute(
        "SELECT from_status, to_status, worker_id, attempt, error "
        "FROM lg_deploy.execution_events WHERE execution_id = %s ORDER BY event_id",
        (execution_id,),
    ).fetchall()


def event_count(sql: Conn) -> int:
    """All history rows in the database."""
    row = sql.execute("SELECT count(*) FROM lg_deploy.execution_events").fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.req("CARD-HISTORY")
def test_insert_writes_one_queued_event(sql: Conn) -> None:
    """An INSERT appends (NULL -> QUEUED, attempt 0) stamped with the row's creation time."""
    execution_id = insert(sql)
    assert events(sql, execution_id) == [(None, "QUEUED", None, 0, None)]
    same_time = sql.execute(
        "SELECT e.at = x.created_at FROM lg_deploy.execution_events e "
        "JOIN lg_deploy.executions x USING (execution_id) WHERE x.execution_id = %s",
        (execution_id,),
    ).fetchone()
    assert same_time == (True,)


@pytest.mark.req("CARD-HISTORY", "LLD-3.2")
def test_each_status_change_writes_one_event_in_order(sql: Conn) -> None:
    """Claim, lease loss, retry and failure each append one event with worker, attempt and error."""
    execution_id = insert(sql)
    run(sql, execution_id, "w-1")
    update(sql, "lease_expires_at = now() + interval '1 minute'", execution_id)
    update(sql, "status = 'QUEUED', error = 'lease expired'", execution_id)
    update(sql, "priority = 5", execution_id)
    run(sql, execution_id, "w-2")
    update(sql, "status = 'FAILED', error = 'boom'", execution_id)
    assert events(sql, execution_id) == [
        (None, "QUEUED", None, 0, None),
        ("QUEUED", "RUNNING", "w-1", 1, None),
        ("RUNNING", "QUEUED", "w-1", 1, "lease expired"),
        ("QUEUED", "RUNNING", "w-2", 2, None),
        ("RUNNING", "FAILED", "w-2", 2, "boom"),
    ]
    times = sql.execute(
        "SELECT at FROM lg_deploy.execution_events WHERE execution_id = %s ORDER BY event_id",
        (execution_id,),
    ).fetchall()
    assert times == sorted(times)


@pytest.mark.req("CARD-HISTORY")
def test_completion_and_cancel_events_record_error_only_when_failing(sql: Conn) -> None:
    """COMPLETED records no error (even a leftover one); QUEUED -> FAILED records the reason."""
    completed = insert(sql)
    run(sql, completed)
    update(sql, "error = 'transient'", completed)
    update(sql, "status = 'COMPLETED', output = '{}'", completed)
    assert events(sql, completed)[-1] == ("RUNNING", "COMPLETED", "w-1", 1, None)
    cancelled = insert(sql)
    update(sql, "status = 'FAILED', error = 'cancelled'", cancelled)
    assert events(sql, cancelled)[-1] == ("QUEUED", "FAILED", None, 0, "cancelled")


@pytest.mark.req("CARD-HISTORY")
def test_updates_that_keep_the_status_write_no_event(sql: Conn) -> None:
    """Priority changes, no-op status sets and lease renewals leave the history alone."""
    queued, running = insert(sql), insert(sql)
    run(sql, running)
    before = event_count(sql)
    update(sql, "priority = 9", queued)
    update(sql, "status = 'QUEUED', run_at = now()", queued)
    update(sql, "lease_expires_at = now() + interval '1 minute'", running)
    update(sql, "status = 'RUNNING'", running)
    sql.execute("UPDATE lg_deploy.executions SET priority = 1")
    assert event_count(sql) == before


@pytest.mark.req("CARD-HISTORY")
def test_multi_row_update_writes_one_event_per_changed_row(sql: Conn) -> None:
    """One UPDATE over many rows appends one event for each row whose status changed."""
    queued = insert_many(sql, 3)
    already_running = insert(sql)
    run(sql, already_running)
    before = event_count(sql)
    sql.execute(RUN, {"worker": "w-9"})
    assert event_count(sql) == before + 3
    for execution_id in queued:
        assert events(sql, execution_id)[-1] == ("QUEUED", "RUNNING", "w-9", 1, None)
    assert events(sql, already_running)[-1] == ("QUEUED", "RUNNING", "w-1", 1, None)


@pytest.mark.req("CARD-HISTORY")
def test_deleting_an_execution_deletes_its_events(sql: Conn) -> None:
    """ON DELETE CASCADE: an execution's history goes with it, other histories stay."""
    doomed, kept = insert(sql), insert(sql)
    run(sql, doomed)
    sql.execute("DELETE FROM lg_deploy.executions WHERE execution_id = %s", (doomed,))
    assert events(sql, doomed) == []
    assert events(sql, kept) == [(None, "QUEUED", None, 0, None)]


@contextmanager
def listening(db_url: str) -> Iterator[Conn]:
    """A separate autocommit connection LISTENing on both lg-deploy channels."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"LISTEN {QUEUED_CHANNEL}")
        conn.execute(f"LISTEN {FINISHED_CHANNEL}")
        yield conn


def received(listener: Conn, expected: int) -> list[Notify]:
    """The `expected` notifications, plus any that arrive in a further quiet period."""
    got = []
    if expected:
        got = list(listener.notifies(timeout=NOTIFY_WAIT_SECONDS, stop_after=expected))
    got += listener.notifies(timeout=QUIET_SECONDS)
    return got


@pytest.mark.req("CARD-NOTIFY")
def test_bulk_insert_sends_one_notification(sql: Conn, db_url: str) -> None:
    """INSERT ... SELECT of 10,000 rows sends exactly one NOTIFY on lg_deploy_queued."""
    with listening(db_url) as listener:
        assert len(insert_many(sql, 10_000)) == 10_000
        got = received(listener, 1)
    assert [n.channel for n in got] == [QUEUED_CHANNEL]


@pytest.mark.req("CARD-NOTIFY")
def test_each_inserting_statement_notifies_once(sql: Conn, db_url: str) -> None:
    """Three INSERT statements send three notifications; an INSERT of no rows sends none."""
    with listening(db_url) as listener:
        for graph_id in ("a", "b", "c"):
            insert(sql, graph_id)
        sql.execute(
            "INSERT INTO lg_deploy.executions (graph_id, input) SELECT 'none', '{}' WHERE false"
        )
        got = received(listener, 3)
    assert [n.channel for n in got] == [QUEUED_CHANNEL] * 3


@pytest.mark.req("CARD-NOTIFY")
def test_an_insert_wakes_workers_only_when_a_row_is_due_now(sql: Conn, db_url: str) -> None:
    """Rows all due later send no NOTIFY (nothing to claim yet; the poll takes them when due);
    one row due now among them sends one. Every row gets its history either way."""
    later = "INSERT INTO lg_deploy.executions (graph_id, input, run_at) VALUES ('a', '{}', %s)"
    with listening(db_url) as listener:
        sql.execute(later, ("2999-01-01T00:00:00Z",))
        sql.execute(
            "INSERT INTO lg_deploy.executions (graph_id, input, run_at)"
            " VALUES ('b', '{}', now() + interval '1 hour'), ('b', '{}', now())"
        )
        got = received(listener, 1)
    assert [n.channel for n in got] == [QUEUED_CHANNEL]
    history = sql.execute(
        "SELECT count(*) FROM lg_deploy.execution_events WHERE to_status = 'QUEUED'"
    ).fetchone()
    assert history == (3,)


@pytest.mark.req("CARD-NOTIFY")
def test_handing_back_notifies_queued_and_claiming_does_not(sql: Conn, db_url: str) -> None:
    """RUNNING -> QUEUED wakes workers on lg_deploy_queued; QUEUED -> RUNNING sends nothing."""
    execution_id = insert(sql)
    with listening(db_url) as listener:
        run(sql, execution_id)
        assert received(listener, 0) == []
        update(sql, "status = 'QUEUED', error = 'lease expired'", execution_id)
        got = received(listener, 1)
    assert [n.channel for n in got] == [QUEUED_CHANNEL]


@pytest.mark.req("CARD-NOTIFY")
def test_finishing_notifies_the_finished_ids(sql: Conn, db_url: str) -> None:
    """Rows becoming COMPLETED or FAILED in one statement send one NOTIFY listing their ids."""
    done, failed, cancelled = insert_many(sql, 3)
    run(sql, done)
    run(sql, failed)
    with listening(db_url) as listener:
        sql.execute(
            "UPDATE lg_deploy.executions "
            "SET status = CASE WHEN execution_id = %(done)s THEN 'COMPLETED' ELSE 'FAILED' END "
            "WHERE execution_id IN (%(done)s, %(failed)s)",
            {"done": done, "failed": failed},
        )
        update(sql, "status = 'FAILED', error = 'cancelled'", cancelled)
        got = received(listener, 2)
    assert [n.channel for n in got] == [FINISHED_CHANNEL] * 2
    assert sorted(got[0].payload.split(",")) == sorted([done, failed])
    assert got[1].payload == cancelled


@pytest.mark.req("CARD-NOTIFY")
def test_finishing_too_many_rows_for_a_payload_sends_star(sql: Conn, db_url: str) -> None:
    """When the finished ids would overflow a NOTIFY payload, the payload is '*'."""
    count = 300  # 300 ids of 37 characters: past the ~7,900 character limit
    insert_many(sql, count)
    with listening(db_url) as listener:
        sql.execute("UPDATE lg_deploy.executions SET status = 'FAILED', error = 'expired'")
        got = received(listener, 1)
    assert [(n.channel, n.payload) for n in got] == [(FINISHED_CHANNEL, "*")]


CLAIM_PARAMS = {
    "limit": 10,
    "worker_id": "w-explain",
    "lease_seconds": 30,
    "now": None,
    "graph_ids": ["echo"],
}


@pytest.mark.req("CARD-CLAIM", "CARD-SCHEMA")
def test_claim_index_is_partial_on_queued_rows_in_claim_order(sql: Conn) -> None:
    """executions_claim_idx covers only QUEUED rows, by graph, then in claim order."""
    row = sql.execute(
        "SELECT indexdef FROM pg_indexes "
        "WHERE schemaname = 'lg_deploy' AND indexname = 'executions_claim_idx'"
    ).fetchone()
    assert row is not None
    assert "(graph_id, priority DESC, run_at, execution_id)" in row[0]
    assert row[0].endswith("WHERE (status = 'QUEUED'::text)")


@pytest.mark.req("CARD-CLAIM")
def test_claim_query_uses_the_partial_index_when_most_rows_are_done(sql: Conn) -> None:
    """With 5,000 COMPLETED rows and 5 QUEUED ones, the claim plan uses executions_claim_idx."""
    insert_many(sql, 5_000, "done")
    sql.execute(RUN, {"worker": "w-1"})
    sql.execute("UPDATE lg_deploy.executions SET status = 'COMPLETED', output = '{}'")
    insert_many(sql, 5, "waiting")
    sql.execute("ANALYZE lg_deploy.executions")
    plan = sql.execute("EXPLAIN " + query("claim_executions"), CLAIM_PARAMS).fetchall()
    plan_text = "\n".join(line for (line,) in plan)
    assert "executions_claim_idx" in plan_text, plan_text
