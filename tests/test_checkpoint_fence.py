"""Checkpoint writes are fenced like outcomes: an attempt another attempt took over cannot write
its thread's checkpoints (lg_deploy.checkpoints.FencedPostgresSaver), against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import psycopg
import pytest

from lg_deploy.checkpoints import postgres_checkpointer
from lg_deploy.errors import StaleAttempt
from lg_deploy.graphs import GraphRegistry, GraphRun

CHAT = {"chat": "lg_deploy.examples.chat:graph"}


def _claim(sql: psycopg.Connection[Any], execution_id: str, worker_id: str) -> None:
    """Claim the row for `worker_id` as the claim statement does (next attempt, a lease)."""
    sql.execute(
        "UPDATE lg_deploy.executions SET status = 'RUNNING', attempts = attempts + 1,"
        " worker_id = %s, lease_expires_at = now() + interval '1 minute'"
        " WHERE execution_id = %s",
        (worker_id, execution_id),
    )


def _checkpoints_of(sql: psycopg.Connection[Any], execution_id: str) -> int:
    row = sql.execute(
        "SELECT count(*) FROM lg_deploy.checkpoints WHERE metadata ->> 'run_id' = %s",
        (execution_id,),
    ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.req("DUR-FENCE", "THREAD-RUNS")
async def test_a_taken_over_attempt_writes_no_checkpoint_and_the_holder_does(
    db_url: str, sql: psycopg.Connection[Any]
) -> None:
    """Attempt 1 (worker w1) is recovered and claimed again by w2 while w1 still thinks it runs:
    w1's graph fails at its first checkpoint write with StaleAttempt and writes nothing; w2's
    attempt 2 runs and saves its steps."""
    (thread_id,) = sql.execute(
        "INSERT INTO lg_deploy.threads DEFAULT VALUES RETURNING thread_id::text"
    ).fetchone() or (None,)
    execution_id = str(uuid.uuid4())
    sql.execute(
        "INSERT INTO lg_deploy.executions (execution_id, graph_id, input, thread_id)"
        " VALUES (%s, 'chat', '{\"message\": \"hi\"}', %s)",
        (execution_id, thread_id),
    )
    _claim(sql, execution_id, "w1")
    sql.execute(
        "UPDATE lg_deploy.executions SET status = 'QUEUED' WHERE execution_id = %s",
        (execution_id,),
    )  # recovered: w1's lease passed
    _claim(sql, execution_id, "w2")
    async with postgres_checkpointer(db_url) as saver:
        registry = GraphRegistry(CHAT, thread_checkpointer=saver)
        run = {"graph_id": "chat", "input": {"message": "hi"}, "run_id": execution_id}
        stale = GraphRun(**run, thread_id=str(thread_id), on_thread=True, attempt=1, worker_id="w1")
        with pytest.raises(StaleAttempt, match="attempt 1 of execution"):
            await registry.execute(stale)
        assert _checkpoints_of(sql, execution_id) == 0
        holder = GraphRun(
            **run, thread_id=str(thread_id), on_thread=True, attempt=2, worker_id="w2"
        )
        outcome = await registry.execute(holder)
    assert outcome.output["replies"] == ["turn 1 for someone: hi"]
    assert _checkpoints_of(sql, execution_id) > 0


@pytest.mark.req("THREAD-RUNS")
async def test_checkpoint_statements_of_concurrent_runs_do_not_wait_for_each_other(
    db_url: str,
) -> None:
    """While one checkpoint statement holds its connection (a slow commit, say), another run's
    checkpoint read goes ahead on a connection of its own: LangGraph's saver took one lock per
    process around every statement, so every thread run in a worker waited in one line."""
    async with postgres_checkpointer(db_url) as saver:
        missing = {"configurable": {"thread_id": str(uuid.uuid4()), "checkpoint_ns": ""}}
        async with saver._cursor() as held:
            await held.execute("SELECT 1")
            assert await asyncio.wait_for(saver.aget_tuple(missing), 10.0) is None
