"""A process's start-up statements wait out a database that drops their connection midway (a
crash-restart while a worker starts) instead of stopping the process: the checkpointer's setup
and the fleet registration."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from lg_deploy import checkpoints
from lg_deploy.fleet import Fleet
from tests.chaos.processes import SqlConn

DROPPED = "consuming input failed: server closed the connection unexpectedly"


@pytest.mark.req("FAULT-OUTAGE", "FAULT-CHAOS")
async def test_a_connection_dropped_during_the_checkpointer_setup_is_tried_again(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The setup's first check loses its connection: the start goes on and the saver works."""
    is_current = checkpoints._is_current
    checks: list[str] = []

    async def dropped_once(conn: psycopg.AsyncConnection[Any]) -> bool:
        checks.append("dropped" if not checks else "answered")
        if checks == ["dropped"]:
            raise psycopg.OperationalError(DROPPED)
        return await is_current(conn)

    monkeypatch.setattr(checkpoints, "_is_current", dropped_once)
    async with checkpoints.postgres_checkpointer(db_url) as saver:
        thread = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
        assert await saver.aget_tuple(thread) is None
    assert checks[0] == "dropped"
    assert set(checks[1:]) == {"answered"}, checks


@pytest.mark.req("FAULT-OUTAGE", "FAULT-CHAOS")
async def test_a_connection_dropped_during_the_fleet_registration_is_tried_again(
    pool: AsyncConnectionPool[Any], sql: SqlConn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The registration's first statement loses its connection: the worker is registered."""
    fleet = Fleet(
        pool,
        worker_id="host:1:a",
        graph_ids=["echo"],
        concurrency=1,
        ttl_seconds=10.0,
        fail_never_served_after_seconds=3600.0,
    )
    register = fleet._register
    attempts: list[str] = []

    async def dropped_once() -> None:
        attempts.append("dropped" if not attempts else "registered")
        if attempts == ["dropped"]:
            raise psycopg.OperationalError(DROPPED)
        await register()

    monkeypatch.setattr(fleet, "_register", dropped_once)
    await fleet.start()
    try:
        row = sql.execute(
            "SELECT graph_ids FROM lg_deploy.workers WHERE worker_id = 'host:1:a'"
        ).fetchone()
        assert row == (["echo"],)
    finally:
        await fleet.stop()
    assert attempts == ["dropped", "registered"]
