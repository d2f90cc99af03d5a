"""Forgetting a run's checkpoints, on both savers: lg_deploy.forget_runs (PostgreSQL) and
lg_deploy.threads.checkpoints.forget_run (memory) leave the thread as it was before the run,
also when the run was a resume that wrote on the checkpoint it started from."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command

from lg_deploy.checkpoints import postgres_checkpointer
from lg_deploy.examples.approval import ApprovalState, ask, prepare
from lg_deploy.threads.checkpoints import forget_run
from tests.support.waiting import wait_until_async


async def act(state: ApprovalState) -> dict[str, Any]:
    """The approval example's last step, but a yes hangs (the run rolled back stops here)."""
    if state["answer"] == "yes":
        await asyncio.Event().wait()
    return {"steps": ["act"], "decision": "approved" if state["answer"] == "yes" else "refused"}


def _graph(saver: BaseCheckpointSaver[Any]) -> Any:
    builder = StateGraph(ApprovalState)
    builder.add_node("prepare", prepare)
    builder.add_node("ask", ask)
    builder.add_node("act", act)
    builder.add_edge(START, "prepare")
    builder.add_edge("prepare", "ask")
    builder.add_edge("ask", "act")
    builder.add_edge("act", END)
    return builder.compile(checkpointer=saver)


def _config(thread_id: str, run_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id}, "metadata": {"run_id": run_id}}


@pytest.fixture(params=["memory", "postgres"])
async def saver(request: pytest.FixtureRequest) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    """Each saver lg-deploy keeps threads in."""
    if request.param == "memory":
        yield InMemorySaver()
        return
    async with postgres_checkpointer(request.getfixturevalue("db_url")) as postgres:
        yield postgres


@pytest.mark.req("MULTITASK", "HITL")
async def test_a_resume_rolled_back_leaves_the_interrupt_to_answer_again(
    saver: BaseCheckpointSaver[Any], request: pytest.FixtureRequest
) -> None:
    """A resume answering "yes" that saved `ask`'s step and hangs in `act` is forgotten: its
    checkpoints and the resume it wrote on the interrupted checkpoint go, so a new resume
    answering "no" runs `ask` again and is refused; the history is as before plus the new run."""
    graph = _graph(saver)
    thread_id, first, doomed, last = (str(uuid.uuid4()) for _ in range(4))
    stopped = await graph.ainvoke({}, _config(thread_id, first), durability="sync")
    assert "__interrupt__" in stopped
    before = [s.config for s in [s async for s in graph.aget_state_history(_config(thread_id, ""))]]
    hanging = asyncio.create_task(
        graph.ainvoke(Command(resume="yes"), _config(thread_id, doomed), durability="sync")
    )

    async def in_act() -> bool:
        return (await graph.aget_state(_config(thread_id, ""))).next == ("act",)

    await wait_until_async(in_act, 20)
    hanging.cancel()
    with pytest.raises(asyncio.CancelledError):
        await hanging
    await _forget(saver, request, thread_id, doomed)
    kept = [s.config async for s in graph.aget_state_history(_config(thread_id, ""))]
    assert kept == before
    resumed = graph.ainvoke(Command(resume="no"), _config(thread_id, last), durability="sync")
    done = await asyncio.wait_for(resumed, 20)  # a "yes" left behind would hang in `act`
    assert (done["answer"], done["decision"]) == ("no", "refused")
    assert done["steps"] == ["prepare", "ask", "act"]


async def _forget(
    saver: BaseCheckpointSaver[Any], request: pytest.FixtureRequest, thread_id: str, run_id: str
) -> None:
    """Forget `run_id` as lg-deploy does on this saver."""
    if isinstance(saver, InMemorySaver):
        forget_run(saver, thread_id, run_id)
        return
    sql: psycopg.Connection[Any] = request.getfixturevalue("sql")
    sql.execute("INSERT INTO lg_deploy.threads (thread_id) VALUES (%s)", (thread_id,))
    sql.execute(
        "INSERT INTO lg_deploy.executions (execution_id, graph_id, input, thread_id)"
        " VALUES (%s, 'approval', '{}', %s)",
        (run_id, thread_id),
    )
    assert sql.execute("SELECT lg_deploy.forget_runs(ARRAY[%s]::uuid[])", (run_id,)).fetchone() == (
        1,
    )
