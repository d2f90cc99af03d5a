"""The checkpointer's start-up waits out a database that drops its connection midway (a
crash-restart while a worker starts), instead of stopping the process."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from lg_deploy import checkpoints

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
    assert checks == ["dropped", "answered"]
