"""The database doors with real processes: lg-deploy running as lg_deploy_service, rows from a
producer, bad rows from SQL, and a flood of spoofed notifications from a role with no grants.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.types.json import Jsonb

from lg_deploy.checkpoints import postgres_checkpointer
from lg_deploy.db.listener import LISTENER_APPLICATION_NAME
from lg_deploy.db.roles import apply_roles
from tests.support.processes import LG_DEPLOY_COMMAND
from tests.support.roles import PRODUCER, SERVICE, Logins, refused
from tests.support.servers import free_port
from tests.support.sql import history, insert_row
from tests.support.waiting import wait_until

SqlConn = psycopg.Connection[Any]
START_SECONDS = 30.0
WAIT_SECONDS = 15.0
FULL_HISTORY = [(None, "QUEUED"), ("QUEUED", "RUNNING"), ("RUNNING", "COMPLETED")]


@pytest.fixture
async def logins(db_url: str, sql: SqlConn) -> AsyncIterator[Logins]:
    """Login roles on the test database, with sql/roles.sql applied; dropped at teardown."""
    await apply_roles(db_url)
    made = Logins(sql, db_url)
    try:
        yield made
    finally:
        made.drop_all()


@dataclass
class Launcher:
    """Starts `lg-deploy serve` or `worker` processes; the fixture kills them at teardown."""

    env: dict[str, str]
    tmp_path: Path
    sql: SqlConn
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)
    clients: list[httpx.Client] = field(default_factory=list)

    def _popen(self, command: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Path]:
        log_path = self.tmp_path / f"{command}-{len(self.started)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [*LG_DEPLOY_COMMAND, command],
                env={**self.env, **env},
                cwd=self.tmp_path,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        self.started.append(process)
        return process, log_path

    def _alive(self, process: subprocess.Popen[bytes], log_path: Path) -> None:
        code = process.poll()
        assert code is None, f"lg-deploy exited with {code}:\n{log_path.read_text()}"

    def worker(self, url: str, **settings: str) -> None:
        """An `lg-deploy worker` connected with `url`, once its LISTEN connection is up."""
        listening = self._listeners()
        process, log_path = self._popen("worker", {"LG_DEPLOY_DATABASE_URL": url, **settings})

        def ready() -> bool:
            self._alive(process, log_path)
            return self._listeners() > listening

        wait_until(ready, START_SECONDS)

    def serve(self, url: str, **settings: str) -> httpx.Client:
        """An `lg-deploy serve` connected with `url`, once /readyz answers 200; a client of it."""
        port = free_port()
        env = {"LG_DEPLOY_DATABASE_URL": url, "LG_DEPLOY_PORT": str(port), **settings}
        process, log_path = self._popen("serve", {"LG_DEPLOY_HOST": "127.0.0.1", **env})
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30.0)
        self.clients.append(client)

        def ready() -> bool:
            self._alive(process, log_path)
            try:
                return client.get("/readyz").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ready, START_SECONDS)
        return client

    def _listeners(self) -> int:
        row = self.sql.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = %s",
            (LISTENER_APPLICATION_NAME,),
        ).fetchone()
        assert row is not None
        return int(row[0])


@pytest.fixture
def launch(worker_env: dict[str, str], tmp_path: Path, sql: SqlConn) -> Iterator[Launcher]:
    """A launcher of lg-deploy processes; all are killed at teardown."""
    launcher = Launcher({**worker_env, "LG_DEPLOY_LOG_LEVEL": "WARNING"}, tmp_path, sql)
    try:
        yield launcher
    finally:
        for client in launcher.clients:
            client.close()
        for process in launcher.started:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)


def as_service(logins: Logins) -> str:
    """Conninfo of a new login role in lg_deploy_service."""
    return logins.url(logins.create(SERVICE))


SERVICE_SETTINGS = {"LG_DEPLOY_MIGRATE_ON_START": "false"}


def row_of(sql: SqlConn, execution_id: str) -> dict[str, Any]:
    """The execution's row as the owner sees it."""
    cursor = sql.execute(
        "SELECT * FROM lg_deploy.executions WHERE execution_id = %s", (execution_id,)
    )
    names = [column.name for column in cursor.description or ()]
    found = cursor.fetchone()
    assert found is not None
    return dict(zip(names, found, strict=True))


