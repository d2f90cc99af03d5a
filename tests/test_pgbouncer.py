"""Behind a real PgBouncer in transaction pooling mode: poll-only, no prepared statements."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg import sql as pgsql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from lg_deploy.checkpoints import postgres_checkpointer
from lg_deploy.db.listener import LISTENER_APPLICATION_NAME
from lg_deploy.db.migrations import available_migrations, migrate
from lg_deploy.db.pool import open_pool
from tests.support.processes import LG_DEPLOY_COMMAND, json_lines
from tests.support.servers import StartServer, finished, free_port
from tests.support.waiting import wait_until

SqlConn = psycopg.Connection[Any]
PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
START_SECONDS = 30.0
SUBMISSIONS = 50
POLL_ONLY = {
    "LG_DEPLOY_LISTEN": "false",
    "LG_DEPLOY_PREPARED_STATEMENTS": "false",
    "LG_DEPLOY_POLL_INTERVAL_SECONDS": "0.2",
    "LG_DEPLOY_MIGRATE_ON_START": "true",
    "LG_DEPLOY_LEASE_SECONDS": "2",
}


@dataclass
class Bouncer:
    """A running PgBouncer in front of the test server."""

    port: int
    log_path: Path
    server: dict[str, Any]

    def url(self, dbname: str) -> str:
        """A connection string for `dbname` through PgBouncer."""
        return make_conninfo(
            host="127.0.0.1", port=self.port, user=self.server.get("user"), dbname=dbname
        )

    def stats(self, dbname: str) -> dict[str, Any]:
        """PgBouncer's SHOW STATS row for `dbname` (from its admin console)."""
        admin = make_conninfo(self.url("pgbouncer"))
        with psycopg.connect(admin, autocommit=True, cursor_factory=psycopg.ClientCursor) as conn:
            cursor = conn.execute("SHOW STATS")
            names = [column.name for column in cursor.description or []]
            for row in cursor.fetchall():
                if row[0] == dbname:
                    return dict(zip(names, row, strict=True))
        raise AssertionError(f"PgBouncer has no stats for {dbname}")


def _pgbouncer_version() -> tuple[int, ...]:
    first = subprocess.run([PGBOUNCER, "--version"], capture_output=True, text=True, check=True)
    found = re.search(r"(\d+)\.(\d+)", first.stdout)
    assert found is not None, first.stdout
    return tuple(int(part) for part in found.groups())


def _run_as(server: dict[str, Any]) -> pwd.struct_passwd | None:
    """Who runs PgBouncer: as root, the owner of the server's socket folder (or nobody)."""
    if os.geteuid() != 0:
        return None  # PgBouncer refuses to run as root
    host = str(server.get("host", ""))
    if host.startswith("/") and (owner := os.stat(host).st_uid) != 0:
        return pwd.getpwuid(owner)
    return pwd.getpwnam("nobody")


def _config(
    port: int, folder: Path, server: dict[str, Any], pool_size: int, search_path: bool
) -> str:
    target = f"host={server['host']} port={server.get('port', 5432)} user={server['user']}"
    if server.get("password"):
        target += f" password={server['password']}"
    if search_path:  # as docs/operations.md says: LangGraph's saver finds its tables by it
        target += " connect_query='SET search_path = lg_deploy, public'"
    lines = [
        "[databases]",
        f"* = {target}",
        "[pgbouncer]",
        "listen_addr = 127.0.0.1",
        f"listen_port = {port}",
        "unix_socket_dir =",
        "auth_type = any",
        f"admin_users = {server['user']}",
        "pool_mode = transaction",
        f"default_pool_size = {pool_size}",
        "max_client_conn = 500",
        f"logfile = {folder / 'pgbouncer.log'}",
        f"pidfile = {folder / 'pgbouncer.pid'}",
    ]
    if _pgbouncer_version() >= (1, 21):
        lines.append("max_prepared_statements = 0")  # classic transaction mode: no prepares
    return "\n".join(lines) + "\n"


StartBouncer = Callable[..., Bouncer]


