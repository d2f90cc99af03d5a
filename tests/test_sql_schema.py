"""The executions table as other systems see it: plain SQL only, no lg-deploy code writing rows.

Columns and defaults, named CHECK constraints, the insert guard, the lifecycle guard and the
clocks kept by the database. History, NOTIFY and the claim index: test_sql_schema_events.py.
"""

from __future__ import annotations

import contextlib
import itertools
import uuid
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import errors
from psycopg.rows import dict_row

from lg_deploy.models import ExecutionState, ExecutionStatus, can_transition

Conn = psycopg.Connection[Any]
STATUSES = list(ExecutionStatus)
INTEGER_TYPES = {"smallint", "integer", "bigint"}
TIMESTAMPTZ = "timestamp with time zone"
PUBLIC_COLUMNS: dict[str, set[str]] = {
    "execution_id": {"uuid"},
    "graph_id": {"text"},
    "status": {"text"},
    "input": {"jsonb"},
    "output": {"jsonb"},
    "error": {"text"},
    "created_at": {TIMESTAMPTZ},
    "updated_at": {TIMESTAMPTZ},
    "attempts": INTEGER_TYPES,
    "max_attempts": INTEGER_TYPES,
    "priority": INTEGER_TYPES,
    "run_at": {TIMESTAMPTZ},
    "worker_id": {"text"},
    "lease_expires_at": {TIMESTAMPTZ},
    "started_at": {TIMESTAMPTZ},
    "finished_at": {TIMESTAMPTZ},
    "request_id": {"text"},
    "idempotency_key": {"text"},
    "thread_id": {"uuid"},
    "config": {"jsonb"},
    "context": {"jsonb"},
    "command": {"jsonb"},
    "interrupt_before": {"ARRAY"},
    "interrupt_after": {"ARRAY"},
    "multitask_strategy": {"text"},
    "interrupts": {"jsonb"},
    "assistant_id": {"uuid"},
}
CARD_INSERT = (
    "INSERT INTO lg_deploy.executions (graph_id, input) VALUES ('triage', '{\"ticket\": 42}') "
    "RETURNING *"
)
OLD_TIME = "2000-01-01T00:00:00+00:00"


def insert(sql: Conn) -> str:
    """A fresh QUEUED execution inserted the way the design card shows; returns its id."""
    row = sql.execute(CARD_INSERT).fetchone()
    assert row is not None
    return str(row[0])


def row_of(sql: Conn, execution_id: str) -> dict[str, Any]:
    """The stored row, as a dict."""
    with sql.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT * FROM lg_deploy.executions WHERE execution_id = %s", (execution_id,)
        ).fetchone()
    assert row is not None
    return row


def claim(sql: Conn, execution_id: str, worker_id: str = "w-1") -> None:
    """QUEUED -> RUNNING as a worker would: attempt counted, worker and lease in one UPDATE."""
    sql.execute(
        "UPDATE lg_deploy.executions SET status = 'RUNNING', attempts = attempts + 1, "
        "worker_id = %s, lease_expires_at = now() + interval '30 seconds' "
        "WHERE execution_id = %s",
        (worker_id, execution_id),
    )


def drive_to(sql: Conn, status: ExecutionStatus) -> str:
    """A fresh execution brought to `status` through allowed plain-SQL updates."""
    execution_id = insert(sql)
    if status == ExecutionStatus.QUEUED:
        return execution_id
    claim(sql, execution_id)
    if status == ExecutionStatus.COMPLETED:
        sql.execute(
            "UPDATE lg_deploy.executions SET status = 'COMPLETED', output = '{\"ok\": true}' "
            "WHERE execution_id = %s",
            (execution_id,),
        )
    elif status == ExecutionStatus.FAILED:
        sql.execute(
            "UPDATE lg_deploy.executions SET status = 'FAILED', error = 'boom' "
            "WHERE execution_id = %s",
            (execution_id,),
        )
    elif status == ExecutionStatus.INTERRUPTED:
        sql.execute(
            "UPDATE lg_deploy.executions SET status = 'INTERRUPTED', output = '{\"n\": 1}' "
            "WHERE execution_id = %s",
            (execution_id,),
        )
    assert row_of(sql, execution_id)["status"] == status
    return execution_id


