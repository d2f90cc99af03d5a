"""The webhook outbox in plain SQL: a delivery row in the transaction that makes a run final,
whoever writes it, the default URL, rollbacks, the URL check, and pruning that waits for it."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import errors

from lg_deploy.db.queries import query
from tests.support.sql import insert_row, scalar

SqlConn = psycopg.Connection[Any]
HOOK = "https://hooks.example.com/lg?team=blue"


def deliveries(sql: SqlConn, execution_id: str) -> list[tuple[str, str, int]]:
    """(url, status, attempts) of the execution's deliveries."""
    rows = sql.execute(
        "SELECT url, status, attempts FROM lg_deploy.webhook_deliveries WHERE execution_id = %s",
        (execution_id,),
    ).fetchall()
    return [(row[0], row[1], row[2]) for row in rows]


def fail(sql: SqlConn, execution_id: str) -> None:
    """Make a QUEUED row FAILED from psql, as a cancel does."""
    sql.execute(
        "UPDATE lg_deploy.executions SET status = 'FAILED', error = 'cancelled'"
        " WHERE execution_id = %s",
        (execution_id,),
    )


def count(sql: SqlConn, statement: str, *params: Any) -> int:
    """The count `statement` returns."""
    return int(scalar(sql, statement, *params))


@pytest.mark.req("WEBHOOK-OUTBOX")
def test_the_delivery_is_written_in_the_transaction_that_makes_the_run_final(
    sql: SqlConn,
) -> None:
    """The delivery commits or rolls back with the final status; one NOTIFY wakes senders."""
    hooked = insert_row(sql, webhook=HOOK)
    plain = insert_row(sql)
    sql.execute("LISTEN lg_deploy_webhooks")
    with sql.transaction():
        fail(sql, hooked)
        assert deliveries(sql, hooked) == [(HOOK, "pending", 0)]
        raise psycopg.Rollback
    assert deliveries(sql, hooked) == []
    status = "SELECT status FROM lg_deploy.executions WHERE execution_id = %s"
    assert scalar(sql, status, hooked) == "QUEUED"
    fail(sql, hooked)
    fail(sql, plain)
    assert deliveries(sql, hooked) == [(HOOK, "pending", 0)]
    assert deliveries(sql, plain) == []
    notes = list(sql.notifies(timeout=2.0, stop_after=1))
    assert [note.channel for note in notes] == ["lg_deploy_webhooks"]


@pytest.mark.req("WEBHOOK-DEFAULT", "WEBHOOK-OUTBOX")
def test_the_default_url_applies_when_the_run_names_none_as_it_ends(sql: SqlConn) -> None:
    """A run naming none goes to the default, one naming its own there; a rolled-back run: none."""
    default = "https://default.example.com/hook"
    plain, own, forgotten = insert_row(sql), insert_row(sql, webhook=HOOK), insert_row(sql)
    sql.execute("UPDATE lg_deploy.webhook_defaults SET url = %s", (default,))
    for execution_id in (plain, own):
        fail(sql, execution_id)
    sql.execute(
        "UPDATE lg_deploy.executions SET status = 'FAILED', error = 'cancelled',"
        " cancel_requested_at = now(), cancel_action = 'rollback' WHERE execution_id = %s",
        (forgotten,),
    )
    assert deliveries(sql, plain) == [(default, "pending", 0)]
    assert deliveries(sql, own) == [(HOOK, "pending", 0)]
    gone = "SELECT count(*) FROM lg_deploy.executions WHERE execution_id = %s"
    assert count(sql, gone, forgotten) == 0
    assert count(sql, "SELECT count(*) FROM lg_deploy.webhook_deliveries") == 2


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x",
        "http://user:secret@example.com/",
        "https://example.com/a b",
        "https://",
        "example.com/hook",
        "https://example.com/" + "x" * 2048,
    ],
)
@pytest.mark.req("WEBHOOK-ALLOWLIST")
def test_the_table_refuses_a_webhook_that_is_no_http_url(sql: SqlConn, url: str) -> None:
    """A webhook that is no http(s) URL with a host, or has a password, is refused by its CHECK."""
    with pytest.raises(errors.CheckViolation) as caught:
        insert_row(sql, webhook=url)
    assert caught.value.diag.constraint_name == "executions_webhook_is_url"


@pytest.mark.req("WEBHOOK-OUTBOX")
def test_pruning_keeps_a_final_execution_whose_webhook_is_pending(sql: SqlConn) -> None:
    """Retention skips a run while its delivery is pending, then deletes it with its delivery."""
    execution_id = insert_row(sql, webhook=HOOK)
    fail(sql, execution_id)
    cutoff = {"older_than_seconds": 0, "batch_size": 10}
    assert sql.execute(query("count_prunable"), cutoff).fetchone() == (0,)
    assert sql.execute(query("prune_finished"), cutoff).fetchall() == []
    sql.execute("UPDATE lg_deploy.webhook_deliveries SET status = 'failed'")
    assert sql.execute(query("count_prunable"), cutoff).fetchone() == (1,)
    assert sql.execute(query("prune_finished"), cutoff).fetchall() == [(execution_id,)]
    assert count(sql, "SELECT count(*) FROM lg_deploy.webhook_deliveries") == 0


@pytest.mark.req("WEBHOOK-OUTBOX")
def test_lease_recovery_that_fails_a_run_queues_its_delivery(sql: SqlConn) -> None:
    """Lease recovery that fails a run on its last attempt writes the run's delivery too."""
    execution_id = insert_row(sql, webhook=HOOK, max_attempts=1)
    sql.execute(
        "UPDATE lg_deploy.executions SET status = 'RUNNING', attempts = 1, worker_id = 'gone',"
        " lease_expires_at = now() - interval '1 minute' WHERE execution_id = %s",
        (execution_id,),
    )
    assert deliveries(sql, execution_id) == []
    recovered = sql.execute(query("recover_expired"), {"now": None, "limit": 10}).fetchall()
    assert [str(row[0]) for row in recovered] == [execution_id]
    assert deliveries(sql, execution_id) == [(HOOK, "pending", 0)]