def wait_status(sql: SqlConn, execution_id: str, status: str) -> None:
    """Wait until the execution has `status`; fail showing its row."""
    try:
        wait_until(lambda: row_of(sql, execution_id)["status"] == status, WAIT_SECONDS)
    except AssertionError:
        raise AssertionError(f"not {status}: {row_of(sql, execution_id)}") from None


@pytest.mark.req("SEC-ROLES", "CARD-HISTORY")
def test_producer_rows_are_completed_by_a_worker_with_full_history(
    logins: Logins, sql: SqlConn, launch: Launcher, db_url: str
) -> None:
    """Rows a producer inserts (INSERT and submit()) are COMPLETED with all three events."""
    launch.worker(db_url)
    producer = psycopg.connect(logins.url(logins.create(PRODUCER)), autocommit=True)
    logins.conns.append(producer)
    inserted = insert_row(producer, input=Jsonb({"ticket": 42}))
    row = producer.execute("SELECT lg_deploy.submit('echo', '{\"ticket\": 43}')").fetchone()
    assert row is not None
    submitted = str(row[0])
    for execution_id, ticket in ((inserted, 42), (submitted, 43)):
        wait_status(sql, execution_id, "COMPLETED")
        final = row_of(sql, execution_id)
        assert (final["output"], final["attempts"]) == ({"ticket": ticket}, 1)
        assert history(sql, execution_id) == FULL_HISTORY


def lease_values(sql: SqlConn, execution_id: str, seconds: float) -> set[Any]:
    """The distinct lease_expires_at values seen while polling for `seconds`."""
    seen: set[Any] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        seen.add(row_of(sql, execution_id)["lease_expires_at"])
        time.sleep(0.05)
    return seen - {None}


@pytest.mark.req("SEC-ROLES")
def test_serve_as_the_service_role_runs_http_and_sql_work_renews_and_cancels(
    logins: Logins, sql: SqlConn, launch: Launcher
) -> None:
    """`serve` as a service member: HTTP and SQL submissions, lease renewal, HTTP cancel,
    threads created, relabelled, counted and deleted, and assistants created, versioned, run
    and deleted."""
    client = launch.serve(
        as_service(logins),
        **SERVICE_SETTINGS,
        LG_DEPLOY_LEASE_SECONDS="1",
        LG_DEPLOY_RECOVERY_INTERVAL_SECONDS="0.2",
    )
    answer = client.post("/executions", json={"graph_id": "echo", "input": {"via": "http"}})
    assert answer.status_code == 202, answer.text
    from_http = answer.json()["execution_id"]
    waited = client.get(f"/executions/{from_http}/wait", params={"timeout": WAIT_SECONDS})
    assert waited.json()["status"] == "COMPLETED", waited.text
    assert waited.json()["output"] == {"via": "http"}
    producer = psycopg.connect(logins.url(logins.create(PRODUCER)), autocommit=True)
    logins.conns.append(producer)
    slow = insert_row(producer, graph_id="sleep", input=Jsonb({"seconds": 2.5}))
    wait_status(sql, slow, "RUNNING")
    assert len(lease_values(sql, slow, 1.2)) >= 3  # renewed every 0.25 s, past its 1 s lease
    wait_status(sql, slow, "COMPLETED")
    assert row_of(sql, slow)["attempts"] == 1
    assert history(sql, slow) == FULL_HISTORY
    doomed = insert_row(producer, graph_id="sleep", input=Jsonb({"seconds": 60}))
    wait_status(sql, doomed, "RUNNING")
    assert client.post(f"/executions/{doomed}/cancel").status_code == 202
    wait_status(sql, doomed, "FAILED")
    assert row_of(sql, doomed)["error"] == "cancelled"
    assert client.get("/metrics").status_code == 200
    listed = client.get("/executions", params={"limit": 10}).json()
    assert {item["execution_id"] for item in listed["items"]} >= {from_http, slow, doomed}
    assert len(client.get(f"/executions/{slow}/events").json()["items"]) == 3
    thread = client.post("/threads", json={"metadata": {"by": "service"}})
    assert thread.status_code == 200, thread.text
    thread_id = thread.json()["thread_id"]
    patched = client.patch(f"/threads/{thread_id}", json={"metadata": {"more": 1}})
    assert patched.json()["metadata"] == {"by": "service", "more": 1}, patched.text
    assert client.post("/threads/count", json={"metadata": {"by": "service"}}).json() == 1
    assert client.delete(f"/threads/{thread_id}").status_code == 204
    made = client.post("/assistants", json={"graph_id": "echo", "context": {"by": "service"}})
    assert made.status_code == 200, made.text
    assistant = f"/assistants/{made.json()['assistant_id']}"
    assert client.patch(assistant, json={"name": "renamed"}).json()["version"] == 2
    assert len(client.post(f"{assistant}/versions", json={}).json()) == 2
    assert client.post(f"{assistant}/latest", json={"version": 1}).json()["version"] == 1
    run = client.post("/runs/wait", json={"assistant_id": made.json()["assistant_id"]})
    assert run.status_code == 200, run.text
    assert client.delete(assistant).status_code == 204


