"""More of a thread through the Python SDK and a real serve: Command goto and update, subgraph
state, config tags and recursion_limit, after_seconds, history filters, copy and delete."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import NotFoundError

from tests.support.graphs import THREAD_API_KEY


def _count(sql: psycopg.Connection[Any], table: str, thread_id: str) -> int:
    """How many rows of lg_deploy.`table` belong to the thread (psql's view)."""
    statements = {
        "checkpoints": "SELECT count(*) FROM lg_deploy.checkpoints WHERE thread_id = %s::text",
        "executions": "SELECT count(*) FROM lg_deploy.executions WHERE thread_id = %s::uuid",
    }
    row = sql.execute(statements[table], (thread_id,)).fetchone()
    assert row is not None
    return int(row[0])


async def _interrupted_approval(sdk: LangGraphClient) -> str:
    """A thread whose approval run waits at its interrupt; its id."""
    tid = (await sdk.threads.create())["thread_id"]
    await sdk.runs.wait(tid, "approval", input={"request": "car"})
    return str(tid)


@pytest.mark.req("HITL")
async def test_command_goto_and_update_steer_an_interrupted_thread(sdk: LangGraphClient) -> None:
    """goto a node with an update runs it with the update (the interrupted task stays pending,
    as in LangGraph); a Send goto carries its own input; [key, value] pairs update with a
    resume."""
    tid = await _interrupted_approval(sdk)
    update = {"update": {"answer": "yes"}, "goto": "act"}
    jumped = await sdk.runs.wait(tid, "approval", command=update)
    assert (jumped["steps"], jumped["decision"]) == (["prepare", "act"], "approved")
    assert "__interrupt__" in jumped
    assert (await sdk.threads.get(tid))["status"] == "interrupted"
    tid = await _interrupted_approval(sdk)
    send = {"goto": {"node": "act", "input": {"answer": "no"}}}
    sent = await sdk.runs.wait(tid, "approval", command=send)
    assert (sent["steps"], sent["decision"]) == (["prepare", "act"], "refused")
    tid = await _interrupted_approval(sdk)
    pairs = {"update": [["request", "bike"]], "resume": "yes"}
    done = await sdk.runs.wait(tid, "approval", command=pairs)
    assert (done["request"], done["answer"], done["decision"]) == ("bike", "yes", "approved")
    assert (await sdk.threads.get(tid))["status"] == "idle"


@pytest.mark.req("THREAD-STATE", "HITL")
async def test_subgraph_state_shows_the_interrupt_inside_and_a_resume_reaches_it(
    sdk: LangGraphClient,
) -> None:
    """An interrupt inside a subgraph: get_state(subgraphs=True) shows the subgraph's own
    state in its task; the thread's interrupts name it; a resume answers it."""
    tid = (await sdk.threads.create())["thread_id"]
    stopped = await sdk.runs.wait(tid, "nested", input={"topic": "colour"})
    assert stopped["__interrupt__"][0]["value"] == {"asked": "colour"}
    flat = await sdk.threads.get_state(tid)
    assert flat["next"] == ["inner"]
    assert flat["tasks"][0]["state"] is None
    deep = await sdk.threads.get_state(tid, subgraphs=True)
    inner = deep["tasks"][0]["state"]
    assert inner["next"] == ["ask_inside"]
    assert inner["values"] == {"topic": "colour"}
    assert inner["checkpoint"]["checkpoint_ns"].startswith("inner:")
    assert inner["tasks"][0]["interrupts"][0]["value"] == {"asked": "colour"}
    done = await sdk.runs.wait(tid, "nested", command={"resume": "blue"})
    assert done == {"topic": "colour", "answer": "blue"}


@pytest.mark.req("THREAD-RUNS")
async def test_config_tags_and_recursion_limit_reach_the_graph(sdk: LangGraphClient) -> None:
    """config.tags reach the graph's get_config(); a recursion_limit below the graph's steps
    fails the run with LangGraph's GraphRecursionError, and the thread is in error."""
    tid = (await sdk.threads.create())["thread_id"]
    tagged = await sdk.runs.wait(tid, "notes", input={"note": "n"}, config={"tags": ["t1", "t2"]})
    assert tagged["tags"] == ["t1", "t2"]
    other = (await sdk.threads.create())["thread_id"]
    with pytest.raises(Exception, match=r"^GraphRecursionError: Recursion limit of 1 reached"):
        await sdk.runs.wait(other, "approval", input={}, config={"recursion_limit": 1})
    assert (await sdk.threads.get(other))["status"] == "error"
    (run,) = await sdk.runs.list(other)
    assert run["status"] == "error"


@pytest.mark.req("THREAD-RUNS")
async def test_after_seconds_delays_a_thread_run(
    sdk: LangGraphClient, sql: psycopg.Connection[Any]
) -> None:
    """after_seconds: the run waits pending, due that long after its creation (psql's run_at),
    and starts no earlier."""
    tid = (await sdk.threads.create())["thread_id"]
    run = await sdk.runs.create(tid, "echo", input={"late": True}, after_seconds=2)
    assert (await sdk.runs.get(tid, run["run_id"]))["status"] == "pending"
    assert await sdk.runs.join(tid, run["run_id"]) == {"late": True}
    delay, waited = sql.execute(
        "SELECT extract(epoch FROM run_at - created_at), started_at >= run_at"
        " FROM lg_deploy.executions WHERE execution_id = %s",
        (run["run_id"],),
    ).fetchone() or (None, None)
    assert delay is not None
    assert 1.9 < float(delay) < 2.5
    assert waited is True


@pytest.mark.req("THREAD-STATE")
async def test_history_before_and_metadata_filters(sdk: LangGraphClient) -> None:
    """get_history(before=...) continues strictly older; metadata={"run_id": ...} keeps the
    checkpoints that run wrote (each checkpoint names its run)."""
    tid = (await sdk.threads.create())["thread_id"]
    first = await sdk.runs.create(tid, "notes", input={"note": "one"})
    await sdk.runs.join(tid, first["run_id"])
    second = await sdk.runs.create(tid, "notes", input={"note": "two"})
    await sdk.runs.join(tid, second["run_id"])
    history = await sdk.threads.get_history(tid, limit=20)
    older = await sdk.threads.get_history(tid, limit=20, before=history[1]["checkpoint"])
    assert [h["checkpoint_id"] for h in older] == [h["checkpoint_id"] for h in history[2:]]
    mine = await sdk.threads.get_history(tid, limit=20, metadata={"run_id": first["run_id"]})
    assert mine
    assert all(h["metadata"]["run_id"] == first["run_id"] for h in mine)
    assert len(mine) + len(
        await sdk.threads.get_history(tid, limit=20, metadata={"run_id": second["run_id"]})
    ) == len(history)


@pytest.mark.req("THREADS-CRUD", "THREAD-STATE")
async def test_copy_forks_a_thread_and_delete_takes_its_checkpoints(
    sdk: LangGraphClient, sql: psycopg.Connection[Any]
) -> None:
    """copy: a new thread with the same metadata, values and history but no runs, which then
    goes its own way; delete: the thread's runs and checkpoints are gone from psql."""
    tid = (await sdk.threads.create(metadata={"team": "a"}))["thread_id"]
    await sdk.runs.wait(tid, "chat", input={"message": "hi"})
    copied: dict[str, Any] = await sdk.threads.copy(tid)  # type: ignore[func-returns-value]
    twin = copied["thread_id"]
    assert twin != tid
    assert copied["metadata"] == (await sdk.threads.get(tid))["metadata"]
    assert (await sdk.threads.get_state(twin))["values"] == (await sdk.threads.get_state(tid))[
        "values"
    ]
    assert _count(sql, "checkpoints", twin) == _count(sql, "checkpoints", tid)
    assert await sdk.runs.list(twin) == []
    forked = await sdk.runs.wait(twin, "chat", input={"message": "fork"})
    assert forked["messages"] == ["hi", "fork"]
    assert (await sdk.threads.get_state(tid))["values"]["messages"] == ["hi"]
    await sdk.threads.delete(tid)
    assert (_count(sql, "checkpoints", tid), _count(sql, "executions", tid)) == (0, 0)
    assert _count(sql, "checkpoints", twin) > 0
    with pytest.raises(NotFoundError):
        await sdk.threads.copy(tid)


@pytest.mark.req("THREAD-STATE")
def test_bad_state_requests_are_clear_json_errors_and_change_nothing(
    thread_server: str, sql: psycopg.Connection[Any]
) -> None:
    """An update before the thread has a graph or while a run is in flight: 409; as an unknown
    node: 400; an unknown checkpoint: 404; malformed values: 422; each JSON with the request
    id, and no update checkpoint is written."""
    headers = {"x-api-key": THREAD_API_KEY}
    with httpx.Client(base_url=thread_server, headers=headers, timeout=30) as http:
        fresh = http.post("/threads", json={}).json()["thread_id"]
        busy = http.post("/threads", json={}).json()["thread_id"]
        http.post(f"/threads/{busy}/runs/wait", json={"assistant_id": "notes", "input": {}})
        http.post(
            f"/threads/{busy}/runs",
            json={"assistant_id": "notes", "input": {"note": "slow", "seconds": 60}},
        )
        cases = [
            ("post", f"/threads/{fresh}/state", {"values": {"a": 1}}, 409),
            ("post", f"/threads/{busy}/state", {"values": {"notes": ["x"]}}, 409),
            ("post", f"/threads/{busy}/state", {"values": [1]}, 422),
            ("get", f"/threads/{busy}/state/1f000000-0000-6000-8000-000000000000", None, 404),
            ("post", f"/threads/{busy}/history", {"limit": 0}, 422),
        ]
        for method, path, body, status in cases:
            answer = http.request(method, path, json=body)
            assert answer.status_code == status, (path, body, answer.text)
            assert answer.json()["request_id"] == answer.headers["X-Request-ID"]
        idle = http.post("/threads", json={}).json()["thread_id"]
        http.post(f"/threads/{idle}/runs/wait", json={"assistant_id": "notes", "input": {}})
        nowhere = http.post(f"/threads/{idle}/state", json={"values": {}, "as_node": "nowhere"})
        assert nowhere.status_code == 400, nowhere.text
        assert "nowhere" in nowhere.json()["message"]
    updates = sql.execute(
        "SELECT count(*) FROM lg_deploy.checkpoints WHERE metadata ->> 'source' = 'update'"
    ).fetchone()
    assert updates == (0,)
