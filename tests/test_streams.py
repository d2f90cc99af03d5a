"""Streams across processes: a run executes in an `lg-deploy worker`, its client streams from a
separate `lg-deploy serve` that runs no graph; events travel through lg_deploy.run_events."""

from __future__ import annotations

import json
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from tests.support.graphs import thread_graphs_env
from tests.support.processes import SqlConn, Workers
from tests.support.servers import ServeProcess, running_server
from tests.support.waiting import wait_until

EVENT_SECONDS = 30.0


@pytest.fixture
def graphs_env(worker_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The test database and the thread graphs (tests/support/thread_graphs.py)."""
    return thread_graphs_env({**worker_env, "LG_DEPLOY_LEASE_SECONDS": "2"}, tmp_path)


@pytest.fixture
def api(graphs_env: dict[str, str], tmp_path: Path) -> Iterator[ServeProcess]:
    """`lg-deploy serve` that runs no graph (LG_DEPLOY_RUN_GRAPHS=false), heartbeats each 0.5 s."""
    env = {**graphs_env, "LG_DEPLOY_RUN_GRAPHS": "false", "LG_DEPLOY_KEEPALIVE_SECONDS": "0.5"}
    with running_server(env, tmp_path) as server:
        yield server


@pytest.fixture
async def client(api: ServeProcess) -> AsyncIterator[LangGraphClient]:
    """The official Python SDK's client of the API process."""
    sdk = get_client(url=api.url)
    try:
        yield sdk
    finally:
        await sdk.http.client.aclose()


def stored_events(sql: SqlConn, run_id: str) -> list[tuple[int, str, Any]]:
    """The run's events as psql sees them: (event_id, event, data)."""
    rows = sql.execute(
        "SELECT event_id, event, data FROM lg_deploy.run_events WHERE execution_id = %s"
        " AND event <> 'run_done' ORDER BY event_id",
        (run_id,),
    ).fetchall()
    return [(row[0], row[1], json.loads(row[2])) for row in rows]


def sse(text: str) -> list[tuple[str | None, str, Any]]:
    """(id, event, data) of each event in an SSE body (heartbeat comments skipped)."""
    found = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.split("\n") if line and not line.startswith(":")
        )
        if "event" in fields:
            found.append((fields.get("id"), fields["event"], json.loads(fields["data"])))
    return found


@pytest.mark.req("STREAM-PROCESSES", "STREAM-MODES")
async def test_a_run_executed_by_a_worker_streams_its_tokens_to_a_separate_api_process(
    client: LangGraphClient, workers: Workers, graphs_env: dict[str, str], sql: SqlConn
) -> None:
    """metadata first, each token as a messages event, the custom event, the final values; the
    worker ran it (serve runs no graph) and what arrived is what psql reads in run_events."""
    worker = workers.start(LG_DEPLOY_CONFIG=graphs_env["LG_DEPLOY_CONFIG"])
    thread = await client.threads.create()
    parts = [
        part
        async for part in client.runs.stream(
            thread["thread_id"],
            "tokens",
            input={"prompt": "hello there friend"},
            stream_mode=["values", "updates", "messages-tuple", "custom"],
        )
    ]
    names = [part.event for part in parts]
    assert names[0] == "metadata", names
    run_id = parts[0].data["run_id"]
    tokens = [part.data[0]["content"] for part in parts if part.event == "messages"]
    assert "".join(tokens) == "hello there friend"
    assert len(tokens) > 1
    assert {"progress": "speaking"} in [part.data for part in parts if part.event == "custom"]
    final = [part.data for part in parts if part.event == "values"][-1]
    assert final["messages"][-1]["content"] == "hello there friend"
    row = sql.execute(
        "SELECT worker_id, status FROM lg_deploy.executions WHERE execution_id = %s", (run_id,)
    ).fetchone()
    assert row is not None
    assert row[1] == "COMPLETED"
    assert str(worker.process.pid) in row[0]
    assert [(event, data) for _, event, data in stored_events(sql, run_id)] == [
        (part.event, part.data) for part in parts
    ]


