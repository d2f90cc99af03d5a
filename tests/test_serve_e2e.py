"""`lg-deploy serve` as a real process: HTTP, SQL inserts, request ids, errors, outage, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql as pgsql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.support.processes import LG_DEPLOY_COMMAND
from tests.support.servers import WAIT_SECONDS, StartServer, finished
from tests.support.waiting import wait_until


def insert_row(sql: psycopg.Connection[Any], graph_id: str, payload: str, later: bool) -> str:
    """INSERT one execution as another system would; `later` makes it due in an hour."""
    run_at = "now() + interval '1 hour'" if later else "now()"
    row = sql.execute(
        pgsql.SQL(
            "INSERT INTO lg_deploy.executions (graph_id, input, run_at)"
            " VALUES (%s, %s::jsonb, {}) RETURNING execution_id"
        ).format(pgsql.SQL(run_at)),
        (graph_id, payload),
    ).fetchone()
    assert row is not None
    return str(row[0])


def assert_json_error(answer: httpx.Response, status: int) -> dict[str, Any]:
    """`status` with a JSON error body whose request_id equals the X-Request-ID header."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = answer.json()
    assert body["error"]
    assert body["message"]
    assert body["request_id"]
    assert body["request_id"] == answer.headers["x-request-id"]
    return body


@pytest.mark.req("SERVE-E2E", "API-EXECUTIONS")
def test_serve_runs_http_submissions_and_plain_sql_inserts(
    start_server: StartServer, worker_env: dict[str, str], sql: psycopg.Connection[Any]
) -> None:
    """A served echo completes via /wait; a row INSERTed by SQL completes and is seen by GET."""
    server = start_server(worker_env)
    with server.http() as client:
        submitted = client.post("/executions", json={"graph_id": "echo", "input": {"a": 1}})
        assert submitted.status_code == 202
        state = finished(client, submitted.json()["execution_id"])
        assert (state["status"], state["output"]) == ("COMPLETED", {"a": 1})
        inserted = insert_row(sql, "echo", '{"ticket": 42}', later=False)
        state = finished(client, inserted)
        assert (state["status"], state["output"]) == ("COMPLETED", {"ticket": 42})
        assert client.get(f"/executions/{inserted}").json()["status"] == "COMPLETED"


@pytest.mark.req("LLD-7.3", "SERVE-E2E")
def test_request_id_reaches_the_row_and_the_request_and_worker_log_lines(
    start_server: StartServer, worker_env: dict[str, str], sql: psycopg.Connection[Any]
) -> None:
    """X-Request-ID is stored on the row and logged on request lines and the worker's lines."""
    server = start_server(worker_env)
    request_id = f"e2e-{uuid.uuid4().hex[:8]}"
    with server.http() as client:
        answer = client.post(
            "/executions", json={"graph_id": "echo"}, headers={"X-Request-ID": request_id}
        )
        execution_id = answer.json()["execution_id"]
        finished(client, execution_id)
    row = sql.execute(
        "SELECT request_id FROM lg_deploy.executions WHERE execution_id = %s", (execution_id,)
    ).fetchone()
    assert row == (request_id,)

    def mine() -> list[dict[str, Any]]:
        return [line for line in server.log_lines() if line.get("request_id") == request_id]

    def logged_everything() -> bool:
        messages = {line["message"] for line in mine()}
        return {"request completed", "execution started", "execution completed"} <= messages

    wait_until(logged_everything, 5.0)
    done = next(line for line in mine() if line["message"] == "request completed")
    assert (done["method"], done["path"], done["status"]) == ("POST", "/executions", 202)
    assert done["duration_ms"] >= 0
    assert any(line["message"] == "request started" for line in mine())
    worker_lines = [line for line in mine() if line.get("execution_id") == execution_id]
    assert {"execution started", "execution completed"} <= {
        line["message"] for line in worker_lines
    }


