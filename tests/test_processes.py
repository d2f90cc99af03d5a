"""`lg-deploy migrate` and `lg-deploy worker` as real OS processes on a real database."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from typing import Any

import psycopg
import pytest
from psycopg import sql as pgsql
from psycopg.conninfo import make_conninfo

from lg_deploy.db.listener import QUEUED_CHANNEL
from lg_deploy.db.migrations import available_migrations
from tests.support.processes import (
    LG_DEPLOY_COMMAND,
    Worker,
    Workers,
    listener_pids,
    status_counts,
    wait_all_completed,
)
from tests.support.sql import status_of
from tests.support.waiting import wait_until

SqlConn = psycopg.Connection[Any]


def insert_one(sql: SqlConn, graph_id: str, graph_input: str) -> str:
    """Insert one execution the way another system would; its id."""
    row = sql.execute(
        "INSERT INTO lg_deploy.executions (graph_id, input) VALUES (%s, %s::jsonb)"
        " RETURNING execution_id",
        (graph_id, graph_input),
    ).fetchone()
    assert row is not None
    return str(row[0])


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run one lg-deploy command to its end."""
    return subprocess.run(
        [*LG_DEPLOY_COMMAND, *args], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.req("CLI-MIGRATE", "CARD-MIGRATIONS")
def test_migrate_applies_everything_to_a_fresh_database_then_nothing(
    sql: SqlConn, worker_env: dict[str, str]
) -> None:
    """`migrate` on an empty database prints the versions it applied; a second run has none."""
    name = f"lgd_fresh_{uuid.uuid4().hex[:10]}"
    sql.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name)))
    try:
        url = make_conninfo(worker_env["LG_DEPLOY_DATABASE_URL"], dbname=name)
        env = {**worker_env, "LG_DEPLOY_DATABASE_URL": url}
        versions = [m.version for m in available_migrations()]
        first = run_cli(env, "migrate")
        assert first.returncode == 0, first.stderr
        assert f"applied migrations: {', '.join(map(str, versions))}" in first.stdout
        second = run_cli(env, "migrate")
        assert second.returncode == 0, second.stderr
        assert "none pending" in second.stdout
        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT version FROM lg_deploy.schema_migrations ORDER BY 1")
            assert [row[0] for row in rows] == versions
    finally:
        sql.execute(pgsql.SQL("DROP DATABASE {} WITH (FORCE)").format(pgsql.Identifier(name)))


@pytest.mark.req("CLI-WORKER", "CARD-NOTIFY", "LLD-6.1", "CARD-HISTORY")
def test_worker_runs_a_row_inserted_by_plain_sql(sql: SqlConn, workers: Workers) -> None:
    """A plain INSERT of graph_id and input is COMPLETED within seconds with a 3-event history."""
    workers.start()
    inserted = time.monotonic()
    execution_id = insert_one(sql, "echo", '{"ticket": 42}')
    wait_until(lambda: status_of(sql, execution_id) == "COMPLETED", 5)
    print(f"plain INSERT completed in {time.monotonic() - inserted:.3f} s")
    row = sql.execute(
        "SELECT output, attempts, worker_id FROM lg_deploy.executions WHERE execution_id = %s",
        (execution_id,),
    ).fetchone()
    assert row is not None
    assert row[0] == {"ticket": 42}
    assert row[1] == 1
    assert row[2] is not None
    history = sql.execute(
        "SELECT from_status, to_status FROM lg_deploy.execution_events"
        " WHERE execution_id = %s ORDER BY event_id",
        (execution_id,),
    ).fetchall()
    assert history == [(None, "QUEUED"), ("QUEUED", "RUNNING"), ("RUNNING", "COMPLETED")]


# One INSERT's rows: 125 times the worker's 16 slots; the deep run inserts the 10,000 of the
# design's example (an INSERT of 10,000 rows sends one NOTIFY), five times as long.
BULK_ROWS = 2_000
DEEP_BULK_ROWS = 10_000


