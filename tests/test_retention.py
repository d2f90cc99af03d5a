"""Retention: prune finished executions (history and checkpoints too) in short batches."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import psycopg
import pytest
from psycopg import sql as pgsql
from psycopg_pool import AsyncConnectionPool

from lg_deploy.checkpoints import postgres_checkpointer
from lg_deploy.db.queries import query
from lg_deploy.graphs import DEFAULT_GRAPHS, GraphRegistry
from lg_deploy.retention import count_prunable, parse_duration, prune
from lg_deploy.runtime import open_runtime
from lg_deploy.settings import load_settings
from tests.support.processes import LG_DEPLOY_COMMAND
from tests.support.waiting import wait_until, wait_until_async

SqlConn = psycopg.Connection[Any]
START_SECONDS = 30.0
CHECKPOINT_TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")


def make_rows(sql: SqlConn, count: int, graph_id: str = "echo") -> list[str]:
    """`count` QUEUED executions, due only in an hour so no worker claims them; their ids."""
    rows = sql.execute(
        "INSERT INTO lg_deploy.executions (graph_id, input, run_at)"
        " SELECT %s, jsonb_build_object('n', n), now() + interval '1 hour'"
        " FROM generate_series(1, %s) AS n RETURNING execution_id::text",
        (graph_id, count),
    ).fetchall()
    return [row[0] for row in rows]


def make_running(sql: SqlConn, ids: list[str]) -> None:
    """Claim `ids` by SQL for a worker that is not there (lease an hour ahead)."""
    sql.execute(
        "UPDATE lg_deploy.executions SET status = 'RUNNING', attempts = 1,"
        " worker_id = 'gone-host:1:abcdef', lease_expires_at = now() + interval '1 hour'"
        " WHERE execution_id = ANY(%s::uuid[])",
        (ids,),
    )


def make_finished(sql: SqlConn, count: int, status: str = "COMPLETED") -> list[str]:
    """`count` executions taken QUEUED -> RUNNING -> `status` by plain SQL; their ids."""
    ids = make_rows(sql, count)
    make_running(sql, ids)
    sql.execute(
        "UPDATE lg_deploy.executions SET status = %s,"
        " output = CASE WHEN %s = 'COMPLETED' THEN '{}'::jsonb END,"
        " error = CASE WHEN %s = 'FAILED' THEN 'boom' END"
        " WHERE execution_id = ANY(%s::uuid[])",
        (status, status, status, ids),
    )
    return ids


def present(sql: SqlConn, ids: list[str]) -> int:
    """How many of `ids` are still in the executions table."""
    row = sql.execute(
        "SELECT count(*) FROM lg_deploy.executions WHERE execution_id = ANY(%s::uuid[])", (ids,)
    ).fetchone()
    return int(row[0]) if row else 0


def events_of(sql: SqlConn, ids: list[str]) -> int:
    """How many history rows `ids` have."""
    row = sql.execute(
        "SELECT count(*) FROM lg_deploy.execution_events WHERE execution_id = ANY(%s::uuid[])",
        (ids,),
    ).fetchone()
    return int(row[0]) if row else 0


class _CountingConnection:
    """A pooled connection that records the row count of every prune batch it runs."""

    def __init__(self, conn: Any, batches: list[int]) -> None:
        self._conn = conn
        self._batches = batches

    async def execute(self, statement: Any, params: Any = None) -> Any:
        cursor = await self._conn.execute(statement, params)
        if statement == query("prune_finished"):
            self._batches.append(cursor.rowcount)
        return cursor


class CountingPool:
    """Wraps a pool so a test sees each DELETE batch that prune issues."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool
        self.batches: list[int] = []

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[_CountingConnection]:
        async with self._pool.connection() as conn:
            yield _CountingConnection(conn, self.batches)


@pytest.mark.req("OPS-RETENTION")
async def test_prune_deletes_only_finished_rows_older_than_the_cut_off(
    sql: SqlConn, pool: AsyncConnectionPool[Any]
) -> None:
    """COMPLETED and FAILED rows past the cut-off go with their events; QUEUED/RUNNING stay."""
    completed = make_finished(sql, 3)
    failed = make_finished(sql, 2, "FAILED")
    queued = make_rows(sql, 2)
    running = make_rows(sql, 2)
    make_running(sql, running)
    assert await count_prunable(pool, 3600) == 0
    assert await prune(pool, 3600) == 0
    assert present(sql, completed + failed) == 5
    assert await count_prunable(pool, 0) == 5
    assert present(sql, completed + failed) == 5, "counting deleted something"
    assert events_of(sql, completed + failed) == 15
    assert await prune(pool, 0) == 5
    assert present(sql, completed + failed) == 0
    assert events_of(sql, completed + failed) == 0
    assert present(sql, queued + running) == 4
    assert events_of(sql, queued + running) == 2 + 2 * 2
    statuses = sql.execute("SELECT status, count(*) FROM lg_deploy.executions GROUP BY 1")
    assert dict(statuses.fetchall()) == {"QUEUED": 2, "RUNNING": 2}
    assert await count_prunable(pool, 0) == 0