@pytest.mark.req("CARD-SCHEMA", "LLD-3.1")
def test_card_insert_returns_a_complete_queued_row(sql: Conn) -> None:
    """The card's two-column INSERT stores a QUEUED row whose other columns take their defaults."""
    with sql.cursor(row_factory=dict_row) as cur:
        row = cur.execute(CARD_INSERT).fetchone()
        db_now = cur.execute("SELECT now() AS now").fetchone()
    assert row is not None
    assert db_now is not None
    assert set(PUBLIC_COLUMNS) <= set(row)
    assert isinstance(row["execution_id"], uuid.UUID)
    assert (row["graph_id"], row["status"], row["input"]) == ("triage", "QUEUED", {"ticket": 42})
    assert (row["output"], row["error"], row["attempts"], row["priority"]) == (None, None, 0, 0)
    assert row["max_attempts"] == ExecutionState.model_fields["max_attempts"].default
    assert row["created_at"] == row["updated_at"] == row["run_at"]
    assert timedelta(0) <= db_now["now"] - row["run_at"] < timedelta(seconds=5)
    unset = ("worker_id", "lease_expires_at", "started_at", "finished_at")
    assert all(row[name] is None for name in (*unset, "request_id", "idempotency_key"))


@pytest.mark.req("CARD-SCHEMA")
def test_public_columns_have_their_types_and_defaults(sql: Conn) -> None:
    """information_schema shows each public column and type; only graph_id lacks a default
    (input may be null only on a thread, a CHECK says)."""
    rows = sql.execute(
        "SELECT column_name, data_type, column_default, is_nullable, is_identity "
        "FROM information_schema.columns "
        "WHERE table_schema = 'lg_deploy' AND table_name = 'executions'"
    ).fetchall()
    types = {name: data_type for name, data_type, *_ in rows}
    wrong = {
        c: types.get(c) for c, allowed in PUBLIC_COLUMNS.items() if types.get(c) not in allowed
    }
    assert wrong == {}
    required = {
        name
        for name, _, default, nullable, identity in rows
        if default is None and nullable == "NO" and identity == "NO"
    }
    assert required == {"graph_id"}


def violation_of(sql: Conn, statement: str, *params: object) -> errors.CheckViolation:
    """The CheckViolation that `statement` raises (fails the test if it succeeds)."""
    with pytest.raises(errors.CheckViolation) as caught:
        sql.execute(statement, params or None)
    return caught.value


@pytest.mark.parametrize(
    ("columns", "values", "constraint"),
    [
        ("graph_id, input", "'g', '[1, 2]'", "executions_input_is_object"),
        ("graph_id, input", "'g', '\"text\"'", "executions_input_is_object"),
        ("graph_id, input", "'g', '42'", "executions_input_is_object"),
        ("graph_id, input", "'', '{}'", "executions_graph_id_length"),
        ("graph_id, input, priority", "'g', '{}', 101", "executions_priority_in_range"),
        ("graph_id, input, priority", "'g', '{}', -101", "executions_priority_in_range"),
        ("graph_id, input, max_attempts", "'g', '{}', 0", "executions_max_attempts_in_range"),
    ],
)
@pytest.mark.req("CARD-SCHEMA", "LLD-10")
def test_check_constraints_reject_bad_inserts_by_name(
    sql: Conn, columns: str, values: str, constraint: str
) -> None:
    """A bad row from another system is refused by a named CHECK constraint."""
    error = violation_of(sql, f"INSERT INTO lg_deploy.executions ({columns}) VALUES ({values})")
    assert error.diag.constraint_name == constraint
    assert sql.execute("SELECT count(*) FROM lg_deploy.executions").fetchone() == (0,)


@pytest.mark.parametrize(
    ("assignment", "constraint"),
    [
        ("attempts = -1", "executions_attempts_in_range"),
        ("max_attempts = 0", "executions_max_attempts_in_range"),
        ("attempts = 3, max_attempts = 3", "executions_queued_has_attempts_left"),
        ("status = 'RUNNING'", "executions_running_has_lease"),
        ("output = '[1]'", "executions_output_is_object"),
    ],
)
@pytest.mark.req("CARD-SCHEMA", "LLD-10")
def test_check_constraints_reject_bad_updates_by_name(
    sql: Conn, assignment: str, constraint: str
) -> None:
    """A psql UPDATE that breaks a row invariant is refused by a named CHECK constraint."""
    execution_id = insert(sql)
    statement = f"UPDATE lg_deploy.executions SET {assignment} WHERE execution_id = %s"
    error = violation_of(sql, statement, execution_id)
    assert error.diag.constraint_name == constraint
    assert row_of(sql, execution_id)["status"] == "QUEUED"