@pytest.mark.req("LLD-9.2", "SERVE-E2E")
def test_real_server_answers_each_documented_error_as_json(
    start_server: StartServer, worker_env: dict[str, str], sql: psycopg.Connection[Any]
) -> None:
    """400, 404, 405, 413, 415, 422 and 409 each come for their cause, as JSON with request id."""
    server = start_server(worker_env, LG_DEPLOY_MAX_BODY_BYTES="2048")
    json_type = {"content-type": "application/json"}
    with server.http() as client:
        assert_json_error(client.post("/executions", content=b"{nope", headers=json_type), 400)
        assert_json_error(client.get(f"/executions/{uuid.uuid4()}"), 404)
        assert_json_error(client.get("/no/such/route"), 404)
        assert_json_error(client.delete("/executions"), 405)
        big = json.dumps({"graph_id": "echo", "input": {"x": "y" * 4096}}).encode()
        assert_json_error(client.post("/executions", content=big, headers=json_type), 413)
        plain = {"content-type": "text/plain"}
        assert_json_error(client.post("/executions", content=b"{}", headers=plain), 415)
        body = assert_json_error(client.post("/executions", json={"graph_id": "nope"}), 422)
        assert "echo" in body["known_graphs"]
        assert_json_error(client.get("/executions/not-a-uuid"), 422)
        later = insert_row(sql, "echo", "{}", later=True)
        assert client.post(f"/executions/{later}/cancel").status_code == 200
        assert_json_error(client.post(f"/executions/{later}/cancel"), 409)


@pytest.mark.req("LLD-9.2", "API-OPS", "SERVE-E2E")
def test_database_outage_answers_503_and_readiness_recovers(
    start_server: StartServer, worker_env: dict[str, str], db_url: str
) -> None:
    """With the database refusing connections: 503 database_unavailable, /readyz 503; then 200."""
    server = start_server(worker_env, LG_DEPLOY_POOL_TIMEOUT_SECONDS="1")
    dbname = conninfo_to_dict(db_url)["dbname"]
    admin_url = make_conninfo(db_url, dbname="postgres")
    with server.http() as client, psycopg.connect(admin_url, autocommit=True) as admin:
        assert client.get("/readyz").status_code == 200
        admin.execute(
            pgsql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(pgsql.Identifier(dbname))
        )
        try:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND application_name LIKE 'lg-deploy%%'",
                (dbname,),
            )
            probe = f"/executions/{uuid.uuid4()}"
            wait_until(lambda: client.get(probe).status_code == 503, 10.0)
            body = assert_json_error(client.get(probe), 503)
            assert body["error"] == "database_unavailable"
            assert "Traceback" not in json.dumps(body)
            not_ready = client.get("/readyz")
            assert not_ready.status_code == 503
            assert not_ready.json()["checks"]["database"] is False
        finally:
            admin.execute(
                pgsql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(
                    pgsql.Identifier(dbname)
                )
            )
        wait_until(lambda: client.get("/readyz").status_code == 200, 20.0)
        assert client.get(f"/executions/{uuid.uuid4()}").status_code == 404


@pytest.mark.req("LLD-7.2", "SERVE-E2E")
def test_sigterm_hands_running_executions_back_and_exits_zero(
    start_server: StartServer, worker_env: dict[str, str], sql: psycopg.Connection[Any]
) -> None:
    """SIGTERM during 60 s graphs: exit 0 soon after the 1 s grace; rows QUEUED, interrupted."""
    server = start_server(worker_env, LG_DEPLOY_SHUTDOWN_GRACE_SECONDS="1")
    with server.http() as client:
        ids = [
            client.post("/executions", json={"graph_id": "sleep", "input": {"seconds": 60}}).json()[
                "execution_id"
            ]
            for _ in range(2)
        ]

    def running() -> int:
        row = sql.execute(
            "SELECT count(*) FROM lg_deploy.executions WHERE status = 'RUNNING'"
        ).fetchone()
        return int(row[0]) if row else 0

    wait_until(lambda: running() == 2)
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    exit_code = server.process.wait(15)
    assert time.monotonic() - started < 15
    rows = sql.execute(
        "SELECT execution_id::text, status, error FROM lg_deploy.executions ORDER BY created_at"
    ).fetchall()
    assert [row[0] for row in rows] == ids, "an execution was lost"
    assert {row[1] for row in rows} == {"QUEUED"}
    handed_back = sql.execute(
        "SELECT count(*) FROM lg_deploy.execution_events"
        " WHERE from_status = 'RUNNING' AND to_status = 'QUEUED' AND error LIKE 'interrupted%%'"
    ).fetchone()
    assert handed_back == (2,)
    assert exit_code == 0, f"exit status {exit_code} after SIGTERM"


