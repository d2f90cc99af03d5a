"""Double-texting under races, through the Python SDK against two processes that claim from
one database (a serve and a worker): runs on a thread never overlap and keep their order;
concurrent rejects admit one; concurrent interrupts leave one run standing."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import psycopg
import pytest
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import ConflictError

from tests.support.processes import Workers
from tests.support.waiting import wait_until_async

THREADS = 4
RUNS_PER_THREAD = 6  # over HTTP, and one more by a plain SQL INSERT


@pytest.fixture
def second_process(thread_server: str, workers: Workers, tmp_path: Path) -> None:
    """A `lg-deploy worker` beside the thread server, serving the same graphs."""
    workers.start(LG_DEPLOY_CONFIG=str(tmp_path / "langgraph.json"))


def _spans(sql: psycopg.Connection[Any], thread_id: str) -> list[tuple[Any, ...]]:
    """A thread's runs oldest first: note, status, started, finished, worker (psql's view)."""
    return sql.execute(
        "SELECT input ->> 'note', status, started_at, finished_at, worker_id"
        " FROM lg_deploy.executions WHERE thread_id = %s ORDER BY created_at, execution_id",
        (thread_id,),
    ).fetchall()


@pytest.mark.req("MULTITASK")
@pytest.mark.usefixtures("second_process")
async def test_two_processes_run_each_threads_runs_one_at_a_time_in_order(
    sdk: LangGraphClient, sql: psycopg.Connection[Any]
) -> None:
    """Runs enqueued at once on several threads (HTTP, and plain SQL INSERTs) while two
    processes claim: on each thread no two runs overlap, they start in creation order, and the
    thread's notes list every run once, in that order."""
    tids = [(await sdk.threads.create())["thread_id"] for _ in range(THREADS)]

    async def enqueue(tid: str, n: int) -> None:
        await sdk.runs.create(tid, "notes", input={"note": f"{tid[:4]}-{n}", "seconds": 0.05})

    await asyncio.gather(*(enqueue(t, n) for t in tids for n in range(RUNS_PER_THREAD)))
    for tid in tids:
        sql.execute(
            "INSERT INTO lg_deploy.executions (graph_id, input, thread_id)"
            " VALUES ('notes', jsonb_build_object('note', %s::text), %s)",
            (f"{tid[:4]}-sql", tid),
        )

    async def all_idle() -> bool:
        statuses = [(await sdk.threads.get(t))["status"] for t in tids]
        return statuses == ["idle"] * THREADS

    await wait_until_async(all_idle, 60)
    for tid in tids:
        spans = _spans(sql, tid)
        assert [status for _, status, *_ in spans] == ["COMPLETED"] * (RUNS_PER_THREAD + 1)
        for earlier, later in itertools.pairwise(spans):
            assert earlier[3] <= later[2], (earlier, later)
        values = (await sdk.threads.get_state(tid))["values"]
        assert values["notes"] == [note for note, *_ in spans]


@pytest.mark.req("MULTITASK")
@pytest.mark.usefixtures("second_process")
async def test_concurrent_rejects_admit_one_and_concurrent_interrupts_leave_one(
    sdk: LangGraphClient, sql: psycopg.Connection[Any]
) -> None:
    """Eight runs with reject at once on an idle thread: one is admitted, seven are 409 and
    add nothing. Eight with interrupt at once on a busy thread: all are admitted, and one of
    them is left standing (the last admitted); every other run is interrupted."""
    tid = (await sdk.threads.create())["thread_id"]

    async def reject(n: int) -> bool:
        body = {"note": f"r{n}", "seconds": 30}
        try:
            await sdk.runs.create(tid, "notes", input=body, multitask_strategy="reject")
        except ConflictError:
            return False
        return True

    admitted = await asyncio.gather(*(reject(n) for n in range(8)))
    assert sum(admitted) == 1
    assert len(_spans(sql, tid)) == 1

    async def interrupt(n: int) -> str:
        body = {"note": f"i{n}", "seconds": 30}
        run = await sdk.runs.create(tid, "notes", input=body, multitask_strategy="interrupt")
        return str(run["run_id"])

    jumped = await asyncio.gather(*(interrupt(n) for n in range(8)))

    seen: list[list[str]] = []

    async def one_left_standing() -> bool:
        seen.append(sorted(run["status"] for run in await sdk.runs.list(tid, limit=20)))
        return seen[-1] in (["interrupted"] * 8 + [last] for last in ("pending", "running"))

    try:
        await wait_until_async(one_left_standing, 30)
    except AssertionError:
        rows = sql.execute(
            "SELECT status, error, cancel_requested_at IS NOT NULL, worker_id"
            " FROM lg_deploy.executions WHERE thread_id = %s ORDER BY created_at",
            (tid,),
        ).fetchall()
        raise AssertionError(f"last statuses {seen[-1]}; rows {rows}") from None
    runs = await sdk.runs.list(tid, limit=20)
    (standing,) = [run["run_id"] for run in runs if run["status"] != "interrupted"]
    assert standing in jumped
    await sdk.runs.cancel(tid, standing, wait=True)
    assert (await sdk.threads.get(tid))["status"] == "idle"