@pytest.mark.req("OPS-RETENTION")
async def test_prune_works_in_batches_of_the_given_size(
    sql: SqlConn, pool: AsyncConnectionPool[Any]
) -> None:
    """30 rows with batch_size=7 go in DELETEs of 7, 7, 7, 7, 2 and a last empty one."""
    ids = make_finished(sql, 30)
    counting = CountingPool(pool)
    assert await prune(cast(Any, counting), 0, batch_size=7) == 30
    assert counting.batches == [7, 7, 7, 7, 2, 0]
    assert present(sql, ids) == 0
    assert events_of(sql, ids) == 0


@pytest.mark.req("OPS-RETENTION")
async def test_prune_deletes_the_checkpoints_of_pruned_executions_only(
    sql: SqlConn, pool: AsyncConnectionPool[Any], db_url: str
) -> None:
    """LangGraph checkpoints of a pruned execution go; those of a QUEUED execution stay."""
    done, waiting = make_rows(sql, 2, graph_id="pipeline")
    async with postgres_checkpointer(db_url) as saver:
        registry = GraphRegistry(DEFAULT_GRAPHS, checkpointer=saver)
        for thread_id in (done, waiting):
            output = await registry.run("pipeline", {"text": "a b c"}, thread_id=thread_id)
            assert output["count"] == 3
    make_running(sql, [done])
    sql.execute(
        "UPDATE lg_deploy.executions SET status = 'COMPLETED', output = '{}'"
        " WHERE execution_id = %s",
        (done,),
    )

    def checkpoint_rows(thread_id: str) -> dict[str, int]:
        counts = {}
        for table in CHECKPOINT_TABLES:
            statement = pgsql.SQL("SELECT count(*) FROM {} WHERE thread_id = %s").format(
                pgsql.Identifier("lg_deploy", table)
            )
            row = sql.execute(statement, (thread_id,)).fetchone()
            counts[table] = int(row[0]) if row else 0
        return counts

    before = checkpoint_rows(done)
    assert before["checkpoints"] > 0
    assert before["checkpoint_blobs"] > 0
    kept = checkpoint_rows(waiting)
    assert await prune(pool, 0) == 1
    assert checkpoint_rows(done) == dict.fromkeys(CHECKPOINT_TABLES, 0)
    assert checkpoint_rows(waiting) == kept
    assert present(sql, [done, waiting]) == 1


@pytest.mark.req("OPS-RETENTION")
@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("45s", 45), ("30m", 1800), ("12h", 43_200), ("7d", 604_800), ("2w", 1_209_600)],
)
def test_parse_duration_reads_each_unit(text: str, seconds: float) -> None:
    """Durations are plain seconds or a number with s, m, h, d or w."""
    assert parse_duration(text) == seconds