@pytest.mark.req("SERVE-E2E")
def test_memory_backend_serve_completes_an_execution_without_a_database(
    start_server: StartServer, tmp_path: Path
) -> None:
    """LG_DEPLOY_BACKEND=memory serves and completes an echo with no database configured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LG_DEPLOY_")}
    env.update(LG_DEPLOY_BACKEND="memory", LG_DEPLOY_LOG_FORMAT="json", PYTHONUNBUFFERED="1")
    env["LG_DEPLOY_DATA_DIR"] = str(tmp_path / "unused")
    server = start_server(env)
    with server.http() as client:
        submitted = client.post("/executions", json={"graph_id": "echo", "input": {"m": True}})
        state = finished(client, submitted.json()["execution_id"])
        assert (state["status"], state["output"]) == ("COMPLETED", {"m": True})
        assert client.get("/readyz").status_code == 200
    assert not (tmp_path / "unused").exists(), "the memory backend started a database"


@pytest.mark.req("CLI-CLIENT", "SERVE-E2E")
def test_cli_commands_against_the_running_server(
    start_server: StartServer, worker_env: dict[str, str], sql: psycopg.Connection[Any]
) -> None:
    """submit/get/list/events/cancel/wait print JSON; exit 0, 1 FAILED, 3 not final, 5 a 404."""
    server = start_server(worker_env)
    with server.http() as client:
        answer = client.post("/executions", json={"graph_id": "echo", "input": {"k": 1}})
        known = answer.json()["execution_id"]
        finished(client, known)
    to_cancel = insert_row(sql, "echo", "{}", later=True)
    to_wait = insert_row(sql, "echo", "{}", later=True)
    commands = {
        "submit-echo": ["submit", "echo", "--input", '{"a": 1}', "--wait"],
        "submit-fail": ["submit", "fail", "--input", '{"message": "boom"}', "--wait"],
        "get": ["get", known],
        "get-unknown": ["get", str(uuid.uuid4())],
        "list": ["list", "--limit", "1"],
        "events": ["events", known],
        "cancel": ["cancel", to_cancel],
        "wait": ["wait", to_wait, "--timeout", "0.5"],
    }
    processes = {
        name: subprocess.Popen(
            [*LG_DEPLOY_COMMAND, *args, "--url", server.url],
            env=worker_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, args in commands.items()
    }
    results: dict[str, tuple[int, str, str]] = {}
    try:
        for name, process in processes.items():
            out, err = process.communicate(timeout=WAIT_SECONDS + 15)
            results[name] = (process.returncode, out, err)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(10)

    def printed(name: str, exit_code: int) -> Any:
        code, out, err = results[name]
        assert code == exit_code, f"{name}: exit {code}\n{out}\n{err}"
        return json.loads(out)

    echo = printed("submit-echo", 0)
    assert (echo["status"], echo["output"]) == ("COMPLETED", {"a": 1})
    fail = printed("submit-fail", 1)
    assert fail["status"] == "FAILED"
    assert "boom" in fail["error"]
    assert printed("get", 0)["execution_id"] == known
    assert results["get-unknown"][0] == 5
    assert "404" in results["get-unknown"][2]
    page = printed("list", 0)
    assert len(page["items"]) == 1
    assert page["next_cursor"]
    events = printed("events", 0)["items"]
    assert [event["to_status"] for event in events] == ["QUEUED", "RUNNING", "COMPLETED"]
    cancelled = printed("cancel", 0)
    assert (cancelled["status"], cancelled["error"]) == ("FAILED", "cancelled")
    row = sql.execute(
        "SELECT status FROM lg_deploy.executions WHERE execution_id = %s", (to_cancel,)
    ).fetchone()
    assert row == ("FAILED",)
    assert printed("wait", 3)["status"] == "QUEUED"
