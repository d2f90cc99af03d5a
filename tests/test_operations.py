"""Operations: the psql views, the Prometheus series of a real server, and its JSON logs."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql as pgsql

from tests.support.servers import StartServer, finished
from tests.support.waiting import wait_until

SqlConn = psycopg.Connection[Any]
DEAD_WORKER = "dead-host:999999:abcdef"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def insert(sql: SqlConn, graph_id: str, later: bool = True) -> str:
    """One execution by plain SQL (due in an hour unless `later` is false); its id."""
    row = sql.execute(
        "INSERT INTO lg_deploy.executions (graph_id, input, run_at)"
        " VALUES (%s, '{}', now() + CASE WHEN %s THEN interval '1 hour' ELSE interval '0' END)"
        " RETURNING execution_id::text",
        (graph_id, later),
    ).fetchone()
    assert row is not None
    return str(row[0])


def set_status(sql: SqlConn, execution_id: str, status: str, **columns: str) -> None:
    """One status change by plain SQL, as an operator or another system would make it."""
    if status == "RUNNING":
        columns = {"worker_id": DEAD_WORKER, **columns}
        sql.execute(
            "UPDATE lg_deploy.executions SET status = 'RUNNING', attempts = attempts + 1,"
            " worker_id = %s, lease_expires_at = now() + interval '1 hour'"
            " WHERE execution_id = %s",
            (columns["worker_id"], execution_id),
        )
        return
    sql.execute(
        "UPDATE lg_deploy.executions SET status = %s, error = %s, output = %s::jsonb"
        " WHERE execution_id = %s",
        (status, columns.get("error"), columns.get("output"), execution_id),
    )


def view(sql: SqlConn, name: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """A view's column names and rows, as `SELECT * FROM lg_deploy.<name>` shows them."""
    cursor = sql.execute(pgsql.SQL("SELECT * FROM {}").format(pgsql.Identifier("lg_deploy", name)))
    columns = [column.name for column in cursor.description or []]
    return columns, cursor.fetchall()


@pytest.mark.req("OPS-VIEWS")
def test_queue_depth_view_counts_waiting_and_running_per_graph(sql: SqlConn) -> None:
    """queue_depth: QUEUED and RUNNING per graph with the oldest; finished rows are not counted."""
    first, second = insert(sql, "echo"), insert(sql, "echo")
    insert(sql, "sleep")
    running = insert(sql, "echo")
    set_status(sql, running, "RUNNING")
    done = insert(sql, "echo")
    set_status(sql, done, "RUNNING")
    set_status(sql, done, "COMPLETED", output="{}")
    columns, rows = view(sql, "queue_depth")
    assert columns == ["graph_id", "status", "executions", "oldest_created_at", "oldest_age"]
    depth = {(row[0], row[1]): row[2] for row in rows}
    assert depth == {("echo", "QUEUED"): 2, ("echo", "RUNNING"): 1, ("sleep", "QUEUED"): 1}
    created = sql.execute(
        "SELECT min(created_at) FROM lg_deploy.executions WHERE execution_id IN (%s, %s)",
        (first, second),
    ).fetchone()
    echo_queued = next(row for row in rows if row[:2] == ("echo", "QUEUED"))
    assert created is not None
    assert echo_queued[3] == created[0]
    assert echo_queued[4].total_seconds() >= 0


@pytest.mark.req("OPS-VIEWS")
def test_recent_failures_view_lists_failures_newest_first_with_their_error(sql: SqlConn) -> None:
    """recent_failures: each FAILED execution with its error and worker, the newest first."""
    older, newer = insert(sql, "fail"), insert(sql, "fail")
    set_status(sql, older, "RUNNING", worker_id="host:1:aaaaaa")
    set_status(sql, older, "FAILED", error="ValueError: first")
    cancelled = insert(sql, "echo")
    set_status(sql, cancelled, "FAILED", error="cancelled")
    set_status(sql, newer, "RUNNING")
    set_status(sql, newer, "FAILED", error="ValueError: second")
    completed = insert(sql, "echo")
    set_status(sql, completed, "RUNNING")
    set_status(sql, completed, "COMPLETED", output="{}")
    columns, rows = view(sql, "recent_failures")
    assert columns == [
        "execution_id",
        "graph_id",
        "attempts",
        "max_attempts",
        "finished_at",
        "error",
        "worker_id",
        "request_id",
    ]
    listed = [(str(row[0]), row[5]) for row in rows]
    assert listed == [
        (newer, "ValueError: second"),
        (cancelled, "cancelled"),
        (older, "ValueError: first"),
    ]
    assert rows[2][6] == "host:1:aaaaaa"
    assert rows[2][2:4] == (1, 3)


@pytest.mark.req("OPS-VIEWS")
def test_slowest_executions_view_orders_finished_runs_by_run_time(sql: SqlConn) -> None:
    """slowest_executions: finished runs, longest run first, with run and wait times."""
    quick, slow, medium = insert(sql, "echo"), insert(sql, "sleep"), insert(sql, "fail")
    for execution_id in (slow, medium, quick):
        set_status(sql, execution_id, "RUNNING")
    set_status(sql, quick, "COMPLETED", output="{}")
    sql.execute("SELECT pg_sleep(0.1)")
    set_status(sql, medium, "FAILED", error="boom")
    sql.execute("SELECT pg_sleep(0.1)")
    set_status(sql, slow, "COMPLETED", output="{}")
    insert(sql, "echo")  # QUEUED: not a run
    columns, rows = view(sql, "slowest_executions")
    assert columns == [
        "execution_id",
        "graph_id",
        "status",
        "attempts",
        "run_time",
        "wait_time",
        "finished_at",
    ]
    assert [str(row[0]) for row in rows] == [slow, medium, quick]
    assert [row[2] for row in rows] == ["COMPLETED", "FAILED", "COMPLETED"]
    assert rows[0][4].total_seconds() >= 0.2
    assert 0.1 <= rows[1][4].total_seconds() < rows[0][4].total_seconds()
    assert all(row[5].total_seconds() >= 0 for row in rows)