@pytest.mark.req("CARD-GUARD", "LLD-10")
def test_requeue_without_attempts_left_is_refused(sql: Conn) -> None:
    """RUNNING -> QUEUED is refused when the claim used the last attempt (QUEUED needs one left)."""
    execution_id = insert(sql)
    sql.execute(
        "UPDATE lg_deploy.executions SET max_attempts = 1 WHERE execution_id = %s", (execution_id,)
    )
    claim(sql, execution_id)
    statement = "UPDATE lg_deploy.executions SET status = 'QUEUED' WHERE execution_id = %s"
    error = violation_of(sql, statement, execution_id)
    assert error.diag.constraint_name == "executions_queued_has_attempts_left"


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("status", "'RUNNING'"),
        ("status", "'COMPLETED'"),
        ("attempts", "1"),
        ("worker_id", "'w-1'"),
        ("lease_expires_at", "now()"),
        ("output", "'{}'"),
        ("started_at", "now()"),
        ("finished_at", "now()"),
    ],
)
@pytest.mark.req("CARD-GUARD", "LLD-10")
def test_insert_guard_refuses_rows_that_skip_the_queue(sql: Conn, column: str, value: str) -> None:
    """A new row must be plain QUEUED: status, worker, lease, output, attempts refused readably."""
    columns = f"graph_id, input, {column}"
    statement = f"INSERT INTO lg_deploy.executions ({columns}) VALUES ('g', '{{}}', {value})"
    error = violation_of(sql, statement)
    message = str(error)
    assert "a new execution" in message
    assert ("must be QUEUED" in message) if column == "status" else ("cannot carry" in message)
    assert error.diag.message_hint
    assert sql.execute("SELECT count(*) FROM lg_deploy.executions").fetchone() == (0,)


@pytest.mark.parametrize(("current", "target"), list(itertools.product(STATUSES, STATUSES)))
@pytest.mark.req("CARD-GUARD", "LLD-3.2")
def test_sql_guard_allows_exactly_the_python_lifecycle(
    sql: Conn, current: ExecutionStatus, target: ExecutionStatus
) -> None:
    """A plain-SQL status change is accepted exactly when models.can_transition allows it."""
    execution_id = drive_to(sql, current)
    lease = ", worker_id = 'w-2', lease_expires_at = now() + interval '30 seconds'"
    assignment = "status = %s" + (lease if target == ExecutionStatus.RUNNING else "")
    statement = f"UPDATE lg_deploy.executions SET {assignment} WHERE execution_id = %s"
    if can_transition(current, target):
        sql.execute(statement, (target.value, execution_id))
        assert row_of(sql, execution_id)["status"] == target
    else:
        error = violation_of(sql, statement, target.value, execution_id)
        assert "final" in str(error) or f"cannot go from {current} to {target}" in str(error)
        assert row_of(sql, execution_id)["status"] == current


@pytest.mark.req("CARD-GUARD", "LLD-3.2")
def test_sql_transition_table_equals_python_table(sql: Conn) -> None:
    """lg_deploy.execution_transitions holds exactly models.ALLOWED_TRANSITIONS."""
    from lg_deploy.models import ALLOWED_TRANSITIONS

    rows = sql.execute(
        "SELECT from_status, to_status FROM lg_deploy.execution_transitions"
    ).fetchall()
    assert len(rows) == len(set(rows))
    assert {(ExecutionStatus(a), ExecutionStatus(b)) for a, b in rows} == ALLOWED_TRANSITIONS


FINAL_ROW_EDITS = [
    "output = '{\"edited\": true}'",
    "output = NULL",
    "error = 'edited'",
    "priority = 7",
    "run_at = now()",
    "worker_id = 'someone'",
    "graph_id = 'other'",
    "input = '{}'",
    "max_attempts = 9",
    "status = status",
]


@pytest.mark.parametrize("final", [ExecutionStatus.COMPLETED, ExecutionStatus.FAILED])
@pytest.mark.req("CARD-GUARD", "LLD-3.2")
def test_final_rows_refuse_every_change(sql: Conn, final: ExecutionStatus) -> None:
    """Once COMPLETED or FAILED, no column of the row can be changed by any UPDATE."""
    execution_id = drive_to(sql, final)
    before = row_of(sql, execution_id)
    for assignment in FINAL_ROW_EDITS:
        statement = f"UPDATE lg_deploy.executions SET {assignment} WHERE execution_id = %s"
        error = violation_of(sql, statement, execution_id)
        assert "final" in str(error), assignment
    assert row_of(sql, execution_id) == before


@pytest.mark.parametrize(
    "assignment",
    ["execution_id = gen_random_uuid()", "created_at = now() - interval '1 day'"],
)
@pytest.mark.req("CARD-GUARD", "LLD-10")
def test_identity_and_creation_time_cannot_change(sql: Conn, assignment: str) -> None:
    """execution_id and created_at are fixed for the life of the row."""
    execution_id = insert(sql)
    before = row_of(sql, execution_id)
    statement = f"UPDATE lg_deploy.executions SET {assignment} WHERE execution_id = %s"
    assert "cannot change" in str(violation_of(sql, statement, execution_id))
    assert row_of(sql, execution_id) == before


