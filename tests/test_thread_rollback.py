"""Rollback through the Python SDK and a real serve: a run in flight is forgotten with the
checkpoints it wrote, and its thread goes on from the state before it."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import NotFoundError

from tests.support.waiting import wait_until_async


async def _in_its_wait(sdk: LangGraphClient, tid: str, notes: list[str]) -> bool:
    """True once the thread's run is RUNNING with its note saved (it waits in `wait` then)."""
    thread = await sdk.threads.get(tid)
    state = await sdk.threads.get_state(tid)
    return thread["status"] == "busy" and state["values"].get("notes") == notes


def _traces(sql: psycopg.Connection[Any], run_id: str) -> tuple[Any, ...]:
    """What psql finds of a run: its row, its history, the checkpoints it wrote."""
    found = sql.execute(
        "SELECT (SELECT count(*) FROM lg_deploy.executions WHERE execution_id = %(id)s),"
        " (SELECT count(*) FROM lg_deploy.execution_events WHERE execution_id = %(id)s),"
        " (SELECT count(*) FROM lg_deploy.checkpoints WHERE metadata ->> 'run_id' = %(id)s::text)",
        {"id": run_id},
    ).fetchone()
    assert found is not None
    return tuple(found)


@pytest.mark.req("MULTITASK")
async def test_rollback_forgets_the_run_in_flight_and_the_thread_goes_on_without_it(
    sdk: LangGraphClient, sql: psycopg.Connection[Any]
) -> None:
    """multitask_strategy=rollback while a run waits after saving its note: that run is gone
    (404; no row, history or checkpoint in psql) and the new run sees the notes before it."""
    tid = (await sdk.threads.create())["thread_id"]
    await sdk.runs.wait(tid, "notes", input={"note": "a"})
    doomed = await sdk.runs.create(tid, "notes", input={"note": "b", "seconds": 60})
    await wait_until_async(lambda: _in_its_wait(sdk, tid, ["a", "b"]), 20)
    assert _traces(sql, doomed["run_id"])[2] > 0
    after = await sdk.runs.create(tid, "notes", input={"note": "c"}, multitask_strategy="rollback")
    assert (await sdk.runs.join(tid, after["run_id"]))["notes"] == ["a", "c"]
    with pytest.raises(NotFoundError):
        await sdk.runs.get(tid, doomed["run_id"])
    assert _traces(sql, doomed["run_id"]) == (0, 0, 0)
    assert (await sdk.runs.list(tid))[0]["run_id"] == after["run_id"]
    history = await sdk.threads.get_history(tid, limit=50)
    assert all("b" not in h["values"].get("notes", []) for h in history)
    assert (await sdk.threads.get(tid))["status"] == "idle"


@pytest.mark.req("MULTITASK")
async def test_a_queued_run_rolled_back_goes_at_once(
    sdk: LangGraphClient, sql: psycopg.Connection[Any]
) -> None:
    """Rollback also forgets runs still QUEUED behind the running one: both go, and only the
    new run's note joins the thread's."""
    tid = (await sdk.threads.create())["thread_id"]
    running = await sdk.runs.create(tid, "notes", input={"note": "x", "seconds": 60})
    await wait_until_async(lambda: _in_its_wait(sdk, tid, ["x"]), 20)
    queued = await sdk.runs.create(tid, "notes", input={"note": "y"})
    assert (await sdk.runs.get(tid, queued["run_id"]))["status"] == "pending"
    after = await sdk.runs.create(tid, "notes", input={"note": "z"}, multitask_strategy="rollback")
    assert (await sdk.runs.join(tid, after["run_id"]))["notes"] == ["z"]
    for gone in (running, queued):
        assert _traces(sql, gone["run_id"]) == (0, 0, 0)
    assert [r["run_id"] for r in await sdk.runs.list(tid)] == [after["run_id"]]


@pytest.mark.req("MULTITASK")
async def test_cancel_with_action_rollback_forgets_the_run_and_interrupt_keeps_it(
    sdk: LangGraphClient, sql: psycopg.Connection[Any]
) -> None:
    """runs.cancel(action="rollback", wait=True): the run and its note are gone, the thread is
    idle with the notes before it; action="interrupt" keeps the run, interrupted."""
    tid = (await sdk.threads.create())["thread_id"]
    await sdk.runs.wait(tid, "notes", input={"note": "kept"})
    doomed = await sdk.runs.create(tid, "notes", input={"note": "gone", "seconds": 60})
    await wait_until_async(lambda: _in_its_wait(sdk, tid, ["kept", "gone"]), 20)
    await sdk.runs.cancel(tid, doomed["run_id"], wait=True, action="rollback")
    assert _traces(sql, doomed["run_id"]) == (0, 0, 0)
    assert (await sdk.threads.get_state(tid))["values"]["notes"] == ["kept"]
    assert (await sdk.threads.get(tid))["status"] == "idle"
    stopped = await sdk.runs.create(tid, "notes", input={"note": "stays", "seconds": 60})
    await wait_until_async(lambda: _in_its_wait(sdk, tid, ["kept", "stays"]), 20)
    await sdk.runs.cancel(tid, stopped["run_id"], wait=True, action="interrupt")
    assert (await sdk.runs.get(tid, stopped["run_id"]))["status"] == "interrupted"
    assert (await sdk.threads.get_state(tid))["values"]["notes"] == ["kept", "stays"]
