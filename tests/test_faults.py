"""Faults of the database side, on real processes: a lost NOTIFY, every backend killed, the
server stopped for a few seconds, a crash-restart of the server, and a worker started while
the server is down.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql as pgsql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.chaos.cluster import Cluster
from tests.chaos.processes import (
    Launcher,
    SqlConn,
    insert,
    listener_pids,
    row_of,
    status_counts,
    wait_listening,
)
from tests.support.servers import answers_200, free_port
from tests.support.waiting import wait_until

OUTAGE_SECONDS = 3.0
RESUME_WITHIN_SECONDS = 10.0
POLL_SECONDS = 1.0


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Launcher]:
    """Starts lg-deploy processes; every one is killed at teardown."""
    launcher = Launcher(tmp_path)
    try:
        yield launcher
    finally:
        launcher.kill_all()


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A PostgreSQL server this test owns, so it may stop and start it."""
    owned = Cluster()
    try:
        yield owned
    finally:
        owned.close()


def fresh_env(worker_env: dict[str, str], url: str) -> dict[str, str]:
    """worker_env pointed at another database."""
    return {**worker_env, "LG_DEPLOY_DATABASE_URL": url}


@pytest.mark.req("FAULT-LISTEN", "CARD-NOTIFY")
def test_execution_inserted_while_listen_is_down_starts_within_poll_interval_plus_1s(
    sql: SqlConn, worker_env: dict[str, str], db_url: str, spawn: Launcher
) -> None:
    """LISTEN backend killed and kept away: an INSERT nobody hears starts by polling within 2 s."""
    worker = spawn.start(worker_env, "worker", LG_DEPLOY_POLL_INTERVAL_SECONDS=str(POLL_SECONDS))
    wait_listening(db_url, 1, worker)
    warm = insert(sql, "echo", {})  # the worker's pool now holds an open connection
    wait_until(lambda: row_of(sql, warm)["status"] == "COMPLETED", 10)
    (old_pid,) = listener_pids(sql)
    database = pgsql.Identifier(conninfo_to_dict(db_url)["dbname"])
    with psycopg.connect(make_conninfo(db_url, dbname="postgres"), autocommit=True) as admin:
        # New connections refused, so the listener cannot re-LISTEN (and fetch) before the INSERT.
        admin.execute(pgsql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(database))
        try:
            killed = sql.execute("SELECT pg_terminate_backend(%s, 5000)", (old_pid,)).fetchone()
            assert killed == (True,)
            execution_id = insert(sql, "echo", {"during": "no LISTEN"})
            wait_until(lambda: row_of(sql, execution_id)["started_at"] is not None, 10)
            assert listener_pids(sql) == [], "the NOTIFY may have been heard"
        finally:
            admin.execute(pgsql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(database))
    row = row_of(sql, execution_id)
    delay = (row["started_at"] - row["created_at"]).total_seconds()
    print(f"started {delay:.3f} s after the INSERT (poll interval {POLL_SECONDS} s)")
    assert delay <= POLL_SECONDS + 1.0
    wait_until(lambda: row_of(sql, execution_id)["status"] == "COMPLETED", 10)
    wait_until(lambda: len(listener_pids(sql)) == 1, 15)
    worker.assert_alive()


@pytest.mark.req("FAULT-LISTEN", "FAULT-CHAOS")
def test_execution_inserted_after_all_backends_are_killed_starts_within_2s(
    sql: SqlConn, worker_env: dict[str, str], db_url: str, spawn: Launcher
) -> None:
    """Every lg-deploy backend terminated (warm pool): the next INSERT starts within poll + 1 s."""
    worker = spawn.start(
        worker_env,
        "worker",
        LG_DEPLOY_POLL_INTERVAL_SECONDS=str(POLL_SECONDS),
        LG_DEPLOY_WORKER_CONCURRENCY="8",
    )
    wait_listening(db_url, 1, worker)
    sql.execute(
        "INSERT INTO lg_deploy.executions (graph_id, input)"
        " SELECT 'sleep', '{\"seconds\": 0.3}' FROM generate_series(1, 40)"
    )
    wait_until(lambda: status_counts(sql) == {"COMPLETED": 40}, 20)
    killed = sql.execute(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name LIKE 'lg-deploy%'"
    ).fetchone()
    assert killed is not None
    assert killed[0] >= 2
    execution_id = insert(sql, "echo", {"after": "backends killed"})
    wait_until(lambda: row_of(sql, execution_id)["started_at"] is not None, 30)
    row = row_of(sql, execution_id)
    delay = (row["started_at"] - row["created_at"]).total_seconds()
    print(f"{killed[0]} backends killed; the next execution started after {delay:.2f} s")
    assert delay <= POLL_SECONDS + 1.0
    worker.assert_alive()


def _answers(port: int) -> bool:
    """True once `serve` on this port answers /healthz."""
    return answers_200(f"http://127.0.0.1:{port}/healthz")


def assert_503_json(answer: httpx.Response) -> None:
    """503 with a JSON error body carrying the request id."""
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert body["error"] == "database_unavailable"
    assert body["request_id"]
    assert body["request_id"] == answer.headers["x-request-id"]


