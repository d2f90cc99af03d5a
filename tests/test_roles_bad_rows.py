"""Bad rows from SQL (issue 6, item 5): a producer's bad values meet named CHECK constraints.

Unknown graphs are accepted by the database and failed by a worker: test_roles_processes.py.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import errors
from psycopg.types.json import Jsonb

from tests.support.roles import PRODUCER, SERVICE, Logins
from tests.support.sql import count_rows, insert_row

SqlConn = psycopg.Connection[Any]


BAD_ROWS: list[tuple[dict[str, Any], str]] = [
    ({"input": Jsonb([1, 2])}, "executions_input_is_object"),
    ({"input": Jsonb("text")}, "executions_input_is_object"),
    ({"priority": 101}, "executions_priority_in_range"),
    ({"priority": -101}, "executions_priority_in_range"),
    ({"max_attempts": 0}, "executions_max_attempts_in_range"),
    # Also outside attempts' range (0..max_attempts); PostgreSQL checks constraints by name.
    ({"max_attempts": -1}, "executions_attempts_in_range"),
    ({"max_attempts": 1001}, "executions_max_attempts_in_range"),
    ({"graph_id": ""}, "executions_graph_id_length"),
    ({"graph_id": "g" * 201}, "executions_graph_id_length"),
    ({"timeout_seconds": 0}, "executions_timeout_in_range"),
    ({"metadata": Jsonb(["label"])}, "executions_metadata_is_object"),
]


@pytest.mark.req("SEC-BAD-ROWS")
@pytest.mark.parametrize(("columns", "constraint"), BAD_ROWS, ids=[c for _, c in BAD_ROWS])
def test_bad_rows_from_a_producer_are_refused_by_named_constraints(
    logins: Logins, sql: SqlConn, columns: dict[str, Any], constraint: str
) -> None:
    """A producer's INSERT of a bad value fails on the named CHECK constraint; nothing is kept."""
    producer = logins.connect(PRODUCER)
    with pytest.raises(errors.CheckViolation) as caught:
        insert_row(producer, **columns)
    assert caught.value.diag.constraint_name == constraint
    assert constraint in str(caught.value)
    assert count_rows(sql) == 0
    assert count_rows(sql, "execution_events") == 0


@pytest.mark.req("SEC-BAD-ROWS")
def test_negative_attempts_are_refused_at_every_door(logins: Logins, sql: SqlConn) -> None:
    """attempts = -1: no column privilege (producer), insert guard (owner), CHECK (service)."""
    producer = logins.connect(PRODUCER)
    service = logins.connect(SERVICE)
    with pytest.raises(errors.InsufficientPrivilege):
        insert_row(producer, attempts=-1)
    with pytest.raises(errors.CheckViolation, match="cannot carry attempts"):
        insert_row(sql, attempts=-1)
    execution_id = insert_row(producer)
    with pytest.raises(errors.CheckViolation) as caught:
        service.execute(
            "UPDATE lg_deploy.executions SET attempts = -1 WHERE execution_id = %s",
            (execution_id,),
        )
    assert caught.value.diag.constraint_name == "executions_attempts_in_range"
    row = sql.execute("SELECT status, attempts FROM lg_deploy.executions").fetchone()
    assert row == ("QUEUED", 0)
