"""A RUNNING execution asked to stop is never handed back to the queue: it fails "cancelled"."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest

from lg_deploy.models import ExecutionStatus, utcnow
from lg_deploy.store.protocol import ExecutionStore
from tests.support.factories import make_state


@pytest.mark.req("DUR-CANCEL", "LLD-4.1")
async def test_hand_back_of_a_cancel_requested_run_fails_it(store: ExecutionStore) -> None:
    """Handing back (RUNNING->QUEUED) a run asked to stop records FAILED "cancelled"."""
    created = await store.create(make_state())
    lease = utcnow() + timedelta(seconds=30)
    running = await store.update(
        created.evolve(
            status=ExecutionStatus.RUNNING, attempts=1, worker_id="w1", lease_expires_at=lease
        ),
        expected_status=ExecutionStatus.QUEUED,
    )
    marked = await store.request_cancel(running.execution_id)
    assert marked.status == ExecutionStatus.RUNNING
    assert marked.cancel_requested_at is not None
    back = await store.update(
        running.evolve(status=ExecutionStatus.QUEUED, error="interrupted: worker w1 stopped"),
        expected_status=ExecutionStatus.RUNNING,
    )
    assert (back.status, back.error) == (ExecutionStatus.FAILED, "cancelled")
    events = await store.events(running.execution_id)
    assert (events[-1].from_status, events[-1].to_status) == (
        ExecutionStatus.RUNNING,
        ExecutionStatus.FAILED,
    )


@pytest.mark.req("DUR-CANCEL", "CARD-GUARD")
def test_psql_hand_back_of_a_cancel_requested_run_fails_it(sql: psycopg.Connection[Any]) -> None:
    """Even a psql UPDATE to QUEUED of a cancel-requested RUNNING row ends FAILED "cancelled"."""
    inserted = sql.execute(
        "INSERT INTO lg_deploy.executions (graph_id, input) VALUES ('echo', '{}')"
        " RETURNING execution_id"
    ).fetchone()
    assert inserted is not None
    execution_id = inserted[0]
    sql.execute(
        "UPDATE lg_deploy.executions SET status = 'RUNNING', attempts = 1, worker_id = 'w1',"
        " lease_expires_at = now() + interval '1 minute' WHERE execution_id = %s",
        (execution_id,),
    )
    sql.execute(
        "UPDATE lg_deploy.executions SET cancel_requested_at = now() WHERE execution_id = %s",
        (execution_id,),
    )
    sql.execute(
        "UPDATE lg_deploy.executions SET status = 'QUEUED' WHERE execution_id = %s", (execution_id,)
    )
    row = sql.execute(
        "SELECT status, error, finished_at IS NOT NULL FROM lg_deploy.executions"
        " WHERE execution_id = %s",
        (execution_id,),
    ).fetchone()
    assert row == ("FAILED", "cancelled", True)