@pytest.mark.req("STREAM-RESUME")
async def test_last_event_id_replays_exactly_the_events_after_it(
    client: LangGraphClient,
    workers: Workers,
    graphs_env: dict[str, str],
    sql: SqlConn,
    api: ServeProcess,
) -> None:
    """Ids strictly increase; -1 replays all, an id replays the rest, no header replays nothing
    of a finished run (an empty 200 stream)."""
    workers.start(LG_DEPLOY_CONFIG=graphs_env["LG_DEPLOY_CONFIG"])
    thread = await client.threads.create()
    thread_id = thread["thread_id"]
    run = await client.runs.create(
        thread_id, "tokens", input={"prompt": "one two three"}, stream_mode="messages-tuple"
    )
    await client.runs.join(thread_id, run["run_id"])
    stored = stored_events(sql, run["run_id"])
    ids = [event_id for event_id, _, _ in stored]
    assert ids == sorted(set(ids))
    assert len(ids) > 3
    url = f"{api.url}/threads/{thread_id}/runs/{run['run_id']}/stream"
    async with httpx.AsyncClient(timeout=EVENT_SECONDS) as http:
        everything = sse((await http.get(url, headers={"Last-Event-ID": "-1"})).text)
        middle = ids[len(ids) // 2]
        rest = sse((await http.get(url, headers={"Last-Event-ID": str(middle)})).text)
        live = await http.get(url)
    assert [(int(i or 0), e, d) for i, e, d in everything] == stored
    assert [int(i or 0) for i, _, _ in rest] == [i for i in ids if i > middle]
    assert live.status_code == 200
    assert sse(live.text) == []
    assert live.headers["content-type"].startswith("text/event-stream")


@pytest.mark.req("STREAM-RESUME")
async def test_a_client_that_disconnects_and_reconnects_loses_and_duplicates_nothing(
    workers: Workers, graphs_env: dict[str, str], sql: SqlConn, api: ServeProcess
) -> None:
    """A join read in pieces, each reconnect resuming after the last id it saw, gives every
    stored event exactly once, in order, while the run goes on between the pieces."""
    async with httpx.AsyncClient(base_url=api.url, timeout=EVENT_SECONDS) as http:
        created = await http.post(
            "/runs",
            json={
                "assistant_id": "notes",
                "input": {"note": "piecewise", "seconds": 1.0},
                "stream_mode": ["values", "updates", "debug"],
            },
        )
        run_id = created.json()["run_id"]
        workers.start(LG_DEPLOY_CONFIG=graphs_env["LG_DEPLOY_CONFIG"])
        seen: list[int] = []
        last = "-1"
        while True:
            headers = {"Last-Event-ID": last}
            async with http.stream("GET", f"/runs/{run_id}/stream", headers=headers) as answer:
                ids = []
                async for line in answer.aiter_lines():
                    if line.startswith("id: "):
                        ids.append(int(line[4:]))
                        if len(ids) == 2:
                            break  # hang up mid-stream
            seen.extend(ids)
            if not ids:
                break
            last = str(ids[-1])
    stored = [event_id for event_id, _, _ in stored_events(sql, run_id)]
    assert seen == stored


@pytest.mark.req("STREAM-ERRORS")
async def test_a_failed_run_streams_the_error_event_and_ends_once_its_status_is_final(
    client: LangGraphClient, workers: Workers, graphs_env: dict[str, str]
) -> None:
    """The platform's error event {error, message}, and the stream closes with the run final."""
    workers.start(LG_DEPLOY_CONFIG=graphs_env["LG_DEPLOY_CONFIG"])
    parts = [
        part
        async for part in client.runs.stream(
            None, "fail", input={"message": "kaboom"}, stream_mode="values"
        )
    ]
    assert parts[-1].event == "error", parts
    assert parts[-1].data["message"]
    run = await client.runs.get(parts[0].data["run_id"], parts[0].data["run_id"])
    assert run["status"] == "error"


@pytest.mark.req("STREAM-DISCONNECT")
async def test_on_disconnect_cancel_cancels_the_run_when_the_client_goes(
    workers: Workers, graphs_env: dict[str, str], sql: SqlConn, api: ServeProcess
) -> None:
    """The client hangs up after the first event: the run is cancelled (interrupted)."""
    workers.start(LG_DEPLOY_CONFIG=graphs_env["LG_DEPLOY_CONFIG"])
    body = {
        "assistant_id": "notes",
        "input": {"note": "left", "seconds": 60},
        "on_disconnect": "cancel",
        "stream_mode": "updates",
    }
    async with (
        httpx.AsyncClient(base_url=api.url, timeout=EVENT_SECONDS) as http,
        http.stream("POST", "/runs/stream", json=body) as answer,
    ):
        run_id = answer.headers["content-location"].rsplit("/", 1)[-1]
        async for line in answer.aiter_lines():
            if line.startswith("event: updates"):
                break

    def cancelled() -> bool:
        row = sql.execute(
            "SELECT status, error FROM lg_deploy.executions WHERE execution_id = %s", (run_id,)
        ).fetchone()
        return row == ("FAILED", "cancelled")

    wait_until(cancelled, EVENT_SECONDS)


@pytest.mark.req("STREAM-HEARTBEAT", "STREAM-THREAD")
async def test_the_thread_stream_carries_each_run_and_its_run_done_with_heartbeats(
    client: LangGraphClient, workers: Workers, graphs_env: dict[str, str], api: ServeProcess
) -> None:
    """GET /threads/{id}/stream: heartbeats while idle, a run's events, metadata run_done."""
    thread = await client.threads.create()
    thread_id = thread["thread_id"]
    lines: list[str] = []
    async with (
        httpx.AsyncClient(base_url=api.url, timeout=EVENT_SECONDS) as http,
        http.stream("GET", f"/threads/{thread_id}/stream") as answer,
    ):
        assert answer.status_code == 200
        run = None
        async for line in answer.aiter_lines():
            lines.append(line)
            if line == ": heartbeat" and run is None:
                workers.start(LG_DEPLOY_CONFIG=graphs_env["LG_DEPLOY_CONFIG"])
                run = await client.runs.create(thread_id, "notes", input={"note": "x"})
            if '"run_done"' in line:
                break
    assert run is not None
    assert "event: metadata" in lines
    assert "event: values" in lines
    done = [json.loads(line[6:]) for line in lines if '"run_done"' in line]
    assert done == [{"status": "run_done", "run_id": run["run_id"]}]


@pytest.mark.req("STREAM-CRASH")
async def test_a_worker_killed_mid_stream_is_continued_by_another_and_the_stream_ends(
    client: LangGraphClient, workers: Workers, graphs_env: dict[str, str], sql: SqlConn
) -> None:
    """SIGKILL while the run waits: the retry on a second worker resumes from the checkpoint,
    the one stream shows both attempts' metadata and ends with the final values, and the
    run's history shows it requeued."""
    config = graphs_env["LG_DEPLOY_CONFIG"]
    first = workers.start(LG_DEPLOY_CONFIG=config)
    thread = await client.threads.create()
    parts = []
    async for part in client.runs.stream(
        thread["thread_id"],
        "notes",
        input={"note": "survives", "seconds": 3},
        stream_mode=["values", "updates"],
    ):
        parts.append(part)
        if part.event == "updates" and "write" in part.data and first.process.poll() is None:
            first.process.send_signal(signal.SIGKILL)
            first.process.wait(10)
            workers.start(LG_DEPLOY_CONFIG=config)
    attempts = [part.data["attempt"] for part in parts if part.event == "metadata"]
    assert attempts == [1, 2], [part.event for part in parts]
    final = [part.data for part in parts if part.event == "values"][-1]
    assert final["notes"] == ["survives"]
    run_id = parts[0].data["run_id"]
    history = sql.execute(
        "SELECT from_status, to_status FROM lg_deploy.execution_events"
        " WHERE execution_id = %s ORDER BY event_id",
        (run_id,),
    ).fetchall()
    assert ("RUNNING", "QUEUED") in history
    assert history[-1] == ("RUNNING", "COMPLETED")


@pytest.mark.req("STREAM-MODES")
async def test_every_stream_mode_and_subgraphs_reach_the_client_as_the_platform_names_them(
    client: LangGraphClient, workers: Workers, graphs_env: dict[str, str]
) -> None:
    """Legacy messages (metadata, partial growing to the whole reply), tasks, checkpoints,
    debug, events, and a subgraph's updates as `updates|inner:<id>` with stream_subgraphs."""
    workers.start(LG_DEPLOY_CONFIG=graphs_env["LG_DEPLOY_CONFIG"])
    thread = await client.threads.create()
    modes: list[Any] = ["messages", "tasks", "checkpoints", "debug", "events", "updates"]
    parts = [
        part
        async for part in client.runs.stream(
            thread["thread_id"],
            "tokens",
            input={"prompt": "one two"},
            stream_mode=modes,
            stream_subgraphs=True,
        )
    ]
    names = {part.event for part in parts}
    for name in ("messages/metadata", "messages/partial", "tasks", "checkpoints", "debug"):
        assert name in names, sorted(names)
    partial = [part.data for part in parts if part.event == "messages/partial"]
    assert partial[-1][0]["content"] == "one two"
    assert partial[-1][0]["type"] == "ai"
    kinds = {part.data["event"] for part in parts if part.event == "events"}
    assert {"on_chain_start", "on_chat_model_stream", "on_chain_end"} <= kinds
    inner = [part for part in parts if part.event.startswith("updates|inner:")]
    assert inner, sorted(names)
    assert inner[0].data == {"note_inside": {"inner": "noted"}}
    assert "updates" in names
