"""The store routes driven by the official Python SDK (langgraph-sdk) against a real `serve`,
read back with SQL from LangGraph's table lg_deploy.store; and what they refuse."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient
from starlette.testclient import TestClient

from lg_deploy.http import create_app
from lg_deploy.settings import load_settings
from tests.support.servers import running_server

SqlConn = psycopg.Connection[Any]
API_KEY = "store-sdk-key"
PREFS = ["users", "ann", "prefs"]
ANN_NOTES = ["users", "ann", "notes"]
BOB_NOTES = ["users", "bob", "notes"]
# Nested, unicode, an integer past float precision, null: a value comes back exactly as sent.
THEME = {
    "color": "dark",
    "size": 14,
    "ratio": 0.75,
    "tags": ["a", "b"],
    "nested": {"deep": [1, {"x": None, "ok": True}]},
    "big": 2**53 + 1,
    "text": "héllo ✓ 你好",
}


@pytest.fixture
def server(worker_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """A running `lg-deploy serve` keyed API_KEY; yields its URL."""
    with running_server({**worker_env, "LG_DEPLOY_API_KEY": API_KEY}, tmp_path) as started:
        yield started.url


@pytest.fixture
async def client(server: str) -> AsyncIterator[LangGraphClient]:
    """The official Python SDK's client of the server."""
    sdk = get_client(url=server, api_key=API_KEY)
    try:
        yield sdk
    finally:
        await sdk.http.client.aclose()


async def put_notes(client: LangGraphClient) -> None:
    """The theme and three notes of two users."""
    await client.store.put_item(PREFS, "theme", THEME)
    await client.store.put_item(ANN_NOTES, "n1", {"topic": "tax", "score": 5})
    await client.store.put_item(ANN_NOTES, "n2", {"topic": "cars", "score": 7})
    await client.store.put_item(BOB_NOTES, "n1", {"topic": "tax", "score": 9})


def at(answered: object) -> datetime:
    """A timestamp the API answered (the SDK's types say datetime; it is JSON text)."""
    return datetime.fromisoformat(str(answered))


def keys(found: Any) -> list[tuple[str, ...]]:
    """(namespace..., key) of each item a search found, in order."""
    return [(*item["namespace"], item["key"]) for item in found["items"]]


@pytest.mark.req("STORE-ITEMS", "STORE-SDKS")
async def test_items_round_trip_through_the_python_sdk_and_are_postgres_rows(
    client: LangGraphClient, sql: SqlConn
) -> None:
    """put_item, get_item (values exact), a second put replacing the value, delete_item, a
    missing item read as None; psql sees the rows in LangGraph's lg_deploy.store table."""
    await put_notes(client)
    item = await client.store.get_item(PREFS, "theme")
    assert item["value"] == THEME
    assert (item["namespace"], item["key"]) == (PREFS, "theme")
    assert item["created_at"] == item["updated_at"]
    await client.store.put_item(PREFS, "theme", {"color": "light"})
    replaced = await client.store.get_item(PREFS, "theme")
    assert replaced["value"] == {"color": "light"}
    assert replaced["created_at"] == item["created_at"]
    assert at(replaced["updated_at"]) > at(item["updated_at"])
    rows = sql.execute("SELECT prefix, key, value FROM lg_deploy.store ORDER BY 1, 2").fetchall()
    assert rows == [
        ("users.ann.notes", "n1", {"topic": "tax", "score": 5}),
        ("users.ann.notes", "n2", {"topic": "cars", "score": 7}),
        ("users.ann.prefs", "theme", {"color": "light"}),
        ("users.bob.notes", "n1", {"topic": "tax", "score": 9}),
    ]
    await client.store.delete_item(ANN_NOTES, "n2")
    await client.store.delete_item(ANN_NOTES, "n2")  # gone already: still 204
    assert await client.store.get_item(ANN_NOTES, "n2") is None
    assert await client.store.get_item(["nobody"], "nothing") is None
    left = sql.execute("SELECT count(*) FROM lg_deploy.store WHERE key = 'n2'").fetchone()
    assert left == (0,)


@pytest.mark.req("STORE-SEARCH", "STORE-SDKS")
async def test_search_filters_pages_and_lists_namespaces_through_the_python_sdk(
    client: LangGraphClient,
) -> None:
    """search_items by prefix, plain and $ne filters, limit and offset (latest change first; a
    query is ignored without an index); list_namespaces by prefix, suffix, max_depth, page."""
    await put_notes(client)
    await client.store.put_item(ANN_NOTES, "n1", {"topic": "tax", "score": 6})  # latest change
    taxes = await client.store.search_items(["users"], filter={"topic": "tax"})
    assert keys(taxes) == [("users", "ann", "notes", "n1"), ("users", "bob", "notes", "n1")]
    assert taxes["items"][0]["value"] == {"topic": "tax", "score": 6}
    assert taxes["items"][0]["score"] is None
    others = await client.store.search_items(["users"], filter={"topic": {"$ne": "tax"}})
    assert keys(others) == [("users", "ann", "notes", "n2")]
    ann = await client.store.search_items(["users", "ann"], limit=2, offset=1)
    assert keys(ann) == [("users", "ann", "notes", "n2"), ("users", "ann", "prefs", "theme")]
    asked = await client.store.search_items(["users", "ann"], query="anything at all", limit=2)
    assert keys(asked) == keys(await client.store.search_items(["users", "ann"], limit=2))
    assert (await client.store.search_items(["nobody"]))["items"] == []

    every = await client.store.list_namespaces()
    assert every["namespaces"] == [ANN_NOTES, PREFS, BOB_NOTES]
    assert (await client.store.list_namespaces(prefix=["users", "ann"]))["namespaces"] == [
        ANN_NOTES,
        PREFS,
    ]
    notes = await client.store.list_namespaces(suffix=["notes"])
    assert notes["namespaces"] == [ANN_NOTES, BOB_NOTES]
    users = await client.store.list_namespaces(max_depth=2)
    assert users["namespaces"] == [["users", "ann"], ["users", "bob"]]
    page = await client.store.list_namespaces(limit=1, offset=1)
    assert page["namespaces"] == [PREFS]