@pytest.fixture
def start_pgbouncer(db_url: str) -> Iterator[StartBouncer]:
    """Starts PgBouncer processes (transaction mode) in front of the test server; stops them."""
    if not Path(PGBOUNCER).exists():
        pytest.fail("pgbouncer is not installed: run scripts/install-test-services")
    server = conninfo_to_dict(db_url)
    started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(pool_size: int = 10, search_path: bool = True) -> Bouncer:
        folder = Path(tempfile.mkdtemp(prefix="lgd-pgbouncer-"))
        port = free_port()
        config = _config(port, folder, server, pool_size, search_path)
        (folder / "pgbouncer.ini").write_text(config)
        user = _run_as(server)
        if user is not None:
            os.chown(folder, user.pw_uid, user.pw_gid)
        process = subprocess.Popen(
            [PGBOUNCER, str(folder / "pgbouncer.ini")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            extra_groups=[] if user else None,
        )
        started.append((process, folder))
        bouncer = Bouncer(port, folder / "pgbouncer.log", server)

        def answers() -> bool:
            assert process.poll() is None, f"pgbouncer exited:\n{_read(bouncer.log_path)}"
            target = bouncer.url(server["dbname"])
            with (
                contextlib.suppress(psycopg.OperationalError),
                psycopg.connect(target, connect_timeout=2) as conn,
            ):
                return conn.execute("SELECT 1").fetchone() == (1,)
            return False

        wait_until(answers, START_SECONDS, interval=0.1)
        return bouncer

    yield start
    for process, folder in started:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else "(no log)"


@pytest.fixture
def empty_database(sql: SqlConn, db_url: str) -> Iterator[tuple[str, SqlConn]]:
    """A new database with no migrations applied: its name and a direct connection to it."""
    name = f"lgd_bouncer_{uuid.uuid4().hex[:10]}"
    sql.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name)))
    try:
        with psycopg.connect(make_conninfo(db_url, dbname=name), autocommit=True) as conn:
            yield name, conn
    finally:
        sql.execute(pgsql.SQL("DROP DATABASE {} WITH (FORCE)").format(pgsql.Identifier(name)))


