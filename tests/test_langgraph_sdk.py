"""The unmodified langgraph-sdk client (async and sync) drives a real `lg-deploy serve`."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from langgraph_sdk import get_client, get_sync_client
from langgraph_sdk.errors import UnprocessableEntityError

from lg_deploy.assistants.catalog import assistant_id_of
from tests.support.servers import running_server
from tests.support.waiting import wait_until_async

API_KEY = "sdk-test-key"


@pytest.fixture
def server(worker_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """A running `lg-deploy serve` with an API key, sending keep-alive spaces every 0.5 s."""
    with serving(worker_env, tmp_path, keepalive_seconds=0.5) as url:
        yield url


@contextlib.contextmanager
def serving(env: dict[str, str], tmp_path: Path, *, keepalive_seconds: float) -> Iterator[str]:
    """`lg-deploy serve` with the API key on a free port until the block ends; yields its URL."""
    env = {
        **env,
        "LG_DEPLOY_API_KEY": API_KEY,
        "LG_DEPLOY_KEEPALIVE_SECONDS": str(keepalive_seconds),
        "LG_DEPLOY_LEASE_SECONDS": "2",
    }
    with running_server(env, tmp_path) as started:
        yield started.url


@pytest.mark.req("SDK-COMPAT")
async def test_async_client_searches_creates_gets_lists_joins_waits_and_cancels(
    server: str, sql: psycopg.Connection[Any]
) -> None:
    """The async client's assistant and run calls work; runs are the same rows as executions."""
    async with get_client(url=server, api_key=API_KEY) as client:
        await _drive_async_client(client, sql)


async def _drive_async_client(client: Any, sql: psycopg.Connection[Any]) -> None:
    assistants = await client.assistants.search()
    names = {a["graph_id"]: a["assistant_id"] for a in assistants}
    assert {"echo", "fail", "pipeline", "sleep"} <= set(names)
    assert names["echo"] == assistant_id_of("echo")

    run = await client.runs.create(None, names["echo"], input={"q": 1}, metadata={"team": "a"})
    assert run["status"] in ("pending", "running", "success")
    assert {"run_id", "thread_id", "assistant_id", "created_at", "updated_at", "metadata",
            "kwargs", "multitask_strategy"} <= set(run)  # fmt: skip
    assert await client.runs.join(run["thread_id"], run["run_id"]) == {"q": 1}
    fetched = await client.runs.get(run["thread_id"], run["run_id"])
    assert (fetched["status"], fetched["metadata"]) == ("success", {"team": "a"})
    listed = await client.runs.list(run["thread_id"])
    assert [r["run_id"] for r in listed] == [run["run_id"]]
    assert await client.runs.list(run["thread_id"], status="pending") == []
    row = sql.execute(
        "SELECT graph_id, status, output, metadata FROM lg_deploy.executions"
        " WHERE execution_id = %s",
        (run["run_id"],),
    ).fetchone()
    assert row == ("echo", "COMPLETED", {"q": 1}, {"team": "a"})

    assert await client.runs.wait(None, "pipeline", input={"text": "a b"}) == {
        "text": "a b",
        "words": ["a", "b"],
        "count": 2,
        "summary": "2 words: a b",
    }
    failed = await client.runs.wait(None, "fail", input={"message": "nope"}, raise_error=False)
    assert failed == {"__error__": {"error": "RuntimeError", "message": "nope"}}
    with pytest.raises(Exception, match="RuntimeError: nope"):
        await client.runs.wait(None, "fail", input={"message": "nope"})

    long_run = await client.runs.create(None, "sleep", input={"seconds": 60})
    await asyncio.sleep(0.5)
    await client.runs.cancel(long_run["thread_id"], long_run["run_id"], wait=True)
    cancelled = await client.runs.get(long_run["thread_id"], long_run["run_id"])
    assert cancelled["status"] == "interrupted"


