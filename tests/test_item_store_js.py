"""The store driven by the official JS SDK (@langchain/langgraph-sdk) against a real serve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.js import run_js
from tests.support.servers import running_server

API_KEY = "store-js-key"


@pytest.mark.req("STORE-ITEMS", "STORE-SEARCH", "STORE-SDKS", "STORE-TTL")
def test_the_js_sdk_drives_the_store_end_to_end(
    worker_env: dict[str, str], tmp_path: Path, sql: psycopg.Connection[Any]
) -> None:
    """tests/js/store.mjs: putItem (with a ttl), getItem (null when missing), searchItems with a
    filter and a page, listNamespaces by prefix, suffix and maxDepth, deleteItem, and refusals,
    as the JS SDK sends them; psql then sees the items kept in lg_deploy.store."""
    with running_server({**worker_env, "LG_DEPLOY_API_KEY": API_KEY}, tmp_path) as server:
        done = run_js("store.mjs", server.url, API_KEY)
    assert done.returncode == 0, done.stderr + done.stdout
    assert done.stdout.strip().splitlines()[-1] == "store: all assertions held"
    kept = sql.execute(
        "SELECT prefix, key, ttl_minutes FROM lg_deploy.store ORDER BY prefix, key"
    ).fetchall()
    assert kept == [
        ("users.ann.notes", "expiring", 60),
        ("users.ann.notes", "n1", None),
        ("users.ann.prefs", "theme", None),
        ("users.bob.notes", "n1", None),
    ]