@pytest.mark.timeout(120)
@pytest.mark.req("FAULT-OUTAGE", "LLD-9.2")
def test_database_outage_gives_503_then_everything_resumes_within_10s(
    cluster: Cluster, worker_env: dict[str, str], spawn: Launcher
) -> None:
    """PostgreSQL stopped 3 s: API 503 JSON, processes live; all resumes within 10 s of restart."""
    url = cluster.create_database()
    env = fresh_env(worker_env, url)
    port = free_port()
    settings = {"LG_DEPLOY_POOL_TIMEOUT_SECONDS": "1", "LG_DEPLOY_WORKER_CONCURRENCY": "2"}
    server = spawn.start(
        env, "serve", LG_DEPLOY_HOST="127.0.0.1", LG_DEPLOY_PORT=str(port), **settings
    )
    worker = spawn.start(env, "worker", LG_DEPLOY_MIGRATE_ON_START="false", **settings)
    wait_listening(url, 2, server, worker)
    wait_until(lambda: _answers(port), 30)  # LISTEN comes up before the port is bound
    with (
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20.0) as client,
        psycopg.connect(url, autocommit=True) as sql,
    ):
        body = {"graph_id": "sleep", "input": {"seconds": 1.5}}
        before = [client.post("/executions", json=body).json()["execution_id"] for _ in range(6)]
        wait_until(lambda: status_counts(sql) == {"RUNNING": 4, "QUEUED": 2}, 10)
    cluster.stop("fast")
    stopped = time.monotonic()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20.0) as client:
        assert_503_json(client.get(f"/executions/{uuid.uuid4()}"))
        assert_503_json(client.post("/executions", json=body))
        time.sleep(max(0.0, stopped + OUTAGE_SECONDS - time.monotonic()))
        server.assert_alive()
        worker.assert_alive()
        cluster.start()
        back = time.monotonic()
        after: list[str] = []

        def submitted() -> bool:
            answer = client.post("/executions", json={"graph_id": "echo", "input": {"n": 1}})
            if answer.status_code != 202:
                assert_503_json(answer)
                return False
            after.append(answer.json()["execution_id"])
            return True

        wait_until(submitted, RESUME_WITHIN_SECONDS, interval=0.1)
    everything = [*before, *after]
    with psycopg.connect(url, autocommit=True) as sql:

        def all_final() -> bool:
            return all(row_of(sql, i)["status"] in ("COMPLETED", "FAILED") for i in everything)

        wait_until(all_final, 30)
        resumed = time.monotonic() - back
        print(f"everything final {resumed:.2f} s after PostgreSQL was back")
        assert [row_of(sql, i)["status"] for i in everything] == ["COMPLETED"] * 7
    assert resumed <= RESUME_WITHIN_SECONDS
    server.assert_alive()
    worker.assert_alive()


@pytest.mark.timeout(90)
@pytest.mark.req("FAULT-OUTAGE", "FAULT-CHAOS")
def test_work_after_a_crash_restart_completes_within_10s(
    cluster: Cluster, worker_env: dict[str, str], spawn: Launcher
) -> None:
    """`pg_ctl restart -m immediate` under warm pools: a new execution completes within 10 s."""
    url = cluster.create_database()
    worker = spawn.start(fresh_env(worker_env, url), "worker", LG_DEPLOY_WORKER_CONCURRENCY="8")
    wait_listening(url, 1, worker)
    with psycopg.connect(url, autocommit=True) as sql:
        sql.execute(
            "INSERT INTO lg_deploy.executions (graph_id, input)"
            " SELECT 'sleep', '{\"seconds\": 0.3}' FROM generate_series(1, 40)"
        )
        wait_until(lambda: status_counts(sql) == {"COMPLETED": 40}, 20)
    cluster.restart_immediate()
    back = time.monotonic()
    with psycopg.connect(url, autocommit=True) as sql:
        execution_id = insert(sql, "echo", {"after": "restart"})
        wait_until(lambda: row_of(sql, execution_id)["status"] == "COMPLETED", 30)
    seconds = time.monotonic() - back
    print(f"completed {seconds:.2f} s after the crash-restart")
    assert seconds <= RESUME_WITHIN_SECONDS
    worker.assert_alive()


@pytest.mark.timeout(90)
@pytest.mark.req("FAULT-OUTAGE", "FAULT-CHAOS")
def test_a_worker_started_while_postgresql_is_down_serves_once_it_is_back(
    cluster: Cluster, worker_env: dict[str, str], spawn: Launcher
) -> None:
    """Started (no migration) while PostgreSQL is stopped, a worker waits for it, then serves."""
    url = cluster.create_database()
    cluster.stop("fast")
    worker = spawn.start(fresh_env(worker_env, url), "worker", LG_DEPLOY_MIGRATE_ON_START="false")

    def waiting_for_the_database() -> bool:
        worker.assert_alive()
        return "cannot reach the database yet" in worker.log_path.read_text()

    wait_until(waiting_for_the_database, 20)
    cluster.start()
    wait_listening(url, 1, worker)
    with psycopg.connect(url, autocommit=True) as sql:
        execution_id = insert(sql, "echo", {"after": "start"})
        wait_until(lambda: row_of(sql, execution_id)["status"] == "COMPLETED", 20)
    worker.assert_alive()