def run_cli(env: dict[str, str], url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run one lg-deploy command connected with `url` to its end; fail if it fails."""
    done = subprocess.run(
        [*LG_DEPLOY_COMMAND, *args],
        env={**env, "LG_DEPLOY_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done


def claim_for_a_dead_worker(sql: SqlConn, execution_id: str) -> None:
    """Mark the execution RUNNING for a worker that is gone, its lease already expired."""
    sql.execute(
        "UPDATE lg_deploy.executions SET status = 'RUNNING', attempts = attempts + 1,"
        " worker_id = 'gone:1:abcdef', lease_expires_at = now() - interval '1 second'"
        " WHERE execution_id = %s",
        (execution_id,),
    )


@pytest.mark.req("SEC-ROLES", "OPS-RETENTION")
def test_worker_as_the_service_role_recovers_leases_and_prune_deletes_history(
    logins: Logins, sql: SqlConn, launch: Launcher, worker_env: dict[str, str]
) -> None:
    """A service worker recovers expired leases; `prune` as the service deletes rows and events."""
    service_url = as_service(logins)
    retried = insert_row(sql, input=Jsonb({"n": 1}))
    last_try = insert_row(sql, input=Jsonb({"n": 2}), max_attempts=1)
    for execution_id in (retried, last_try):
        claim_for_a_dead_worker(sql, execution_id)
    launch.worker(service_url, **SERVICE_SETTINGS, LG_DEPLOY_RECOVERY_INTERVAL_SECONDS="0.2")
    wait_status(sql, retried, "COMPLETED")
    wait_status(sql, last_try, "FAILED")
    assert row_of(sql, retried)["attempts"] == 2
    assert "no attempts left" in row_of(sql, last_try)["error"]
    assert history(sql, retried)[2] == ("RUNNING", "QUEUED")
    running = insert_row(sql, graph_id="sleep", input=Jsonb({"seconds": 60}))
    wait_status(sql, running, "RUNNING")
    pruned = run_cli(worker_env, service_url, "prune", "--older-than", "0s", "--yes")
    assert "deleted 2 finished executions" in pruned.stdout
    remaining = sql.execute(
        "SELECT execution_id::text FROM lg_deploy.executions UNION"
        " SELECT DISTINCT execution_id::text FROM lg_deploy.execution_events"
    ).fetchall()
    assert remaining == [(running,)]


@pytest.mark.req("SEC-ROLES")
async def test_service_role_runs_with_checkpoints_the_owner_set_up(
    logins: Logins, sql: SqlConn, launch: Launcher, db_url: str, worker_env: dict[str, str]
) -> None:
    """Checkpoint tables made by the owner: a service worker saves steps, `prune` deletes them."""
    async with postgres_checkpointer(db_url):
        pass  # the owner's first start creates LangGraph's tables
    await apply_roles(db_url)  # again, now that they exist
    service_url = as_service(logins)
    launch.worker(service_url, **SERVICE_SETTINGS, LG_DEPLOY_CHECKPOINTS="true")
    execution_id = insert_row(sql, graph_id="pipeline", input=Jsonb({"text": "a b"}))
    wait_status(sql, execution_id, "COMPLETED")
    assert checkpoints_of(sql, execution_id) > 0
    pruned = run_cli(worker_env, service_url, "prune", "--older-than", "0s", "--yes")
    assert "deleted 1 finished executions" in pruned.stdout
    assert checkpoints_of(sql, execution_id) == 0


def checkpoints_of(sql: SqlConn, execution_id: str) -> int:
    """How many checkpoints LangGraph saved for the execution (its thread)."""
    row = sql.execute(
        "SELECT count(*) FROM lg_deploy.checkpoints WHERE thread_id = %s", (execution_id,)
    ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.req("SEC-BAD-ROWS", "GRAPH-REGISTRY")
def test_unknown_graph_from_sql_fails_once_with_a_readable_error(
    logins: Logins, sql: SqlConn, launch: Launcher
) -> None:
    """A producer's row naming a graph no worker ever served is never claimed: it is FAILED with a
    readable error once LG_DEPLOY_UNSERVED_GRAPH_SECONDS pass, even with retry-on-error."""
    launch.worker(
        as_service(logins),
        **SERVICE_SETTINGS,
        LG_DEPLOY_RETRY_ON_ERROR="true",
        LG_DEPLOY_RETRY_BACKOFF_SECONDS="0",
        LG_DEPLOY_UNSERVED_GRAPH_SECONDS="1",
        LG_DEPLOY_LEASE_SECONDS="1",
    )
    producer = psycopg.connect(logins.url(logins.create(PRODUCER)), autocommit=True)
    logins.conns.append(producer)
    unknown = insert_row(producer, graph_id="no_such_graph", max_attempts=3)
    raising = insert_row(producer, graph_id="fail", max_attempts=2)  # control: this one retries
    wait_status(sql, unknown, "FAILED")
    wait_status(sql, raising, "FAILED")
    row = row_of(sql, unknown)
    assert row["attempts"] == 0
    assert row["error"] == (
        "no worker has ever served graph 'no_such_graph'; failed after waiting more than 1 s"
        " (LG_DEPLOY_UNSERVED_GRAPH_SECONDS)"
    )
    assert history(sql, unknown) == [(None, "QUEUED"), ("QUEUED", "FAILED")]
    assert row_of(sql, raising)["attempts"] == 2


CHANNELS = ["lg_deploy_queued", "lg_deploy_finished", "lg_deploy_cancel"]
SPOOFS_PER_CHANNEL = 10_000


def snapshot(sql: SqlConn) -> list[tuple[Any, ...]]:
    """Every execution's state but its lease (renewals move it), and the number of events."""
    rows = sql.execute(
        "SELECT execution_id, status, attempts, worker_id, error, output, cancel_requested_at,"
        " (SELECT count(*) FROM lg_deploy.execution_events) FROM lg_deploy.executions ORDER BY 1"
    ).fetchall()
    return list(rows)


@pytest.mark.req("SEC-NOTIFY", "CARD-NOTIFY")
def test_spoofed_notifications_change_nothing_and_stall_nothing(
    logins: Logins, sql: SqlConn, launch: Launcher
) -> None:
    """30,000 junk NOTIFYs and ones naming running ids from a role with no grants change nothing."""
    client = launch.serve(as_service(logins), **SERVICE_SETTINGS)
    running = [insert_row(sql, graph_id="sleep", input=Jsonb({"seconds": 5})) for _ in range(2)]
    for execution_id in running:
        wait_status(sql, execution_id, "RUNNING")
    waited: list[httpx.Response] = []
    waiting = threading.Thread(
        target=lambda: waited.append(
            client.get(f"/executions/{running[0]}/wait", params={"timeout": WAIT_SECONDS})
        )
    )
    waiting.start()
    stranger = logins.connect()
    assert "permission denied" in refused(stranger, "SELECT count(*) FROM lg_deploy.executions")
    before = snapshot(sql)
    flooded = time.monotonic()
    stranger.execute(
        "SELECT pg_notify(channel, md5(i::text)) FROM unnest(%s::text[]) AS channel,"
        " generate_series(1, %s) AS i",
        (CHANNELS, SPOOFS_PER_CHANNEL),
    )
    payloads = [*running, ",".join(running), "*", "", "not-a-uuid", "x" * 7000]
    stranger.execute(
        "SELECT pg_notify(channel, payload) FROM unnest(%s::text[]) AS channel,"
        " unnest(%s::text[]) AS payload",
        (CHANNELS, payloads),
    )
    fresh = insert_row(sql, input=Jsonb({"after": "flood"}))
    wait_status(sql, fresh, "COMPLETED")
    print(f"flood sent and a fresh execution completed in {time.monotonic() - flooded:.2f} s")
    assert time.monotonic() - flooded < 3.0
    assert [row for row in snapshot(sql) if str(row[0]) != fresh] == [
        (*row[:-1], row[-1] + 3) for row in before
    ]
    for execution_id in running:
        wait_status(sql, execution_id, "COMPLETED")
        assert row_of(sql, execution_id)["attempts"] == 1
        assert history(sql, execution_id) == FULL_HISTORY
    waiting.join(WAIT_SECONDS)
    assert [answer.json()["status"] for answer in waited] == ["COMPLETED"]
