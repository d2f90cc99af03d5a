"""SIGTERM/SIGINT on real `lg-deploy worker` and `serve` processes: grace first, then at once."""

from __future__ import annotations

import signal
import time
from typing import Any

import psycopg
import pytest

from tests.support.processes import Workers
from tests.support.servers import StartServer
from tests.support.waiting import wait_until

SqlConn = psycopg.Connection[Any]
LONG_GRACE = {"LG_DEPLOY_SHUTDOWN_GRACE_SECONDS": "30", "LG_DEPLOY_LEASE_SECONDS": "2"}
FAST_RECOVERY = {"LG_DEPLOY_LEASE_SECONDS": "2", "LG_DEPLOY_RECOVERY_INTERVAL_SECONDS": "0.5"}
SECOND_SIGNAL_EXIT = 130


def insert(sql: SqlConn, graph_id: str, payload: str) -> str:
    """INSERT one execution by SQL and return its id."""
    row = sql.execute(
        "INSERT INTO lg_deploy.executions (graph_id, input) VALUES (%s, %s::jsonb)"
        " RETURNING execution_id::text",
        (graph_id, payload),
    ).fetchone()
    assert row is not None
    return str(row[0])


def row_of(sql: SqlConn, execution_id: str) -> tuple[str, str | None, int, str | None]:
    """(status, worker_id, attempts, error) of one execution."""
    row = sql.execute(
        "SELECT status, worker_id, attempts, error FROM lg_deploy.executions"
        " WHERE execution_id = %s",
        (execution_id,),
    ).fetchone()
    assert row is not None
    return row[0], row[1], row[2], row[3]


def running_sleep(sql: SqlConn) -> tuple[str, str]:
    """A 60 s sleep inserted by SQL, once RUNNING: (execution id, worker id)."""
    execution_id = insert(sql, "sleep", '{"seconds": 60}')
    wait_until(lambda: row_of(sql, execution_id)[0] == "RUNNING")
    worker_id = row_of(sql, execution_id)[1]
    assert worker_id is not None
    return execution_id, worker_id


def second_signal_exits_at_once(process: Any, signum: int) -> None:
    """After a first `signum` the process is alive 1 s later; a second one ends it with 130."""
    process.send_signal(signum)
    time.sleep(1.0)  # the graceful stop must still be under way
    assert process.poll() is None, "the first signal did not wait for the running execution"
    sent = time.monotonic()
    process.send_signal(signum)
    assert process.wait(10) == SECOND_SIGNAL_EXIT
    assert time.monotonic() - sent < 2.0


def assert_recovered_by_a_peer(
    workers: Workers, sql: SqlConn, execution_id: str, gone: str
) -> None:
    """The execution left RUNNING by `gone` is recovered and run by a new worker: by its lease,
    or at once because the new worker sees `gone`'s process ended on this host."""
    assert row_of(sql, execution_id)[:3] == ("RUNNING", gone, 1), "it was handed back, not left"
    workers.start(**FAST_RECOVERY)
    wait_until(lambda: row_of(sql, execution_id)[1] != gone, timeout=10)
    status, worker_id, attempts, _ = row_of(sql, execution_id)
    assert (status, attempts) == ("RUNNING", 2)
    assert worker_id != gone
    handed = sql.execute(
        "SELECT error FROM lg_deploy.execution_events WHERE execution_id = %s"
        " AND from_status = 'RUNNING' AND to_status = 'QUEUED'",
        (execution_id,),
    ).fetchall()
    assert handed in (
        [(f"lease expired: worker {gone} stopped renewing attempt 1 of 3",)],
        [(f"worker {gone} is gone (its process ended) during attempt 1 of 3",)],
    )


@pytest.mark.req("DUR-SHUTDOWN")
def test_worker_first_sigterm_is_graceful_and_second_exits_at_once(
    workers: Workers, sql: SqlConn
) -> None:
    """Worker: first SIGTERM stops claiming and waits; second exits 130 at once; a peer recovers."""
    worker = workers.start(**LONG_GRACE)
    execution_id, worker_id = running_sleep(sql)
    worker.process.send_signal(signal.SIGTERM)

    def stopping() -> bool:
        return any(line["message"].startswith("stopping") for line in worker.log_messages())

    wait_until(stopping, 5.0)
    later = insert(sql, "echo", '{"n": 1}')
    time.sleep(1.0)
    assert worker.process.poll() is None, "the first SIGTERM did not wait for the running sleep"
    assert row_of(sql, later)[0] == "QUEUED", "a stopping worker claimed new work"
    sent = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(10) == SECOND_SIGNAL_EXIT
    assert time.monotonic() - sent < 2.0
    assert_recovered_by_a_peer(workers, sql, execution_id, worker_id)
    wait_until(lambda: row_of(sql, later)[0] == "COMPLETED")


@pytest.mark.req("DUR-SHUTDOWN")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_second_signal_exits_at_once_and_leases_recover(
    start_server: StartServer,
    workers: Workers,
    worker_env: dict[str, str],
    sql: SqlConn,
    signum: int,
) -> None:
    """Serve with 30 s grace: a second SIGTERM/SIGINT exits 130 at once; a worker recovers."""
    server = start_server(worker_env, **LONG_GRACE)
    execution_id, worker_id = running_sleep(sql)
    second_signal_exits_at_once(server.process, signum)
    assert_recovered_by_a_peer(workers, sql, execution_id, worker_id)


@pytest.mark.req("DUR-SHUTDOWN")
def test_serve_single_sigterm_hands_running_executions_back(
    start_server: StartServer, worker_env: dict[str, str], sql: SqlConn
) -> None:
    """Serve with 0.5 s grace: one SIGTERM exits 0 soon and the running sleep is QUEUED again."""
    server = start_server(worker_env, LG_DEPLOY_SHUTDOWN_GRACE_SECONDS="0.5")
    execution_id, worker_id = running_sleep(sql)
    sent = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(15) == 0
    assert time.monotonic() - sent < 5.0
    status, _, attempts, error = row_of(sql, execution_id)
    assert (status, attempts) == ("QUEUED", 1)
    assert error == f"interrupted: worker {worker_id} stopped"
