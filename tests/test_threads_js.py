"""Threads driven by the official JS SDK (@langchain/langgraph-sdk) against a real serve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.js import run_js
from tests.support.servers import running_server

API_KEY = "thread-js-key"


@pytest.mark.req("THREADS-CRUD", "THREADS-SEARCH")
def test_the_js_sdk_drives_threads_end_to_end(
    worker_env: dict[str, str], tmp_path: Path, sql: psycopg.Connection[Any]
) -> None:
    """tests/js/threads.mjs: create (threadId, metadata, ifExists, graphId), get, update, search,
    count, prune and delete as the JS SDK sends them; then psql sees only the thread it kept."""
    with running_server({**worker_env, "LG_DEPLOY_API_KEY": API_KEY}, tmp_path) as server:
        done = run_js("threads.mjs", server.url, API_KEY)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "all assertions held" in done.stdout
    kept = sql.execute("SELECT status, metadata FROM lg_deploy.threads").fetchall()
    assert kept == [("idle", {"graph_id": "echo"})]
