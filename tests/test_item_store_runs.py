"""LangGraph's store at run time and over time, with real processes on a real PostgreSQL: graphs
run by an `lg-deploy worker` use the store the API serves, and items expire and are swept."""

from __future__ import annotations

import json
import shutil
import signal
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from lg_deploy.db.roles import apply_roles
from lg_deploy.item_store import postgres_item_store
from lg_deploy.settings import load_settings
from tests.support.processes import Workers
from tests.support.roles import SERVICE, Logins
from tests.support.servers import ServeProcess, StartServer
from tests.support.waiting import wait_until

SqlConn = psycopg.Connection[Any]
STORE_GRAPHS = {"remember": "./store_graphs.py:remember", "recall": "./store_graphs.py:recall"}
SHORT_TTL_MINUTES = 0.02  # 1.2 s
FAST_SWEEP = {"LG_DEPLOY_STORE_TTL_SWEEP_SECONDS": "0.2"}
NO_SWEEP = {"LG_DEPLOY_STORE_TTL_SWEEP_SECONDS": "3600"}  # only the one at start


def store_graphs_env(env: dict[str, str], folder: Path) -> dict[str, str]:
    """`env` serving the graphs of tests/support/store_graphs.py from a langgraph.json in
    `folder`."""
    shutil.copy(Path(__file__).parent / "support" / "store_graphs.py", folder / "store_graphs.py")
    config = folder / "langgraph.json"
    config.write_text(json.dumps({"graphs": STORE_GRAPHS}), encoding="utf-8")
    return {**env, "LG_DEPLOY_CONFIG": str(config)}


@pytest.fixture
async def sdk_of() -> AsyncIterator[Any]:
    """Makes official Python SDK clients of servers; closes them at teardown."""
    made: list[LangGraphClient] = []

    def make(server: ServeProcess) -> LangGraphClient:
        made.append(get_client(url=server.url, api_key=None))
        return made[-1]

    yield make
    for client in made:
        await client.http.client.aclose()


def row(sql: SqlConn, key: str) -> dict[str, Any] | None:
    """The row of lg_deploy.store with this key, as psql shows it (None: there is none)."""
    cursor = sql.execute(
        "SELECT prefix, value, expires_at, ttl_minutes, now() AS now"
        " FROM lg_deploy.store WHERE key = %s",
        (key,),
    )
    found = cursor.fetchone()
    names = [column.name for column in cursor.description or ()]
    return dict(zip(names, found, strict=True)) if found else None


def expire(sql: SqlConn, key: str) -> None:
    """Make the item expired, as an operator would with psql."""
    sql.execute(
        "UPDATE lg_deploy.store SET expires_at = now() - interval '1 second' WHERE key = %s",
        (key,),
    )


@pytest.mark.req("STORE-GRAPHS", "STORE-SDKS")
async def test_graphs_run_by_a_worker_process_write_and_read_the_api_store(
    worker_env: dict[str, str],
    tmp_path: Path,
    start_server: StartServer,
    workers: Workers,
    sdk_of: Any,
    sql: SqlConn,
) -> None:
    """A serve that runs no graph and a separate worker: a node's get_store().aput is then read
    through the API, and an item put through the API is seen by a node's `store` parameter;
    with the worker gone, a serve that runs graphs gives them the same store."""
    env = store_graphs_env(worker_env, tmp_path)
    server = start_server(env, LG_DEPLOY_RUN_GRAPHS="false")
    worker = workers.start(LG_DEPLOY_CONFIG=env["LG_DEPLOY_CONFIG"])
    client = sdk_of(server)
    said = {"user": "ann", "key": "m1", "text": "likes tea"}
    await client.runs.wait(None, "remember", input=said)
    item = await client.store.get_item(["memories", "ann"], "m1")
    assert item["value"] == {"text": "likes tea"}
    assert row(sql, "m1") is not None
    await client.store.put_item(["memories", "ann"], "m2", {"text": "lives in Oslo"})
    await client.store.put_item(["memories", "bob"], "m3", {"text": "not ann's"})
    known = await client.runs.wait(None, "recall", input={"user": "ann"})
    assert known["known"] == ["likes tea", "lives in Oslo"]
    ran = sql.execute("SELECT DISTINCT worker_id FROM lg_deploy.executions").fetchall()
    assert len(ran) == 1

    worker.process.kill()
    worker.process.wait(10)
    serving = sdk_of(start_server(env))  # runs graphs itself
    await serving.runs.wait(None, "remember", input={**said, "key": "m4", "text": "has a cat"})
    known = await serving.runs.wait(None, "recall", input={"user": "ann"})
    assert known["known"] == ["has a cat", "likes tea", "lives in Oslo"]
    assert (await client.store.get_item(["memories", "ann"], "m4"))["value"] == {
        "text": "has a cat"
    }
    ran = sql.execute("SELECT DISTINCT worker_id FROM lg_deploy.executions").fetchall()
    assert len(ran) == 2