@pytest.mark.req("CARD-SCHEMA", "LLD-10")
def test_updated_at_is_kept_by_the_database(sql: Conn) -> None:
    """Every UPDATE (each its own transaction) moves updated_at to now(), whatever it sets."""
    execution_id = insert(sql)
    first = row_of(sql, execution_id)["updated_at"]
    sql.execute(
        "UPDATE lg_deploy.executions SET priority = 5 WHERE execution_id = %s", (execution_id,)
    )
    second = row_of(sql, execution_id)
    assert second["updated_at"] > first
    assert second["created_at"] == first
    sql.execute(
        "UPDATE lg_deploy.executions SET priority = 6, updated_at = %s WHERE execution_id = %s",
        (OLD_TIME, execution_id),
    )
    assert row_of(sql, execution_id)["updated_at"] > second["updated_at"]


@pytest.mark.req("CARD-SCHEMA", "LLD-10")
def test_transitions_stamp_start_finish_and_clear_the_lease(sql: Conn) -> None:
    """->RUNNING stamps started_at, ->QUEUED and final clear the lease, final stamps finished_at."""
    execution_id = insert(sql)
    sql.execute(
        "UPDATE lg_deploy.executions SET status = 'RUNNING', worker_id = 'w-1', "
        "lease_expires_at = now() + interval '1 hour', started_at = %s, finished_at = %s "
        "WHERE execution_id = %s",
        (OLD_TIME, OLD_TIME, execution_id),
    )
    running = row_of(sql, execution_id)
    assert running["updated_at"] <= running["started_at"] < running["updated_at"] + timedelta(1)
    assert running["finished_at"] is None
    sql.execute(
        "UPDATE lg_deploy.executions SET status = 'QUEUED', "
        "lease_expires_at = now() + interval '1 hour' WHERE execution_id = %s",
        (execution_id,),
    )
    assert row_of(sql, execution_id)["lease_expires_at"] is None
    claim(sql, execution_id)
    sql.execute(
        "UPDATE lg_deploy.executions SET status = 'COMPLETED', output = '{}', "
        "lease_expires_at = now() + interval '1 hour', finished_at = %s WHERE execution_id = %s",
        (OLD_TIME, execution_id),
    )
    done = row_of(sql, execution_id)
    assert done["finished_at"] == done["updated_at"] > running["updated_at"]
    assert done["started_at"] > running["started_at"]
    assert done["lease_expires_at"] is None


@pytest.mark.req("CARD-SCHEMA", "THREAD-RUNS")
def test_a_claim_begun_before_another_run_finished_starts_after_that_finish(
    sql: Conn, db_url: str
) -> None:
    """A claiming transaction that began before a run finished, and claims after that finish
    committed, stamps a started_at later than the finished run's finished_at (as psql shows a
    thread's runs one after another)."""
    finished, claimed = insert(sql), insert(sql)
    claim(sql, finished)
    with psycopg.connect(db_url) as claimer:  # not autocommit: BEGIN fixes its now()
        claimer.execute("SELECT now()")
        sql.execute(
            "UPDATE lg_deploy.executions SET status = 'COMPLETED', output = '{}'"
            " WHERE execution_id = %s",
            (finished,),
        )
        claim(claimer, claimed)
        claimer.commit()
    assert row_of(sql, finished)["finished_at"] <= row_of(sql, claimed)["started_at"]


@pytest.mark.req("CARD-SCHEMA", "LLD-10")
def test_cancel_from_queued_stamps_finished_at(sql: Conn) -> None:
    """QUEUED -> FAILED (cancel) stamps finished_at and never sets started_at."""
    execution_id = insert(sql)
    sql.execute(
        "UPDATE lg_deploy.executions SET status = 'FAILED', error = 'cancelled' "
        "WHERE execution_id = %s",
        (execution_id,),
    )
    row = row_of(sql, execution_id)
    assert row["finished_at"] == row["updated_at"]
    assert row["started_at"] is None


@pytest.mark.req("CARD-SCHEMA", "LLD-10")
def test_run_times_cannot_be_rewritten_without_a_transition(sql: Conn) -> None:
    """An UPDATE that keeps the status cannot forge started_at or finished_at."""
    execution_id = drive_to(sql, ExecutionStatus.RUNNING)
    before = row_of(sql, execution_id)
    with contextlib.suppress(errors.CheckViolation):  # refusing the forgery is fine too
        sql.execute(
            "UPDATE lg_deploy.executions SET started_at = %s, finished_at = %s "
            "WHERE execution_id = %s",
            (OLD_TIME, OLD_TIME, execution_id),
        )
    after = row_of(sql, execution_id)
    assert (after["started_at"], after["finished_at"]) == (before["started_at"], None)
    assert isinstance(after["started_at"], datetime)