@pytest.mark.req("SDK-COMPAT")
def test_sync_client_waits_and_joins(server: str) -> None:
    """The sync client creates, waits for and joins runs (success and failure)."""
    with get_sync_client(url=server, api_key=API_KEY) as client:
        assert client.runs.wait(None, "echo", input={"x": 1}) == {"x": 1}
        failed = client.runs.wait(None, "fail", input={"message": "bad"}, raise_error=False)
        assert failed["__error__"]["message"] == "bad"
        run = client.runs.create(None, "echo", input={"y": 2})
        assert client.runs.join(run["thread_id"], run["run_id"]) == {"y": 2}
        assert client.assistants.get(assistant_id_of("sleep"))["graph_id"] == "sleep"


@pytest.mark.req("SDK-COMPAT")
async def test_long_wait_outlives_the_clients_read_timeout(server: str) -> None:
    """A run longer than the client's read timeout still answers: spaces keep it reading."""
    timeout = httpx.Timeout(30, read=2)
    async with get_client(url=server, api_key=API_KEY, timeout=timeout) as client:
        result = await client.runs.wait(None, "sleep", input={"seconds": 4})
    assert result == {"slept": 4}


@pytest.mark.req("SDK-COMPAT")
async def test_without_keepalive_the_wait_times_out_and_the_sdk_reconnects_by_location(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    """Control: with spaces only every 10 s, that client's 2 s read timeout does fire; the SDK
    then follows the wait's Location header to /join, as on the platform, and gets the output."""
    with serving(worker_env, tmp_path, keepalive_seconds=10) as url:
        timeout = httpx.Timeout(30, read=2)
        async with get_client(url=url, api_key=API_KEY, timeout=timeout) as client:
            with pytest.warns(UserWarning, match="attempting reconnect to Location: .*/join"):
                result = await client.runs.wait(None, "sleep", input={"seconds": 4})
    assert result == {"slept": 4}


@pytest.mark.req("SDK-COMPAT", "API-AUTH")
async def test_wrong_api_key_is_refused(server: str) -> None:
    """Without the right x-api-key the client gets 401."""
    async with get_client(url=server, api_key="wrong") as client:
        with pytest.raises(httpx.HTTPStatusError) as raised:
            await client.assistants.search()
    assert raised.value.response.status_code == 401


@pytest.mark.req("SDK-COMPAT")
def test_unknown_assistant_and_run_are_404(server: str) -> None:
    """An unknown assistant or run answers 404 JSON with the known graphs or the request id."""
    headers = {"x-api-key": API_KEY}
    answer = httpx.post(f"{server}/runs", json={"assistant_id": "nope"}, headers=headers)
    assert answer.status_code == 404
    assert "echo" in answer.json()["known_graphs"]
    missing = "00000000-0000-0000-0000-000000000001"
    answer = httpx.get(f"{server}/threads/{missing}/runs/{missing}", headers=headers)
    assert answer.status_code == 404
    assert answer.json()["request_id"]


def _tagged_rows(sql: psycopg.Connection[Any], tag: str) -> int:
    row = sql.execute(
        "SELECT count(*) FROM lg_deploy.executions WHERE metadata->>'tag' = %s", (tag,)
    ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.req("SDK-REFUSED-KEYS", "WEBHOOK-ALLOWLIST")
async def test_sdk_webhook_to_a_metadata_address_is_refused_and_config_reaches_the_run(
    server: str, sql: psycopg.Connection[Any]
) -> None:
    """A webhook to the metadata address is 422 naming it, nothing runs; config reaches a run."""
    tag = {"tag": uuid.uuid4().hex}
    metadata_url = "http://169.254.169.254/latest/meta-data/"
    async with get_client(url=server, api_key=API_KEY) as client:
        with pytest.raises(UnprocessableEntityError) as created:
            await client.runs.create(None, "echo", input={}, webhook=metadata_url, metadata=tag)
        with pytest.raises(httpx.HTTPStatusError) as waited:
            await client.runs.wait(None, "echo", input={}, webhook=metadata_url, metadata=tag)
        for raised in (created, waited):
            assert raised.value.response.status_code == 422
            body = raised.value.response.json()
            assert body["error"] == "webhook_refused"
            assert body["message"].startswith("webhook: 169.254.169.254 is a link-local address")
            assert body["request_id"]
        assert _tagged_rows(sql, tag["tag"]) == 0
        config = {"configurable": {"user_id": "u1"}, "tags": ["t"]}
        done = await client.runs.wait(None, "echo", input={"e": 1}, config=config, metadata=tag)
    assert done == {"e": 1}
    stored = sql.execute(
        "SELECT config FROM lg_deploy.executions WHERE metadata ->> 'tag' = %s", (tag["tag"],)
    ).fetchone()
    assert stored == (config,)


@pytest.mark.req("SDK-REFUSED-KEYS", "SDK-COMPAT")
async def test_sdk_default_calls_and_ignored_keys_still_run(server: str) -> None:
    """Default create and wait, and keys that cannot change the run, work; strategy enqueue."""
    async with get_client(url=server, api_key=API_KEY) as client:
        run = await client.runs.create(None, "echo", input={"d": 1})
        assert run["multitask_strategy"] == "enqueue"
        assert await client.runs.join(run["thread_id"], run["run_id"]) == {"d": 1}
        assert await client.runs.wait(None, "echo", input={"d": 2}) == {"d": 2}
        ignored = await client.runs.wait(
            None,
            "echo",
            input={"d": 3},
            config={"configurable": {}},
            multitask_strategy="reject",
            if_not_exists="create",
            on_completion="delete",
            on_disconnect="continue",
            durability="exit",
            langsmith_tracing={"project_name": "p"},
        )
        assert ignored == {"d": 3}


@pytest.mark.req("STREAM-MODES")
async def test_sdk_streams_a_thread_less_run_and_joins_a_thread_stream(server: str) -> None:
    """client.runs.stream(None, ...) sends metadata then the values; join_stream of a thread
    opens (its first line a heartbeat or an event) instead of a 501."""
    async with get_client(url=server, api_key=API_KEY) as client:
        parts = [part async for part in client.runs.stream(None, "echo", input={"s": 1})]
        assert [part.event for part in parts] == ["metadata", "values"]
        assert parts[-1].data == {"s": 1}
        thread_id = (await client.threads.create())["thread_id"]
        await client.runs.wait(thread_id, "echo", input={"s": 2})
        joined = await client.threads.join_stream(thread_id, last_event_id="-1")
        first = await anext(aiter(joined))
        assert first.event == "metadata"


@pytest.mark.req("SDK-INTERRUPTED", "DUR-CANCEL")
async def test_sdk_cancelled_run_is_interrupted_and_joins_to_no_values(server: str) -> None:
    """A run cancelled while running or while queued is interrupted in get and list(status)."""
    async with get_client(url=server, api_key=API_KEY) as client:
        running = await client.runs.create(None, "sleep", input={"seconds": 60})
        thread, run_id = running["thread_id"], running["run_id"]

        async def started() -> bool:
            return (await client.runs.get(thread, run_id))["status"] == "running"

        await wait_until_async(started)
        await client.runs.cancel(thread, run_id, wait=True)
        queued = await client.runs.create(None, "echo", input={}, after_seconds=3600)
        await client.runs.cancel(queued["thread_id"], queued["run_id"])
        for run in (running, queued):
            got = await client.runs.get(run["thread_id"], run["run_id"])
            assert got["status"] == "interrupted"
            listed = await client.runs.list(run["thread_id"], status="interrupted")
            assert [r["run_id"] for r in listed] == [run["run_id"]]
            assert await client.runs.list(run["thread_id"], status="error") == []
            assert await client.runs.join(run["thread_id"], run["run_id"]) == {}