# (method, params or body, the field the 422 names)
REFUSED: list[tuple[str, str, dict[str, Any], str]] = [
    ("PUT", "/store/items", {"namespace": [], "key": "k", "value": {}}, "namespace"),
    ("PUT", "/store/items", {"namespace": ["a.b"], "key": "k", "value": {}}, "namespace.0"),
    ("PUT", "/store/items", {"namespace": ["langgraph"], "key": "k", "value": {}}, "namespace"),
    ("PUT", "/store/items", {"namespace": ["a"], "key": "", "value": {}}, "key"),
    ("PUT", "/store/items", {"namespace": ["a"], "key": "k", "value": [1]}, "value"),
    ("PUT", "/store/items", {"namespace": ["a"], "key": "k", "value": {"t": "\u0000"}}, "value"),
    ("PUT", "/store/items", {"namespace": ["a"], "key": "k", "value": {}, "ttl": "5"}, "ttl"),
    ("PUT", "/store/items", {"namespace": ["a"], "key": "k", "value": {}, "ttl": 0}, "ttl"),
    ("PUT", "/store/items", {"namespace": ["a"], "key": "k", "value": {}, "extra": 1}, "extra"),
    ("PUT", "/store/items", {"namespace": ["a"], "key": "k" * 129, "value": {}}, "key"),
    ("DELETE", "/store/items", {"namespace": ["a"]}, "key"),
    ("GET", "/store/items", {"namespace": "a..b", "key": "k"}, "namespace"),
    ("GET", "/store/items", {"namespace": "a"}, "key"),
    ("GET", "/store/items", {"namespace": "a", "key": "k", "refresh_ttl": "yes"}, "refresh_ttl"),
    ("POST", "/store/items/search", {"filter": {"x": {"$in": [1]}}}, "filter.x.Comparison.$in"),
    ("POST", "/store/items/search", {"limit": 0}, "limit"),
    ("POST", "/store/items/search", {"refresh_ttl": 1}, "refresh_ttl"),
    ("POST", "/store/namespaces", {"max_depth": 0}, "max_depth"),
    ("POST", "/store/namespaces", {"prefix": [""]}, "prefix.0"),
]  # fmt: skip


@pytest.mark.req("STORE-ERRORS")
async def test_bad_store_requests_are_422_json_naming_the_field_with_the_request_id(
    server: str, client: LangGraphClient, sql: SqlConn
) -> None:
    """Each bad body or query: 422 invalid_request naming the field, with the request id in body
    and header; the SDK raises on one; nothing was stored."""
    with httpx.Client(base_url=server, headers={"X-Api-Key": API_KEY}, timeout=30) as http:
        for method, path, sent, field in REFUSED:
            if method == "GET":
                answer = http.request(method, path, params=sent)
            else:
                answer = http.request(method, path, json=sent)
            assert answer.status_code == 422, (method, sent, answer.text)
            body = answer.json()
            assert body["error"] == "invalid_request", body
            assert body["details"][0]["field"] == field, (sent, body)
            assert body["request_id"] == answer.headers["X-Request-ID"] != ""
    with pytest.raises(httpx.HTTPStatusError) as refused:
        await client.store.put_item(["langgraph"], "k", {"v": 1})
    assert refused.value.response.status_code == 422
    assert sql.execute("SELECT count(*) FROM lg_deploy.store").fetchone() == (0,)


@pytest.mark.req("STORE-ITEMS", "STORE-ERRORS")
def test_the_memory_backend_serves_the_store_from_an_in_memory_store() -> None:
    """With LG_DEPLOY_BACKEND=memory the same routes work (langgraph's InMemoryStore); a TTL,
    which it cannot keep, is refused as not_supported."""
    environ = {"LG_DEPLOY_BACKEND": "memory", "LG_DEPLOY_SHUTDOWN_GRACE_SECONDS": "0"}
    settings = load_settings(environ)
    with TestClient(create_app(settings)) as http:
        item = {"namespace": ["a", "b"], "key": "k", "value": {"n": 1}}
        assert http.put("/store/items", json=item).status_code == 204
        got = http.get("/store/items", params={"namespace": "a.b", "key": "k"}).json()
        assert (got["namespace"], got["value"]) == (["a", "b"], {"n": 1})
        found = http.post("/store/items/search", json={"filter": {"n": 1}}).json()
        assert [i["key"] for i in found["items"]] == ["k"]
        assert http.post("/store/namespaces", json={}).json() == {"namespaces": [["a", "b"]]}
        refused = http.put("/store/items", json={**item, "ttl": 5})
        assert (refused.status_code, refused.json()["error"]) == (422, "not_supported")
        gone = {"namespace": ["a", "b"], "key": "k"}
        assert http.request("DELETE", "/store/items", json=gone).status_code == 204
        assert http.get("/store/items", params={"namespace": "a.b", "key": "k"}).json() is None