def scrape(client: httpx.Client) -> Samples:
    """Every sample of /metrics by (name, labels)."""
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(answer.text):
        assert family.name.startswith("lg_deploy_"), family.name
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def sample(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; fails when the series is missing."""
    key = (name, frozenset(labels.items()))
    assert key in samples, f"{name}{labels} missing from /metrics"
    return samples[key]


@pytest.mark.req("OPS-METRICS", "API-OPS")
def test_metrics_cover_queue_outcomes_latency_retries_recoveries_and_listener(
    start_server: StartServer, worker_env: dict[str, str], sql: SqlConn
) -> None:
    """After echo runs, a retried failure and a recovered lease, /metrics counts each of them."""
    server = start_server(
        worker_env,
        LG_DEPLOY_RETRY_ON_ERROR="true",
        LG_DEPLOY_RETRY_BACKOFF_SECONDS="0.05",
        LG_DEPLOY_RECOVERY_INTERVAL_SECONDS="0.2",
    )
    with server.http() as client:
        ids = [
            client.post("/executions", json={"graph_id": "echo", "input": {"n": n}}).json()[
                "execution_id"
            ]
            for n in range(3)
        ]
        failing = client.post(
            "/executions",
            json={"graph_id": "fail", "input": {"message": "no"}, "max_attempts": 2},
        ).json()["execution_id"]
        for execution_id in ids:
            assert finished(client, execution_id)["status"] == "COMPLETED"
        failed = finished(client, failing)
        assert (failed["status"], failed["attempts"]) == ("FAILED", 2)
        orphan = insert(sql, "echo")  # due in an hour, so it stays QUEUED once recovered
        set_status(sql, orphan, "RUNNING")
        sql.execute(
            "UPDATE lg_deploy.executions SET lease_expires_at = now() - interval '1 minute'"
            " WHERE execution_id = %s",
            (orphan,),
        )
        queued = "SELECT status FROM lg_deploy.executions WHERE execution_id = %s"
        wait_until(lambda: sql.execute(queued, (orphan,)).fetchone() == ("QUEUED",), 10.0)
        metrics = scrape(client)

    assert sample(metrics, "lg_deploy_queue_depth", graph_id="echo", status="QUEUED") == 1
    assert sample(metrics, "lg_deploy_executions_started_total", graph_id="echo") == 3
    assert sample(metrics, "lg_deploy_executions_started_total", graph_id="fail") == 2
    finished_total = "lg_deploy_executions_finished_total"
    assert sample(metrics, finished_total, graph_id="echo", status="COMPLETED") == 3
    assert sample(metrics, finished_total, graph_id="fail", status="FAILED") == 1
    run = {"graph_id": "echo", "status": "COMPLETED"}
    assert sample(metrics, "lg_deploy_execution_run_seconds_bucket", **run, le="+Inf") == 3
    assert sample(metrics, "lg_deploy_execution_run_seconds_count", **run) == 3
    pickup = "lg_deploy_execution_pickup_seconds_bucket"
    assert sample(metrics, pickup, graph_id="echo", le="+Inf") == 3
    assert sample(metrics, pickup, graph_id="fail", le="+Inf") == 2
    assert sample(metrics, "lg_deploy_executions_retried_total", graph_id="fail") == 1
    assert sample(metrics, "lg_deploy_lease_recoveries_total", status="QUEUED") == 1
    assert sample(metrics, "lg_deploy_listener_connected") == 1
    assert sample(metrics, "lg_deploy_listener_connects") >= 1
    requests = "lg_deploy_http_requests_total"
    assert sample(metrics, requests, method="POST", route="/executions", status="202") == 4


@pytest.mark.req("OPS-METRICS")
def test_json_logs_tie_request_and_worker_lines_by_request_and_execution_id(
    start_server: StartServer, worker_env: dict[str, str]
) -> None:
    """JSON request lines carry request_id; worker lines carry execution_id and the same id."""
    server = start_server(worker_env)
    request_id = f"ops-{uuid.uuid4().hex[:8]}"
    with server.http() as client:
        answer = client.post(
            "/executions",
            json={"graph_id": "fail", "input": {"message": "logged"}},
            headers={"X-Request-ID": request_id},
        )
        execution_id = answer.json()["execution_id"]
        assert finished(client, execution_id)["status"] == "FAILED"

    def lines() -> list[dict[str, Any]]:
        return [line for line in server.log_lines() if line.get("request_id") == request_id]

    wait_until(lambda: any(line["message"].startswith("execution failed") for line in lines()))
    request_lines = [line for line in lines() if line.get("path") == "/executions"]
    assert {line["message"] for line in request_lines} == {"request started", "request completed"}
    done = next(line for line in request_lines if line["message"] == "request completed")
    assert (done["method"], done["status"]) == ("POST", 202)
    assert done["duration_ms"] >= 0
    worker_lines = [line for line in lines() if "execution_id" in line]
    assert {line["message"].split(":")[0] for line in worker_lines} >= {
        "execution started",
        "execution failed",
    }
    for line in worker_lines:
        assert line["execution_id"] == execution_id
        assert (line["graph_id"], line["attempt"]) == ("fail", 1)
    others = [line for line in server.log_lines() if line.get("execution_id") == execution_id]
    assert all(line.get("request_id") == request_id for line in others)