@pytest.mark.req("STORE-TTL")
async def test_items_with_a_ttl_are_swept_in_the_background_and_the_rest_stay(
    worker_env: dict[str, str], start_server: StartServer, sdk_of: Any, sql: SqlConn
) -> None:
    """An item put with ttl 0.02 minutes, and one whose expiry psql moved to the past, leave
    lg_deploy.store by the background sweep; an item without a TTL stays. SIGTERM then stops
    the server cleanly (exit 0), its sweep with it."""
    server = start_server(worker_env, **FAST_SWEEP)
    client = sdk_of(server)
    await client.store.put_item(["cache"], "short", {"v": 1}, ttl=SHORT_TTL_MINUTES)
    await client.store.put_item(["cache"], "long", {"v": 2}, ttl=60)
    await client.store.put_item(["cache"], "kept", {"v": 3})
    short = row(sql, "short")
    assert short is not None
    assert short["expires_at"] <= short["now"] + timedelta(seconds=1.2)
    wait_until(lambda: row(sql, "short") is None)
    assert await client.store.get_item(["cache"], "short") is None
    expire(sql, "long")
    wait_until(lambda: row(sql, "long") is None)
    kept = row(sql, "kept")
    assert kept is not None
    assert (kept["expires_at"], kept["ttl_minutes"]) == (None, None)
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(15) == 0
    errors = [line for line in server.log_lines() if line.get("level") in ("ERROR", "CRITICAL")]
    assert errors == []


@pytest.mark.req("STORE-TTL")
async def test_expired_items_are_never_read_and_reads_refresh_ttls(
    worker_env: dict[str, str], start_server: StartServer, sdk_of: Any, sql: SqlConn
) -> None:
    """Before any sweep an expired item is absent from get, search and namespaces (its row still
    there); a read restarts an item's TTL unless refresh_ttl is false; an item put without one
    gets LG_DEPLOY_STORE_DEFAULT_TTL_SECONDS."""
    server = start_server(worker_env, **NO_SWEEP, LG_DEPLOY_STORE_DEFAULT_TTL_SECONDS="120")
    client = sdk_of(server)
    await client.store.put_item(["old"], "gone", {"v": 1}, ttl=60)
    await client.store.put_item(["fresh"], "read", {"v": 2}, ttl=60)
    await client.store.put_item(["fresh"], "default", {"v": 3})
    default = row(sql, "default")
    assert default is not None
    assert default["ttl_minutes"] == 2
    assert default["expires_at"] - default["now"] <= timedelta(seconds=120)
    assert default["expires_at"] - default["now"] > timedelta(seconds=100)

    expire(sql, "gone")
    assert await client.store.get_item(["old"], "gone") is None
    assert (await client.store.search_items(["old"]))["items"] == []
    assert (await client.store.list_namespaces())["namespaces"] == [["fresh"]]
    assert row(sql, "gone") is not None  # not swept: only hidden

    sql.execute(
        "UPDATE lg_deploy.store SET expires_at = now() + interval '10 seconds' WHERE key = 'read'"
    )
    before = expiry(sql, "read")
    await client.store.get_item(["fresh"], "read", refresh_ttl=False)
    assert expiry(sql, "read") == before
    await client.store.get_item(["fresh"], "read")
    assert expiry(sql, "read") >= before + timedelta(minutes=59)


def expiry(sql: SqlConn, key: str) -> datetime:
    """When the item expires, by psql."""
    found = row(sql, key)
    assert found is not None
    assert found["expires_at"] is not None
    expires: datetime = found["expires_at"]
    return expires


@pytest.mark.req("STORE-ITEMS", "SEC-ROLES")
async def test_the_service_role_serves_the_store_once_the_owner_made_its_tables(
    logins: Logins,
    worker_env: dict[str, str],
    db_url: str,
    start_server: StartServer,
    sdk_of: Any,
) -> None:
    """As lg_deploy_service (no DDL) before the owner's first start, the store answers 503
    store_unavailable and the server runs on; once the owner made the tables and the roles were
    applied again, the service puts and reads items."""
    service = {
        **worker_env,
        "LG_DEPLOY_DATABASE_URL": logins.url(logins.create(SERVICE)),
        "LG_DEPLOY_MIGRATE_ON_START": "false",
    }
    before = sdk_of(start_server(service))
    with pytest.raises(httpx.HTTPStatusError) as refused:
        await before.store.get_item(["a"], "k")
    assert refused.value.response.status_code == 503
    assert refused.value.response.json()["error"] == "store_unavailable"
    async with postgres_item_store(db_url, load_settings({})):
        pass  # the owner's first start creates LangGraph's store tables
    await apply_roles(db_url)
    after = sdk_of(start_server(service))
    await after.store.put_item(["a"], "k", {"v": 1})
    item = await after.store.get_item(["a"], "k")
    assert item["value"] == {"v": 1}