@pytest.mark.req("OPS-RETENTION")
@pytest.mark.parametrize("text", ["3x", "", "d", "-5s", "1.2.3h"])
def test_parse_duration_refuses_anything_else(text: str) -> None:
    """A value that is not a duration is a ValueError that quotes it."""
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def run_prune(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`lg-deploy prune ARGS` to its end."""
    return subprocess.run(
        [*LG_DEPLOY_COMMAND, "prune", *args], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.req("OPS-RETENTION")
def test_prune_command_counts_without_yes_and_deletes_with_it(
    sql: SqlConn, worker_env: dict[str, str]
) -> None:
    """`prune --older-than 0s` only counts; `--yes` deletes; a bad duration exits 2."""
    finished = make_finished(sql, 2) + make_finished(sql, 1, "FAILED")
    queued = make_rows(sql, 1)
    counted = run_prune(worker_env, "--older-than", "0s")
    assert counted.returncode == 0, counted.stderr
    assert "3 finished executions are older than 0 s" in counted.stdout
    assert present(sql, finished) == 3
    too_young = run_prune(worker_env, "--older-than", "1h", "--yes")
    assert too_young.returncode == 0, too_young.stderr
    assert "deleted 0 finished executions" in too_young.stdout
    assert present(sql, finished) == 3
    deleted = run_prune(worker_env, "--older-than", "0s", "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert "deleted 3 finished executions" in deleted.stdout
    assert present(sql, finished) == 0
    assert present(sql, queued) == 1
    bad = run_prune(worker_env, "--older-than", "3x", "--yes")
    assert bad.returncode == 2
    assert "--older-than" in bad.stderr
    assert present(sql, queued) == 1


@pytest.fixture
def retaining_worker(worker_env: dict[str, str], tmp_path: Path) -> Iterator[Path]:
    """A `lg-deploy worker` that prunes finished rows older than 1 s every 0.5 s; its log."""
    log_path = tmp_path / "worker.log"
    env = {
        **worker_env,
        "LG_DEPLOY_RETENTION_SECONDS": "1",
        "LG_DEPLOY_RETENTION_INTERVAL_SECONDS": "0.5",
        "LG_DEPLOY_POLL_INTERVAL_SECONDS": "0.2",
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*LG_DEPLOY_COMMAND, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=log
        )
    try:
        yield log_path
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


@pytest.mark.req("OPS-RETENTION")
def test_retention_setting_prunes_finished_executions_in_the_background(
    sql: SqlConn, retaining_worker: Path
) -> None:
    """With LG_DEPLOY_RETENTION_SECONDS=1 finished rows vanish soon; waiting/running ones stay."""
    later = make_rows(sql, 1)
    running = make_rows(sql, 1)
    make_running(sql, running)
    rows = sql.execute(
        "INSERT INTO lg_deploy.executions (graph_id, input)"
        " VALUES ('echo', '{}'), ('echo', '{}'), ('fail', '{\"message\": \"no\"}')"
        " RETURNING execution_id::text"
    ).fetchall()
    finishing = [row[0] for row in rows]

    def all_finished() -> bool:
        row = sql.execute(
            "SELECT count(*) FROM lg_deploy.executions"
            " WHERE execution_id = ANY(%s::uuid[]) AND status IN ('COMPLETED', 'FAILED')",
            (finishing,),
        ).fetchone()
        return row == (3,)

    wait_until(all_finished, START_SECONDS, interval=0.01)
    wait_until(lambda: present(sql, finishing) == 0, 10.0)
    assert events_of(sql, finishing) == 0
    assert sql.execute(
        "SELECT status FROM lg_deploy.executions WHERE execution_id = ANY(%s::uuid[])"
        " ORDER BY status",
        (later + running,),
    ).fetchall() == [("QUEUED",), ("RUNNING",)]
    wait_until(lambda: "retention deleted" in retaining_worker.read_text(), 10.0)


@pytest.mark.req("OPS-RETENTION")
async def test_pruning_in_batches_does_not_hold_up_the_queue(
    sql: SqlConn, pool: AsyncConnectionPool[Any], db_url: str
) -> None:
    """While a batch of 500 deletions is uncommitted, work completes and another pruner skips it."""
    old = make_finished(sql, 5000)
    settings = load_settings(
        {
            "LG_DEPLOY_DATABASE_URL": db_url,
            "LG_DEPLOY_MIGRATE_ON_START": "false",
            "LG_DEPLOY_POLL_INTERVAL_SECONDS": "0.2",
            "LG_DEPLOY_SHUTDOWN_GRACE_SECONDS": "1",
        }
    )
    async with (
        open_runtime(settings),
        await psycopg.AsyncConnection.connect(db_url) as batch,
    ):
        cursor = await batch.execute(
            query("prune_finished"), {"older_than_seconds": 0, "batch_size": 500}
        )
        assert len(await cursor.fetchall()) == 500  # deleted, locked, not yet committed

        async with pool.connection() as conn:
            row = await (
                await conn.execute(
                    "INSERT INTO lg_deploy.executions (graph_id, input)"
                    " VALUES ('echo', '{\"new\": true}') RETURNING execution_id::text"
                )
            ).fetchone()
        assert row is not None
        new_id = row[0]

        async def new_one_completed() -> bool:
            async with pool.connection() as conn:
                cursor = await conn.execute(
                    "SELECT status FROM lg_deploy.executions WHERE execution_id = %s", (new_id,)
                )
                return await cursor.fetchone() == ("COMPLETED",)

        await wait_until_async(new_one_completed, 10.0)
        # The other 4,500 old rows and the new one; the 500 held by the open batch are skipped.
        assert await asyncio.wait_for(prune(pool, 0, batch_size=500), 10.0) == 4501
        await batch.commit()
    assert present(sql, [*old, new_id]) == 0
    assert events_of(sql, old) == 0


@pytest.mark.req("OPS-RETENTION")
def test_storage_settings_of_the_hot_tables(sql: SqlConn) -> None:
    """executions has fillfactor 80 and 2 % autovacuum; a partial finished_at index exists."""
    options = sql.execute(
        "SELECT reloptions FROM pg_class WHERE oid = 'lg_deploy.executions'::regclass"
    ).fetchone()
    assert options is not None
    assert set(options[0]) >= {
        "fillfactor=80",
        "autovacuum_vacuum_scale_factor=0.02",
        "autovacuum_analyze_scale_factor=0.02",
        "autovacuum_vacuum_insert_scale_factor=0.05",
    }
    events = sql.execute(
        "SELECT reloptions FROM pg_class WHERE oid = 'lg_deploy.execution_events'::regclass"
    ).fetchone()
    assert events is not None
    assert "autovacuum_vacuum_insert_scale_factor=0.05" in events[0]
    index = sql.execute(
        "SELECT indexdef FROM pg_indexes"
        " WHERE schemaname = 'lg_deploy' AND indexname = 'executions_finished_idx'"
    ).fetchone()
    assert index is not None
    assert "(finished_at)" in index[0]
    assert "COMPLETED" in index[0]
    assert "FAILED" in index[0]