@pytest.fixture
def bounced_worker(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], Path]]:
    """Starts one `lg-deploy worker` with the given env; its JSON log; killed at teardown."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str]) -> Path:
        log_path = tmp_path / "worker.log"
        with log_path.open("wb") as log:
            processes.append(
                subprocess.Popen(
                    [*LG_DEPLOY_COMMAND, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=log
                )
            )
        return log_path

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def count_status(conn: SqlConn, status: str) -> int:
    """How many executions have `status`."""
    row = conn.execute(
        "SELECT count(*) FROM lg_deploy.executions WHERE status = %s", (status,)
    ).fetchone()
    return int(row[0]) if row else 0


@pytest.mark.req("OPS-PGBOUNCER", "CARD-MIGRATIONS")
def test_serve_and_worker_run_everything_through_pgbouncer_in_transaction_mode(
    start_pgbouncer: StartBouncer,
    start_server: StartServer,
    bounced_worker: Callable[[dict[str, str]], Path],
    empty_database: tuple[str, SqlConn],
    worker_env: dict[str, str],
) -> None:
    """Poll-only, unprepared: both migrate at once, 50 POSTs and a SQL insert complete, cancel,
    a run on a thread and the store work."""
    dbname, direct = empty_database
    bouncer = start_pgbouncer()
    env = {**worker_env, **POLL_ONLY, "LG_DEPLOY_DATABASE_URL": bouncer.url(dbname)}
    worker_log = bounced_worker(env)  # migrates at the same time as the server below
    server = start_server(env)
    wait_until(lambda: any("worker running" in line["message"] for line in json_lines(worker_log)))
    applied = direct.execute("SELECT version FROM lg_deploy.schema_migrations ORDER BY 1")
    assert [row[0] for row in applied] == [m.version for m in available_migrations()]

    def submit(number: int) -> str:
        with server.http() as client:
            answer = client.post("/executions", json={"graph_id": "echo", "input": {"n": number}})
            assert answer.status_code == 202, answer.text
            return str(answer.json()["execution_id"])

    with ThreadPoolExecutor(max_workers=5) as pool:
        submitted = list(pool.map(submit, range(SUBMISSIONS)))
    direct.execute("INSERT INTO lg_deploy.executions (graph_id, input) VALUES ('echo', '{}')")
    wait_until(lambda: count_status(direct, "COMPLETED") == SUBMISSIONS + 1, 20.0)
    assert count_status(direct, "FAILED") == 0
    with server.http() as client:
        state = finished(client, submitted[-1])
        assert state["output"] == {"n": SUBMISSIONS - 1}
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": True}
        _cancel_a_running_sleep(client, direct)
        _run_on_a_thread(client)
        _use_the_store(client, direct)
    listeners = direct.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
        (LISTENER_APPLICATION_NAME,),
    ).fetchone()
    assert listeners == (0,)
    assert bouncer.stats(dbname)["total_xact_count"] > SUBMISSIONS
    logged = server.log_lines() + json_lines(worker_log)
    assert [line for line in logged if line.get("level") == "ERROR"] == []
    assert not any("prepared statement" in str(line) for line in logged)


def _cancel_a_running_sleep(client: httpx.Client, direct: SqlConn) -> None:
    """A running 60 s sleep, cancelled over HTTP, ends FAILED "cancelled" within seconds."""
    answer = client.post("/executions", json={"graph_id": "sleep", "input": {"seconds": 60}})
    execution_id = answer.json()["execution_id"]
    status = "SELECT status, error FROM lg_deploy.executions WHERE execution_id = %s"
    wait_until(lambda: direct.execute(status, (execution_id,)).fetchone() == ("RUNNING", None))
    assert client.post(f"/executions/{execution_id}/cancel").status_code == 202
    final = client.get(f"/executions/{execution_id}/wait", params={"timeout": 10}).json()
    assert (final["status"], final["error"]) == ("FAILED", "cancelled")


def _run_on_a_thread(client: httpx.Client) -> None:
    """A run on a thread (LangGraph's checkpoints, found through the search path) answers."""
    thread_id = client.post("/threads", json={}).json()["thread_id"]
    body = {"assistant_id": "echo", "input": {"on": "thread"}}
    answer = client.post(f"/threads/{thread_id}/runs/wait", json=body)
    assert (answer.status_code, answer.json()) == (200, {"on": "thread"}), answer.text
    state = client.get(f"/threads/{thread_id}/state").json()
    assert state["values"] == {"on": "thread"}


def _use_the_store(client: httpx.Client, direct: SqlConn) -> None:
    """Store items (LangGraph's store, batched in pipelines) are put, found and kept."""
    item = {"namespace": ["bounced"], "key": "k", "value": {"n": 1}, "ttl": 60}
    assert client.put("/store/items", json=item).status_code == 204
    found = client.post("/store/items/search", json={"filter": {"n": 1}}).json()
    assert [(i["namespace"], i["key"]) for i in found["items"]] == [(["bounced"], "k")]
    got = client.get("/store/items", params={"namespace": "bounced", "key": "k"}).json()
    assert got["value"] == {"n": 1}
    kept = direct.execute("SELECT prefix, value FROM lg_deploy.store").fetchall()
    assert kept == [("bounced", {"n": 1})]


@pytest.mark.req("OPS-PGBOUNCER")
def test_behind_a_pgbouncer_without_the_search_path_the_start_stops_naming_the_fix(
    start_pgbouncer: StartBouncer, empty_database: tuple[str, SqlConn], worker_env: dict[str, str]
) -> None:
    """PgBouncer refuses the startup option that sets the checkpointer's search path: a worker
    stops at start with one line naming connect_query, instead of failing runs on threads."""
    dbname, _ = empty_database
    bouncer = start_pgbouncer(search_path=False)
    env = {**worker_env, **POLL_ONLY, "LG_DEPLOY_DATABASE_URL": bouncer.url(dbname)}
    done = subprocess.run(
        [*LG_DEPLOY_COMMAND, "worker"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert "connect_query='SET search_path = lg_deploy, public'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.req("OPS-PGBOUNCER")
async def test_prepared_statements_break_behind_transaction_pooling_unless_disabled(
    start_pgbouncer: StartBouncer, db_url: str
) -> None:
    """Two pooled connections sharing one server: prepares collide; prepared_statements=False."""
    bouncer = start_pgbouncer(pool_size=1)
    url = bouncer.url(conninfo_to_dict(db_url)["dbname"])

    async def run_repeated_queries(prepared_statements: bool) -> None:
        pool = await open_pool(url, min_size=2, max_size=2, prepared_statements=prepared_statements)
        try:
            async with pool.connection() as first, pool.connection() as second:
                for conn in (first, second):
                    for number in range(10):
                        await conn.execute("SELECT %s::int", (number,))
        finally:
            await pool.close()

    await run_repeated_queries(prepared_statements=False)
    with pytest.raises(psycopg.errors.DuplicatePreparedStatement):
        await run_repeated_queries(prepared_statements=True)


@pytest.mark.req("OPS-PGBOUNCER")
async def test_checkpointer_setup_runs_once_when_several_processes_start_behind_pgbouncer(
    start_pgbouncer: StartBouncer, empty_database: tuple[str, SqlConn], db_url: str
) -> None:
    """Four checkpointers open at once through two pooled server connections: the setup lock
    is not shared by clients that PgBouncer serves on the same server session, so none fails
    on a duplicate checkpoint migration and the tables end current."""
    dbname, direct = empty_database
    await migrate(make_conninfo(db_url, dbname=dbname))  # schema lg_deploy, as a start does
    bouncer = start_pgbouncer(pool_size=2)

    async def open_one() -> None:
        async with postgres_checkpointer(bouncer.url(dbname)):
            pass

    await asyncio.wait_for(asyncio.gather(*(open_one() for _ in range(4))), START_SECONDS)
    row = direct.execute("SELECT max(v) FROM lg_deploy.checkpoint_migrations").fetchone()
    assert row == (len(AsyncPostgresSaver.MIGRATIONS) - 1,)