@pytest.mark.slow
@pytest.mark.req("CARD-NOTIFY", "CARD-CLAIM", "CLI-WORKER")
def test_one_insert_of_thousands_of_rows_all_complete_after_one_notify(
    sql: SqlConn, workers: Workers, db_url: str, deep: bool
) -> None:
    """2,000 rows in one INSERT (10,000 deep) send one NOTIFY and are all COMPLETED, each
    claimed once."""
    rows = DEEP_BULK_ROWS if deep else BULK_ROWS
    workers.start(
        LG_DEPLOY_WORKER_CONCURRENCY="16",
        LG_DEPLOY_POOL_MAX_SIZE="20",
        LG_DEPLOY_LOG_LEVEL="WARNING",
    )
    with psycopg.connect(db_url, autocommit=True) as listen:
        listen.execute(pgsql.SQL("LISTEN {}").format(pgsql.Identifier(QUEUED_CHANNEL)))
        started = time.monotonic()
        sql.execute(
            "INSERT INTO lg_deploy.executions (graph_id, input)"
            " SELECT 'echo', jsonb_build_object('n', n) FROM generate_series(1, %s) AS n",
            (rows,),
        )
        wait_all_completed(sql, rows, timeout=90)
        print(f"{rows:,} echo executions completed in {time.monotonic() - started:.1f} s")
        notes = [n for n in listen.notifies(timeout=0.5) if n.channel == QUEUED_CHANNEL]
    assert len(notes) == 1
    claims = sql.execute(
        "SELECT count(*), count(DISTINCT execution_id) FROM lg_deploy.execution_events"
        " WHERE from_status = 'QUEUED' AND to_status = 'RUNNING'"
    ).fetchone()
    assert claims == (rows, rows)
    wrong = sql.execute(
        "SELECT count(*) FROM lg_deploy.executions WHERE output <> input OR attempts <> 1"
    ).fetchone()
    assert wrong == (0,)


@pytest.mark.req("CARD-CLAIM", "CLI-WORKER", "LLD-6.1")
def test_three_worker_processes_share_the_work_without_double_claims(
    sql: SqlConn, workers: Workers
) -> None:
    """600 rows across three processes: all COMPLETED, each claimed once, by several processes."""
    pids = {workers.start().process.pid for _ in range(3)}
    sql.execute(
        "INSERT INTO lg_deploy.executions (graph_id, input)"
        " SELECT 'sleep', '{\"seconds\": 0.01}' FROM generate_series(1, 600)"
    )
    wait_all_completed(sql, 600, timeout=60)
    duplicates = sql.execute(
        "SELECT count(*) FROM (SELECT execution_id FROM lg_deploy.execution_events"
        " WHERE from_status = 'QUEUED' AND to_status = 'RUNNING'"
        " GROUP BY execution_id HAVING count(*) <> 1) AS d"
    ).fetchone()
    claimed = sql.execute(
        "SELECT count(DISTINCT execution_id) FROM lg_deploy.execution_events"
        " WHERE from_status = 'QUEUED' AND to_status = 'RUNNING'"
    ).fetchone()
    assert duplicates == (0,)
    assert claimed == (600,)
    worker_ids = [r[0] for r in sql.execute("SELECT DISTINCT worker_id FROM lg_deploy.executions")]
    worker_pids = {int(worker_id.split(":")[-2]) for worker_id in worker_ids}
    assert len(worker_pids) >= 2, worker_ids
    assert worker_pids <= pids


