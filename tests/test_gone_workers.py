"""Runs of a worker whose process is gone from this host are requeued at once (Fleet), and
nothing is taken from a worker that may still live: another host, another pid namespace, a
live pid, or the shortcut turned off. Against a real PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from lg_deploy.fleet import Fleet, host_key, is_gone
from tests.support.waiting import wait_until

SqlConn = psycopg.Connection[Any]


@pytest.fixture
def live_pid() -> Iterator[int]:
    """A process that stays alive for the test."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield child.pid
    finally:
        child.kill()
        child.wait()


def _ended_pid() -> int:
    """The pid of a process that has ended and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _worker(sql: SqlConn, worker_id: str, pid: int, key: str | None) -> str:
    """A fleet row for `worker_id` and one execution it runs, its lease an hour away."""
    sql.execute(
        "INSERT INTO lg_deploy.workers (worker_id, hostname, pid, graph_ids, concurrency,"
        " expires_at, host_key) VALUES (%s, 'h', %s, '{echo}', 4, now() + interval '1 hour', %s)",
        (worker_id, pid, key),
    )
    row = sql.execute(
        "INSERT INTO lg_deploy.executions (graph_id, input) VALUES ('echo', '{}')"
        " RETURNING execution_id::text"
    ).fetchone()
    assert row is not None
    sql.execute(
        "UPDATE lg_deploy.executions SET status = 'RUNNING', attempts = attempts + 1,"
        " worker_id = %s, lease_expires_at = now() + interval '1 hour' WHERE execution_id = %s",
        (worker_id, row[0]),
    )
    return str(row[0])


def _state(sql: SqlConn, execution_id: str) -> tuple[str, str | None]:
    row = sql.execute(
        "SELECT status, error FROM lg_deploy.executions WHERE execution_id = %s", (execution_id,)
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def _fleet(pool: AsyncConnectionPool[Any], recover: bool = True) -> Fleet:
    return Fleet(
        pool,
        worker_id="starting",
        graph_ids=["echo"],
        concurrency=1,
        ttl_seconds=10,
        fail_never_served_after_seconds=3600,
        recover_gone_workers=recover,
    )


@pytest.mark.req("DUR-GONE-WORKER")
def test_this_process_table_has_a_key_and_knows_live_ended_and_zombie_pids() -> None:
    """On Linux the key is boot id/pid namespace; a live pid is not gone, an ended or a zombie
    one is."""
    key = host_key()
    assert key is not None
    assert key.count("/") == 1
    assert not is_gone(os.getpid())
    assert is_gone(_ended_pid())
    zombie = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    zombie.send_signal(signal.SIGKILL)
    try:
        stat = Path(f"/proc/{zombie.pid}/stat")
        wait_until(lambda: stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")
        assert is_gone(zombie.pid)
    finally:
        zombie.wait()


@pytest.mark.req("DUR-GONE-WORKER")
async def test_a_starting_process_requeues_only_the_runs_of_workers_surely_gone(
    sql: SqlConn, pool: AsyncConnectionPool[Any], live_pid: int
) -> None:
    """Gone (same key, ended pid): QUEUED again, or FAILED without attempts left, its row
    expired; alive (same key, live pid), elsewhere (another key) and unknown (no key): left
    RUNNING on their leases."""
    key = host_key()
    ended = _ended_pid()
    gone = _worker(sql, "gone", ended, key)
    last_try = _worker(sql, "gone-last", ended, key)
    sql.execute(
        "UPDATE lg_deploy.executions SET max_attempts = 1 WHERE execution_id = %s", (last_try,)
    )
    alive = _worker(sql, "alive", live_pid, key)
    elsewhere = _worker(sql, "elsewhere", ended, "another-boot/4026531836")
    unknown = _worker(sql, "unknown", ended, None)
    fleet = _fleet(pool)
    await fleet.start()
    try:
        assert _state(sql, gone) == (
            "QUEUED",
            "worker gone is gone (its process ended) during attempt 1 of 3",
        )
        assert _state(sql, last_try) == (
            "FAILED",
            "worker gone-last is gone (its process ended) during attempt 1 of 1; no attempts left",
        )
        for kept in (alive, elsewhere, unknown):
            assert _state(sql, kept) == ("RUNNING", None)
        rows = sql.execute("SELECT worker_id FROM lg_deploy.live_workers ORDER BY 1").fetchall()
        assert rows == [("alive",), ("elsewhere",), ("starting",), ("unknown",)]
        assert await fleet.recover_gone() == []  # an expired row is not looked at again
    finally:
        await fleet.stop()


@pytest.mark.req("DUR-GONE-WORKER")
async def test_with_the_shortcut_off_a_gone_workers_run_waits_for_its_lease(
    sql: SqlConn, pool: AsyncConnectionPool[Any]
) -> None:
    """LG_DEPLOY_RECOVER_GONE_WORKERS=false: the gone worker's run stays RUNNING."""
    gone = _worker(sql, "gone", _ended_pid(), host_key())
    fleet = _fleet(pool, recover=False)
    await fleet.start()
    try:
        assert await fleet.recover_gone() == []
        assert _state(sql, gone) == ("RUNNING", None)
    finally:
        await fleet.stop()
