"""Runs on a thread through the Python SDK and a real serve: conversations that remember,
config and context, human in the loop, state and history, double-texting, and bad input."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import httpx
import psycopg
import pytest
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import ConflictError, NotFoundError

from tests.support.graphs import THREAD_API_KEY
from tests.support.waiting import wait_until_async

HEADERS = {"x-api-key": THREAD_API_KEY}


@pytest.mark.req("THREAD-RUNS")
async def test_a_conversation_remembers_its_turns_and_config_and_context_reach_the_graph(
    sdk: LangGraphClient, sql: psycopg.Connection[Any]
) -> None:
    """Two turns on one thread: the second sees the first through the checkpoints; context and
    config.configurable reach the graph; run metadata is stored; psql sees two runs."""
    thread = await sdk.threads.create()
    tid = thread["thread_id"]
    first = await sdk.runs.wait(
        tid, "chat", input={"message": "hi"}, context={"user": "ann"}, metadata={"turn": 1}
    )
    assert first["replies"] == ["turn 1 for ann: hi"]
    second = await sdk.runs.wait(
        tid, "chat", input={"message": "again"}, config={"configurable": {"user_id": "bob"}}
    )
    assert second["messages"] == ["hi", "again"]
    assert second["replies"] == ["turn 1 for ann: hi", "turn 2 for bob: again"]
    after = await sdk.threads.get(tid)
    assert after["status"] == "idle"
    assert after["metadata"]["graph_id"] == "chat"
    assert after["values"] == second
    runs = await sdk.runs.list(tid)
    assert [run["status"] for run in runs] == ["success", "success"]
    assert runs[1]["metadata"] == {"turn": 1}
    assert runs[1]["kwargs"]["context"] == {"user": "ann"}
    rows = sql.execute(
        "SELECT status, metadata, context, config -> 'configurable' FROM lg_deploy.executions"
        " WHERE thread_id = %s ORDER BY created_at",
        (tid,),
    ).fetchall()
    assert rows == [
        ("COMPLETED", {"turn": 1}, {"user": "ann"}, None),
        ("COMPLETED", {}, {}, {"user_id": "bob"}),
    ]


@pytest.mark.req("HITL", "THREAD-STATE")
async def test_an_interrupt_stops_the_run_and_a_resume_finishes_it_without_rerunning_nodes(
    sdk: LangGraphClient, sql: psycopg.Connection[Any]
) -> None:
    """interrupt(): the run ends with __interrupt__ (platform status success, the execution
    INTERRUPTED), the thread is interrupted with its interrupts by task id and the state shows
    the pending task; Command(resume) finishes it from the checkpoint: prepare ran once."""
    tid = (await sdk.threads.create())["thread_id"]
    stopped = await sdk.runs.wait(tid, "approval", input={"request": "leave"})
    (pending,) = stopped["__interrupt__"]
    assert pending["value"] == {"question": "approve leave?"}
    thread = await sdk.threads.get(tid)
    assert thread["status"] == "interrupted"
    [(task_id, [shown])] = thread["interrupts"].items()
    assert shown == {"id": pending["id"], "value": pending["value"]}
    state = await sdk.threads.get_state(tid)
    assert state["next"] == ["ask"]
    assert state["tasks"][0]["id"] == task_id
    assert state["interrupts"] == [shown]
    (run,) = await sdk.runs.list(tid)
    assert run["status"] == "success"
    row = sql.execute(
        "SELECT status, interrupts FROM lg_deploy.executions WHERE execution_id = %s",
        (run["run_id"],),
    ).fetchone()
    assert row == ("INTERRUPTED", {task_id: [shown]})
    done = await sdk.runs.wait(tid, "approval", command={"resume": "yes"})
    assert done["steps"] == ["prepare", "ask", "act"]
    assert done["decision"] == "approved"
    thread = await sdk.threads.get(tid)
    assert (thread["status"], thread["interrupts"]) == ("idle", {})


@pytest.mark.req("THREAD-STATE")
async def test_history_update_state_and_a_run_from_a_past_checkpoint(
    sdk: LangGraphClient,
) -> None:
    """History lists checkpoints newest first; update_state as a node moves the thread on;
    state at a checkpoint and a run from it (time travel) fork from there."""
    tid = (await sdk.threads.create())["thread_id"]
    await sdk.runs.wait(tid, "approval", input={"request": "car"})
    history = await sdk.threads.get_history(tid, limit=10)
    assert [h["next"] for h in history] == [["ask"], ["prepare"], ["__start__"]]
    at_interrupt = history[0]["checkpoint_id"]
    assert history[1]["checkpoint_id"] == history[0]["parent_checkpoint_id"]
    past = await sdk.threads.get_state(tid, checkpoint_id=history[1]["checkpoint_id"])
    assert past["next"] == ["prepare"]
    written = await sdk.threads.update_state(tid, {"answer": "no"}, as_node="ask")
    assert written["checkpoint"]["thread_id"] == tid
    assert (await sdk.threads.get_state(tid))["next"] == ["act"]
    refused = await sdk.runs.wait(tid, "approval", input=None)
    assert (refused["decision"], refused["steps"]) == ("refused", ["prepare", "act"])
    forked = await sdk.runs.wait(
        tid, "approval", command={"resume": "yes"}, checkpoint_id=at_interrupt
    )
    assert (forked["decision"], forked["steps"]) == ("approved", ["prepare", "ask", "act"])
    assert (await sdk.threads.get(tid))["values"]["decision"] == "approved"


@pytest.mark.req("HITL")
async def test_a_breakpoint_stops_before_its_node_and_null_input_continues(
    sdk: LangGraphClient,
) -> None:
    """interrupt_before and interrupt_after: the thread is interrupted with no interrupts and
    the node next; input None goes on from there."""
    tid = (await sdk.threads.create())["thread_id"]
    stopped = await sdk.runs.wait(tid, "chat", input={"message": "x"}, interrupt_before=["reply"])
    assert stopped["replies"] == []
    thread = await sdk.threads.get(tid)
    assert (thread["status"], thread["interrupts"]) == ("interrupted", {})
    went_on = await sdk.runs.wait(tid, "chat", input=None)
    assert went_on["replies"] == ["turn 1 for someone: x"]
    after = await sdk.runs.wait(tid, "chat", input={"message": "y"}, interrupt_after=["listen"])
    assert (after["messages"], len(after["replies"])) == (["x", "y"], 1)
    assert (await sdk.threads.get_state(tid))["next"] == ["reply"]
    assert (await sdk.threads.get(tid))["status"] == "interrupted"
    finished = await sdk.runs.wait(tid, "chat", input=None)
    assert finished["replies"][-1] == "turn 2 for someone: y"


async def _status_is(sdk: LangGraphClient, tid: str, rid: str, status: str) -> bool:
    return bool((await sdk.runs.get(tid, rid))["status"] == status)


@pytest.mark.req("MULTITASK")
async def test_double_texting_reject_enqueue_and_interrupt(
    sdk: LangGraphClient, sql: psycopg.Connection[Any]
) -> None:
    """While a run is in flight: reject is a 409 and adds nothing; enqueue runs after it;
    interrupt cancels it and the one queued (both interrupted) and runs."""
    tid = (await sdk.threads.create())["thread_id"]
    slow = await sdk.runs.create(tid, "sleep", input={"seconds": 30})
    await wait_until_async(lambda: _status_is(sdk, tid, slow["run_id"], "running"), 20)
    with pytest.raises(ConflictError, match="already running a task"):
        await sdk.runs.create(tid, "sleep", input={"seconds": 0}, multitask_strategy="reject")
    queued = await sdk.runs.create(tid, "echo", input={"n": 1}, multitask_strategy="enqueue")
    assert (await sdk.runs.get(tid, queued["run_id"]))["status"] == "pending"
    assert (await sdk.threads.get(tid))["status"] == "busy"
    jumped = await sdk.runs.create(tid, "echo", input={"n": 2}, multitask_strategy="interrupt")
    assert await sdk.runs.join(tid, jumped["run_id"]) == {"n": 2}
    statuses = {r["run_id"]: r["status"] for r in await sdk.runs.list(tid)}
    assert statuses == {
        slow["run_id"]: "interrupted",
        queued["run_id"]: "interrupted",
        jumped["run_id"]: "success",
    }
    assert (await sdk.threads.get(tid))["status"] == "idle"
    count = sql.execute("SELECT count(*) FROM lg_deploy.executions WHERE thread_id = %s", (tid,))
    assert count.fetchone() == (3,)


@pytest.mark.req("MULTITASK")
async def test_enqueued_runs_on_a_thread_run_one_at_a_time_in_order(
    sdk: LangGraphClient, sql: psycopg.Connection[Any]
) -> None:
    """Five runs enqueued at once on one thread run one after another, oldest first: no two
    overlap (the execution history shows each start after the previous finish)."""
    tid = (await sdk.threads.create())["thread_id"]
    made = [await sdk.runs.create(tid, "chat", input={"message": f"m{n}"}) for n in range(5)]
    last = await sdk.runs.join(tid, made[-1]["run_id"])
    assert last["messages"] == [f"m{n}" for n in range(5)]
    spans = sql.execute(
        "SELECT started_at, finished_at FROM lg_deploy.executions WHERE thread_id = %s"
        " ORDER BY created_at",
        (tid,),
    ).fetchall()
    for (_, finished), (started, _) in itertools.pairwise(spans):
        assert finished <= started


@pytest.mark.req("THREAD-RUNS", "MULTITASK")
async def test_runs_on_a_missing_thread_and_deleting_runs(sdk: LangGraphClient) -> None:
    """A missing thread is a 404 unless if_not_exists=create; a finished run deletes, a
    running one is a 409 until it ends."""
    missing = str(uuid.uuid4())
    with pytest.raises(NotFoundError):
        await sdk.runs.create(missing, "echo", input={"a": 1})
    made = await sdk.runs.create(missing, "echo", input={"a": 1}, if_not_exists="create")
    assert await sdk.runs.join(missing, made["run_id"]) == {"a": 1}
    assert (await sdk.threads.get(missing))["status"] == "idle"
    slow = await sdk.runs.create(missing, "sleep", input={"seconds": 30})
    with pytest.raises(ConflictError):
        await sdk.runs.delete(missing, slow["run_id"])
    await sdk.runs.cancel(missing, slow["run_id"], wait=True)
    await sdk.runs.delete(missing, slow["run_id"])
    with pytest.raises(NotFoundError):
        await sdk.runs.get(missing, slow["run_id"])
    assert [r["run_id"] for r in await sdk.runs.list(missing)] == [made["run_id"]]


@pytest.mark.req("THREAD-RUNS", "HITL")
def test_bad_thread_run_requests_are_clear_json_errors_and_change_nothing(
    thread_server: str, sql: psycopg.Connection[Any]
) -> None:
    """Unknown thread 404; resume without a thread 400; malformed command 422; a checkpoint of
    another thread 404; each JSON with the request id, and no execution is added."""
    with httpx.Client(base_url=thread_server, headers=HEADERS, timeout=30) as http:
        tid = http.post("/threads", json={}).json()["thread_id"]
        other = http.post("/threads", json={}).json()["thread_id"]
        http.post(f"/threads/{other}/runs/wait", json={"assistant_id": "echo", "input": {}})
        (foreign,) = sql.execute(
            "SELECT checkpoint_id FROM lg_deploy.checkpoints WHERE thread_id = %s LIMIT 1",
            (other,),
        ).fetchone() or (None,)
        assert foreign is not None
        before = sql.execute("SELECT count(*) FROM lg_deploy.executions").fetchone()
        cases = [
            (f"/threads/{uuid.uuid4()}/runs", {"assistant_id": "echo"}, 404),
            ("/runs/wait", {"assistant_id": "approval", "command": {"resume": "yes"}}, 400),
            (f"/threads/{tid}/runs", {"assistant_id": "approval", "command": {"jump": 1}}, 422),
            (f"/threads/{tid}/runs", {"assistant_id": "approval", "command": "yes"}, 422),
            (f"/threads/{tid}/runs", {"assistant_id": "echo", "checkpoint_id": foreign}, 404),
            (f"/threads/{tid}/runs", {"assistant_id": "echo", "interrupt_before": 7}, 422),
        ]
        for path, body, status in cases:
            answer = http.post(path, json=body)
            assert answer.status_code == status, (path, body, answer.text)
            error = answer.json()
            assert error["message"]
            assert error["request_id"] == answer.headers["X-Request-ID"]
            assert "Traceback" not in answer.text
        answer = http.get(f"/threads/{tid}/state/{foreign}")
        assert answer.status_code == 404
        after = sql.execute("SELECT count(*) FROM lg_deploy.executions").fetchone()
        assert after == before
