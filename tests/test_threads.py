"""Threads: the stores on both backends, and the thread routes driven by the Python SDK."""

from __future__ import annotations

import typing
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.errors import ConflictError, NotFoundError, UnprocessableEntityError

from lg_deploy.db.pool import open_pool
from lg_deploy.http.langgraph_threads import ThreadField
from lg_deploy.threads.memory import InMemoryThreadStore
from lg_deploy.threads.models import Thread, ThreadQuery, ThreadStatus
from lg_deploy.threads.postgres import PostgresThreadStore
from lg_deploy.threads.protocol import ThreadStore
from tests.support.servers import running_server

API_KEY = "thread-test-key"


@pytest.fixture
async def threads(backend_url: str | None) -> AsyncIterator[ThreadStore]:
    """The memory thread store, or the PostgreSQL one on a fresh database."""
    if backend_url is None:
        yield InMemoryThreadStore()
        return
    pool = await open_pool(backend_url, max_size=2)
    try:
        yield PostgresThreadStore(pool)
    finally:
        await pool.close()


@pytest.fixture
def server(worker_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """A running `lg-deploy serve` with an API key; yields its URL."""
    with running_server({**worker_env, "LG_DEPLOY_API_KEY": API_KEY}, tmp_path) as started:
        yield started.url


@pytest.mark.req("THREADS-CRUD")
async def test_a_thread_is_created_read_relabelled_and_deleted(threads: ThreadStore) -> None:
    """A fresh id or the one given; a taken id gives None; metadata merges; delete and
    delete_many remove (delete_many counts only the threads that existed)."""
    fresh = await threads.create(None, {"user": "ann"})
    assert fresh is not None
    assert uuid.UUID(fresh.thread_id)
    assert (fresh.status, fresh.metadata, fresh.values, fresh.interrupts) == (
        ThreadStatus.IDLE,
        {"user": "ann"},
        None,
        {},
    )
    chosen = str(uuid.uuid4())
    made = await threads.create(chosen, {})
    assert made is not None
    assert made.thread_id == chosen
    assert await threads.create(chosen, {"other": 1}) is None
    merged = await threads.merge_metadata(fresh.thread_id, {"topic": "tax", "user": "bob"})
    assert merged is not None
    assert merged.metadata == {"user": "bob", "topic": "tax"}
    assert merged.updated_at >= fresh.updated_at
    assert await threads.get(fresh.thread_id) == merged
    spare = await threads.create(None, {})
    assert spare is not None
    assert await threads.delete_many([spare.thread_id, spare.thread_id, str(uuid.uuid4())]) == 1
    assert await threads.get(spare.thread_id) is None
    assert await threads.delete(fresh.thread_id) is True
    assert await threads.get(fresh.thread_id) is None
    assert await threads.delete(fresh.thread_id) is False
    assert await threads.merge_metadata(fresh.thread_id, {"a": 1}) is None


@pytest.mark.req("THREADS-SEARCH")
async def test_search_filters_by_contained_metadata_ids_and_orders_in_pages(
    threads: ThreadStore,
) -> None:
    """Metadata containment (nested too), ids, order by a clock or id, limit and offset; count
    agrees with the filters and ids."""
    made = []
    for number in range(5):
        metadata = {"n": number, "team": {"name": "blue" if number % 2 else "red"}}
        created = await threads.create(None, metadata)
        assert created is not None
        made.append(created.thread_id)
    blue = ThreadQuery(metadata={"team": {"name": "blue"}}, sort_by="created_at", descending=False)
    assert [t.metadata["n"] for t in await threads.search(blue)] == [1, 3]
    assert await threads.count(blue) == 2
    newest = ThreadQuery(metadata={}, limit=2, offset=1)
    assert [t.metadata["n"] for t in await threads.search(newest)] == [3, 2]
    assert await threads.count(newest) == 5
    by_id = ThreadQuery(metadata={}, sort_by="thread_id", descending=False, limit=10)
    assert [t.thread_id for t in await threads.search(by_id)] == sorted(made)
    some = ThreadQuery(metadata={}, ids=[made[0], made[4]], descending=False)
    assert [t.thread_id for t in await threads.search(some)] == [made[0], made[4]]
    assert await threads.count(some) == 2
    assert await threads.search(ThreadQuery(metadata={}, status=ThreadStatus.BUSY)) == []
    assert await threads.count(ThreadQuery(metadata={"n": 9})) == 0


@pytest.mark.req("THREADS-CRUD", "THREADS-SEARCH")
async def test_the_python_sdk_drives_threads_end_to_end(
    server: str, sql: psycopg.Connection[Any]
) -> None:
    """create (id, metadata, if_exists), get, update, search with paging headers, count,
    prune and delete, each as the SDK calls it; the rows are there for psql."""
    chosen = str(uuid.uuid4())
    async with get_client(url=server, api_key=API_KEY) as client:
        first = await client.threads.create(thread_id=chosen, metadata={"user": "ann"})
        assert (first["thread_id"], first["status"], first["metadata"]) == (
            chosen,
            "idle",
            {"user": "ann"},
        )
        again = await client.threads.create(thread_id=chosen, if_exists="do_nothing")
        assert again == first
        with pytest.raises(ConflictError):
            await client.threads.create(thread_id=chosen)
        graph = await client.threads.create(graph_id="echo")
        assert graph["metadata"] == {"graph_id": "echo"}
        assert await client.threads.get(chosen) == first
        updated = await client.threads.update(chosen, metadata={"topic": "tax"})
        assert updated["metadata"] == {"user": "ann", "topic": "tax"}
        found = await client.threads.search(metadata={"user": "ann"})
        assert [t["thread_id"] for t in found] == [chosen]
        listed = await client.threads.search(limit=1, sort_by="created_at", sort_order="asc")
        assert [t["thread_id"] for t in listed] == [chosen]
        picked = await client.threads.search(ids=[graph["thread_id"]], select=["thread_id"])
        assert picked == [{"thread_id": graph["thread_id"]}]
        assert await client.threads.count() == 2
        assert await client.threads.count(metadata={"graph_id": "echo"}) == 1
        assert await client.threads.count(status="busy") == 0
        rows = sql.execute(
            "SELECT thread_id::text, status, metadata FROM lg_deploy.threads ORDER BY created_at"
        ).fetchall()
        assert rows == [
            (chosen, "idle", {"user": "ann", "topic": "tax"}),
            (graph["thread_id"], "idle", {"graph_id": "echo"}),
        ]
        spare = await client.threads.create()
        pruned = await client.threads.prune([spare["thread_id"], str(uuid.uuid4())])
        assert pruned == {"pruned_count": 1}
        with pytest.raises(UnprocessableEntityError):
            await client.threads.prune([chosen], strategy="keep_latest")
        await client.threads.delete(chosen)
        with pytest.raises(NotFoundError):
            await client.threads.get(chosen)
        with pytest.raises(NotFoundError):
            await client.threads.delete(chosen)
        with pytest.raises(UnprocessableEntityError):
            await client.threads.search(status="sleeping")  # type: ignore[arg-type]
    headers = {"X-Api-Key": API_KEY}
    page = httpx.post(f"{server}/threads/search", json={"limit": 0}, headers=headers, timeout=5)
    assert page.status_code == 422
    one = httpx.post(f"{server}/threads/search", json={"limit": 1}, headers=headers, timeout=5)
    assert one.headers["X-Pagination-Total"] == "1"
    assert "X-Pagination-Next" not in one.headers
    minimal = httpx.patch(
        f"{server}/threads/{graph['thread_id']}",
        json={"metadata": {"x": 1}},
        headers={**headers, "Prefer": "return=minimal"},
        timeout=5,
    )
    assert (minimal.status_code, minimal.content) == (204, b"")


@pytest.mark.req("THREADS-CRUD")
def test_bad_thread_requests_get_json_errors_and_change_nothing(
    server: str, sql: psycopg.Connection[Any]
) -> None:
    """Unknown or malformed ids 404, unknown keys and NUL characters 422, unhonoured ttl 422
    not_supported; each a JSON error with the request id, and no row written."""
    headers = {"X-Api-Key": API_KEY}
    missing = str(uuid.uuid4())
    cases = [
        ("GET", f"/threads/{missing}", None, 404),
        ("GET", "/threads/not-a-uuid", None, 404),
        ("PATCH", f"/threads/{missing}", {"metadata": {"a": 1}}, 404),
        ("DELETE", f"/threads/{missing}", None, 404),
        ("POST", "/threads", {"thread_id": "nope"}, 422),
        ("POST", "/threads", {"metadata": [1, 2]}, 422),
        ("POST", "/threads", {"colour": "red"}, 422),
        ("POST", "/threads", {"if_exists": "replace"}, 422),
        ("POST", "/threads", {"ttl": 5}, 422),
        ("POST", "/threads", {"metadata": {"name": "a\u0000b"}}, 422),
        ("POST", "/threads/search", {"metadata": {"a\u0000": 1}}, 422),
        ("POST", "/threads/search", {"select": ["password"]}, 422),
        ("POST", "/threads/search", {"offset": False}, 422),
        ("POST", "/threads/search", {"limit": "5"}, 422),
        ("PUT", f"/threads/{missing}", None, 405),
    ]
    for method, path, body, status in cases:
        answer = httpx.request(method, f"{server}{path}", json=body, headers=headers, timeout=5)
        assert answer.status_code == status, (method, path, answer.text)
        error = answer.json()
        assert error["message"], error
        assert error["request_id"] == answer.headers["X-Request-ID"]
        assert "Traceback" not in answer.text
    put = httpx.put(f"{server}/threads/{missing}", headers=headers, timeout=5)
    assert sorted(put.headers["Allow"].split(", ")) == ["DELETE", "GET", "HEAD", "PATCH"]
    ttl = httpx.post(f"{server}/threads", json={"ttl": 5}, headers=headers, timeout=5).json()
    assert ttl["error"] == "not_supported"
    assert sql.execute("SELECT count(*) FROM lg_deploy.threads").fetchone() == (0,)


@pytest.mark.req("THREADS-CRUD")
def test_the_database_refuses_a_thread_row_no_api_would_write(
    sql: psycopg.Connection[Any],
) -> None:
    """A status outside idle/busy/interrupted/error, or metadata that is not an object, is refused
    by its named CHECK constraint."""
    for column, value, constraint in [
        ("status", "'sleeping'", "threads_status_known"),
        ("metadata", "'[1]'::jsonb", "threads_metadata_is_object"),
    ]:
        with pytest.raises(psycopg.errors.CheckViolation) as refused:
            sql.execute(f"INSERT INTO lg_deploy.threads ({column}) VALUES ({value})")
        assert refused.value.diag.constraint_name == constraint


@pytest.mark.req("THREADS-SEARCH")
def test_select_offers_exactly_the_fields_a_thread_has() -> None:
    """The `select` names the search accepts are the Thread resource's fields, no more, no less."""
    assert set(typing.get_args(ThreadField)) == set(Thread.model_fields)
