"""Cancel and idempotency against a real `lg-deploy serve` process on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from typing import Any

import httpx
import psycopg
import pytest

from lg_deploy.db.listener import LISTENER_APPLICATION_NAME
from tests.support.processes import LG_DEPLOY_COMMAND
from tests.support.servers import StartServer
from tests.support.waiting import wait_until

LONG_SLEEP = {"graph_id": "sleep", "input": {"seconds": 60}}
NOTIFY_CANCEL_SECONDS = 2.0
LEASE_SECONDS = 2.0
SqlConn = psycopg.Connection[Any]


def status_of(sql: SqlConn, execution_id: str) -> tuple[str, str | None]:
    """(status, error) of the execution, read by SQL."""
    row = sql.execute(
        "SELECT status, error FROM lg_deploy.executions WHERE execution_id = %s", (execution_id,)
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def start_running(client: httpx.Client, sql: SqlConn) -> str:
    """Submit a 60 s sleep and wait until it is RUNNING."""
    answer = client.post("/executions", json=LONG_SLEEP)
    assert answer.status_code == 202, answer.text
    execution_id: str = answer.json()["execution_id"]
    wait_until(lambda: status_of(sql, execution_id)[0] == "RUNNING")
    return execution_id


def wait_cancelled(sql: SqlConn, execution_id: str, within: float) -> None:
    """Fail unless the execution becomes FAILED "cancelled" within `within` seconds."""
    started = time.monotonic()
    wait_until(lambda: status_of(sql, execution_id)[0] == "FAILED", within)
    assert status_of(sql, execution_id) == ("FAILED", "cancelled")
    assert time.monotonic() - started < within


@pytest.mark.req("DUR-CANCEL")
def test_cancel_over_http_on_postgres(
    start_server: StartServer, worker_env: dict[str, str], sql: SqlConn
) -> None:
    """QUEUED: 200 FAILED; RUNNING: 202, FAILED "cancelled" within 2 s by NOTIFY; final: 409."""
    server = start_server(worker_env)
    with server.http() as client:
        later = client.post("/executions", json={"graph_id": "echo", "delay_seconds": 60})
        queued = client.post(f"/executions/{later.json()['execution_id']}/cancel")
        assert queued.status_code == 200, queued.text
        assert (queued.json()["status"], queued.json()["error"]) == ("FAILED", "cancelled")
        execution_id = start_running(client, sql)
        answer = client.post(f"/executions/{execution_id}/cancel")
        assert answer.status_code == 202, answer.text
        assert answer.json()["status"] == "RUNNING"
        assert answer.json()["cancel_requested_at"] is not None
        wait_cancelled(sql, execution_id, NOTIFY_CANCEL_SECONDS)
        again = client.post(f"/executions/{execution_id}/cancel")
        assert again.status_code == 409, again.text
        assert again.json()["request_id"] == again.headers["x-request-id"]


@pytest.mark.req("DUR-CANCEL")
def test_cancel_reaches_the_worker_without_its_notification(
    start_server: StartServer, worker_env: dict[str, str], sql: SqlConn
) -> None:
    """With the LISTEN connection killed just before the cancel, renewal stops it within lease/4."""
    server = start_server(worker_env, LG_DEPLOY_LEASE_SECONDS=str(LEASE_SECONDS))
    with server.http() as client:
        execution_id = start_running(client, sql)
        killed = sql.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = %s",
            (LISTENER_APPLICATION_NAME,),
        ).fetchall()
        assert killed == [(True,)]
        answer = client.post(f"/executions/{execution_id}/cancel")
        assert answer.status_code == 202, answer.text
    wait_cancelled(sql, execution_id, LEASE_SECONDS / 4 + 1.0)


@pytest.mark.req("DUR-CANCEL")
def test_cli_cancel_stops_a_running_execution(
    start_server: StartServer, worker_env: dict[str, str], sql: SqlConn
) -> None:
    """`lg-deploy cancel ID --url` on a RUNNING execution prints it marked; it then fails."""
    server = start_server(worker_env)
    with server.http() as client:
        execution_id = start_running(client, sql)
    done = subprocess.run(
        [*LG_DEPLOY_COMMAND, "cancel", execution_id, "--url", server.url],
        env=worker_env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["execution_id"] == execution_id
    assert printed["cancel_requested_at"] is not None
    wait_cancelled(sql, execution_id, NOTIFY_CANCEL_SECONDS)


@pytest.mark.req("DUR-CANCEL")
def test_cancel_requested_by_plain_sql_stops_the_execution(
    start_server: StartServer, worker_env: dict[str, str], sql: SqlConn
) -> None:
    """UPDATE ... SET cancel_requested_at = now() on a RUNNING row stops it: FAILED "cancelled"."""
    server = start_server(worker_env)
    with server.http() as client:
        execution_id = start_running(client, sql)
    sql.execute(
        "UPDATE lg_deploy.executions SET cancel_requested_at = now() WHERE execution_id = %s",
        (execution_id,),
    )
    wait_cancelled(sql, execution_id, NOTIFY_CANCEL_SECONDS)
    events = sql.execute(
        "SELECT from_status, to_status, error FROM lg_deploy.execution_events"
        " WHERE execution_id = %s ORDER BY event_id",
        (execution_id,),
    ).fetchall()
    assert events == [
        (None, "QUEUED", None),
        ("QUEUED", "RUNNING", None),
        ("RUNNING", "FAILED", "cancelled"),
    ]


@pytest.mark.req("DUR-IDEMPOTENCY")
async def test_concurrent_submits_with_one_key_create_one_execution(
    start_server: StartServer, worker_env: dict[str, str], sql: SqlConn
) -> None:
    """20 simultaneous POSTs with one Idempotency-Key: one 202, nineteen 200, one row."""
    server = start_server(worker_env)
    body = {"graph_id": "echo", "input": {"order": 7}}
    headers = {"Idempotency-Key": "order-7"}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        answers = await asyncio.gather(
            *(client.post("/executions", json=body, headers=headers) for _ in range(20))
        )
    codes = sorted(answer.status_code for answer in answers)
    assert codes == [200] * 19 + [202], [a.text for a in answers if a.status_code >= 300]
    ids = {answer.json()["execution_id"] for answer in answers}
    assert len(ids) == 1
    rows = sql.execute(
        "SELECT execution_id::text FROM lg_deploy.executions WHERE idempotency_key = 'order-7'"
    ).fetchall()
    assert rows == [(ids.pop(),)]