@pytest.mark.req("CARD-LISTEN", "CARD-NOTIFY", "CLI-WORKER")
def test_worker_keeps_taking_work_after_its_listen_connection_is_killed(
    sql: SqlConn, workers: Workers
) -> None:
    """With a 30 s poll, work inserted after the listener is terminated still runs in seconds."""
    workers.start(LG_DEPLOY_POLL_INTERVAL_SECONDS="30")
    before = insert_one(sql, "echo", "{}")
    wait_until(lambda: status_of(sql, before) == "COMPLETED", 3)
    (old_pid,) = listener_pids(sql)
    sql.execute("SELECT pg_terminate_backend(%s)", (old_pid,))
    during = insert_one(sql, "echo", '{"during": true}')
    wait_until(lambda: status_of(sql, during) == "COMPLETED", 3)
    wait_until(lambda: len(listener_pids(sql)) == 1 and listener_pids(sql) != [old_pid], 5)
    after = insert_one(sql, "echo", '{"after": true}')
    wait_until(lambda: status_of(sql, after) == "COMPLETED", 3)


def started_count(worker: Worker) -> int:
    """How many executions this worker has logged as started."""
    return sum(1 for entry in worker.log_messages() if entry["message"] == "execution started")


@pytest.mark.req("CLI-WORKER", "LLD-6.1", "LLD-9.1")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_hands_running_executions_back_and_exits_zero(
    sql: SqlConn, workers: Workers, signum: signal.Signals
) -> None:
    """A stop signal (0.5 s grace) exits 0 fast; nothing is left RUNNING (QUEUED, interrupted)."""
    worker = workers.start(LG_DEPLOY_SHUTDOWN_GRACE_SECONDS="0.5")
    ids = [insert_one(sql, "sleep", '{"seconds": 60}') for _ in range(3)]
    wait_until(lambda: started_count(worker) == 3)
    signalled = time.monotonic()
    worker.process.send_signal(signum)
    assert worker.process.wait(timeout=10) == 0, worker.log_path.read_text()
    print(f"worker exited {time.monotonic() - signalled:.2f} s after {signum.name}")
    assert status_counts(sql) == {"QUEUED": 3}
    for execution_id in ids:
        errors = sql.execute(
            "SELECT error FROM lg_deploy.execution_events WHERE execution_id = %s"
            " AND from_status = 'RUNNING' AND to_status = 'QUEUED'",
            (execution_id,),
        ).fetchall()
        assert errors, f"{execution_id} has no RUNNING->QUEUED event"
        assert "interrupted" in errors[0][0]


@pytest.mark.req("CLI-WORKER", "LLD-6.1")
def test_sigterm_with_grace_lets_running_executions_finish(sql: SqlConn, workers: Workers) -> None:
    """With 10 s grace, SIGTERM lets 1 s executions finish COMPLETED before exiting 0."""
    worker = workers.start(LG_DEPLOY_SHUTDOWN_GRACE_SECONDS="10")
    for _ in range(3):
        insert_one(sql, "sleep", '{"seconds": 1}')
    wait_until(lambda: started_count(worker) == 3)
    worker.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(timeout=10) == 0, worker.log_path.read_text()
    assert status_counts(sql) == {"COMPLETED": 3}


@pytest.mark.req("CLI-WORKER", "LLD-8.1")
@pytest.mark.parametrize("value", ["0", "abc"])
def test_bad_concurrency_exits_2_with_one_line_naming_it(
    worker_env: dict[str, str], value: str
) -> None:
    """LG_DEPLOY_WORKER_CONCURRENCY=0 or abc: exit status 2 and one stderr line naming it."""
    result = run_cli({**worker_env, "LG_DEPLOY_WORKER_CONCURRENCY": value}, "worker")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "LG_DEPLOY_WORKER_CONCURRENCY" in lines[0]


@pytest.mark.req("CLI-WORKER", "GRAPH-REGISTRY")
def test_broken_graph_config_exits_2_naming_the_spec(worker_env: dict[str, str]) -> None:
    """A graph spec that cannot be imported makes `worker` exit 2 with a message naming it."""
    result = run_cli({**worker_env, "LG_DEPLOY_GRAPHS": '{"x": "nope.module:graph"}'}, "worker")
    assert result.returncode == 2, result.stderr
    assert "nope.module:graph" in result.stderr
