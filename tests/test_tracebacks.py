"""A graph's exception keeps its traceback: bounded, stored beside the one-line error, shown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from lg_deploy.errors import GraphOutputError
from lg_deploy.failures import MAX_TRACEBACK_CHARS, format_traceback, traceback_of
from lg_deploy.graphs import DEFAULT_GRAPHS, GraphRegistry
from lg_deploy.models import ExecutionStatus
from lg_deploy.store.protocol import ExecutionStore
from tests.support.backends import claim_and_run, make_worker
from tests.support.factories import make_state
from tests.support.servers import running_server
from tests.support.waiting import wait_until

SqlConn = psycopg.Connection[Any]


def raised(message: str) -> Exception:
    """An exception with this message, as caught after being raised two frames deep."""

    def inner() -> None:
        raise ValueError(message)

    try:
        inner()
    except ValueError as error:
        return error
    raise AssertionError("unreachable")


@pytest.mark.req("TRACEBACK")
def test_long_traceback_keeps_its_start_and_its_end_within_the_bound() -> None:
    """A 40,000-character traceback is cut to the limit, keeping its start and its very end."""
    text = format_traceback(raised("x" * 40_000 + " \x00 the end"))
    assert len(text) <= MAX_TRACEBACK_CHARS
    assert text.startswith("Traceback (most recent call last):")
    assert "in inner" in text
    assert text.endswith("x \ufffd the end")
    assert "characters cut" in text
    short = format_traceback(raised("short"))
    assert "characters cut" not in short
    assert short.endswith("ValueError: short")


@pytest.mark.req("TRACEBACK")
def test_lg_deploys_own_errors_store_no_traceback() -> None:
    """Unstorable output is said by its message alone; a graph's exception keeps its traceback."""
    assert traceback_of(GraphOutputError("graph output is not JSON-serialisable")) is None
    assert traceback_of(raised("graph bug")) is not None


@pytest.mark.req("TRACEBACK", "LLD-4.2", "LLD-4.3")
async def test_failed_run_stores_its_traceback_on_the_row_and_in_its_history(
    store: ExecutionStore,
) -> None:
    """Both stores keep the graph's traceback beside the one-line error, and on the event."""
    registry = GraphRegistry(DEFAULT_GRAPHS)
    worker = make_worker(store, registry)
    created = await store.create(make_state(graph_id="fail", input={"message": "model said no"}))
    done = await claim_and_run(worker, created.execution_id)
    assert done is not None
    assert (done.status, done.error) == (ExecutionStatus.FAILED, "RuntimeError: model said no")
    assert done.traceback is not None
    assert done.traceback.startswith("Traceback (most recent call last):")
    assert "lg_deploy/examples/fail.py" in done.traceback
    assert "\nRuntimeError: model said no" in done.traceback
    stored = await store.get(created.execution_id)
    assert stored is not None
    assert stored.traceback == done.traceback
    [failed] = [e for e in await store.events(created.execution_id) if e.to_status == "FAILED"]
    assert failed.traceback == done.traceback


@pytest.mark.req("TRACEBACK")
def test_database_refuses_an_unbounded_traceback(sql: SqlConn) -> None:
    """A traceback over 65,536 characters written by SQL is refused by a CHECK constraint."""
    row = sql.execute(
        "INSERT INTO lg_deploy.executions (graph_id, input) VALUES ('echo', '{}')"
        " RETURNING execution_id"
    ).fetchone()
    assert row is not None
    with pytest.raises(psycopg.errors.CheckViolation, match="executions_traceback_length"):
        sql.execute(
            "UPDATE lg_deploy.executions SET traceback = repeat('x', 65537)"
            " WHERE execution_id = %s",
            (row[0],),
        )


@pytest.mark.req("TRACEBACK", "SERVE-E2E")
def test_served_failure_shows_its_traceback_over_http_and_logs_it_at_error(
    worker_env: dict[str, str], sql: SqlConn, tmp_path: Path
) -> None:
    """A retried failure: every attempt's traceback is in the history, the last on the row and
    in GET /executions/{id}; the worker logs the final one at ERROR with the traceback."""
    env = {**worker_env, "LG_DEPLOY_RETRY_ON_ERROR": "true", "LG_DEPLOY_RETRY_BACKOFF_SECONDS": "0"}
    with running_server(env, tmp_path) as server, server.http() as client:
        answer = client.post(
            "/executions",
            json={"graph_id": "fail", "input": {"message": "kaboom"}, "max_attempts": 2},
        )
        execution_id = answer.json()["execution_id"]
        final = client.get(f"/executions/{execution_id}/wait", params={"timeout": 15}).json()
        assert (final["status"], final["attempts"]) == ("FAILED", 2)
        assert final["error"] == "RuntimeError: kaboom"
        assert final["traceback"].startswith("Traceback (most recent call last):")
        assert "\nRuntimeError: kaboom" in final["traceback"]
        events = client.get(f"/executions/{execution_id}/events").json()["items"]
        kept = [(e["to_status"], e["traceback"] is not None) for e in events]
        retry, last = ("QUEUED", True), ("FAILED", True)
        assert kept == [("QUEUED", False), ("RUNNING", False), retry, ("RUNNING", False), last]

        def logged() -> list[dict[str, Any]]:
            return [
                line
                for line in server.log_lines()
                if line.get("execution_id") == execution_id and line.get("level") == "ERROR"
            ]

        wait_until(lambda: bool(logged()))
    [line] = logged()
    assert line["message"] == "execution failed: RuntimeError: kaboom"
    assert "Traceback (most recent call last)" in line["exception"]
    assert "RuntimeError: kaboom" in line["exception"]
    retried = [
        line
        for line in server.log_lines()
        if line.get("execution_id") == execution_id and line.get("level") == "WARNING"
    ]
    assert any("retrying" in line["message"] and "exception" in line for line in retried)
    stored = sql.execute(
        "SELECT error, traceback FROM lg_deploy.executions WHERE execution_id = %s",
        (execution_id,),
    ).fetchone()
    assert stored == (final["error"], final["traceback"])
