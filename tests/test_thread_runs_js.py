"""Runs on threads driven by the official JS SDK (@langchain/langgraph-sdk) against a real serve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.graphs import thread_graphs_env
from tests.support.js import run_js
from tests.support.servers import running_server

API_KEY = "thread-runs-js-key"


@pytest.mark.req("THREAD-RUNS", "HITL", "MULTITASK", "THREAD-STATE")
def test_the_js_sdk_drives_runs_on_threads_end_to_end(
    worker_env: dict[str, str], tmp_path: Path, sql: psycopg.Connection[Any]
) -> None:
    """The JS SDK's thread runs (wait, create, join, list, get, cancel, delete), interrupts,
    resumes and commands, state (subgraphs too), history, copy and double-texting (rollback
    too) behave as the platform's, and psql sees the runs (those rolled back gone)."""
    env = thread_graphs_env({**worker_env, "LG_DEPLOY_API_KEY": API_KEY}, tmp_path)
    with running_server(env, tmp_path) as server:
        done = run_js("thread_runs.mjs", server.url, API_KEY)
    assert done.returncode == 0, done.stderr + done.stdout
    assert done.stdout.strip().splitlines()[-1] == "thread runs: all assertions held"
    runs = sql.execute(
        "SELECT graph_id, status, error, thread_id IS NOT NULL FROM lg_deploy.executions"
        " ORDER BY created_at"
    ).fetchall()
    assert runs == [
        ("chat", "COMPLETED", None, True),
        ("chat", "COMPLETED", None, True),
        ("approval", "INTERRUPTED", None, True),
        ("approval", "COMPLETED", None, True),
        ("sleep", "COMPLETED", None, True),
        ("sleep", "COMPLETED", None, True),
        ("sleep", "FAILED", "cancelled", True),
        ("notes", "COMPLETED", None, True),
        ("notes", "COMPLETED", None, True),
        ("approval", "INTERRUPTED", None, True),
        ("approval", "INTERRUPTED", None, True),
        ("approval", "COMPLETED", None, True),
        ("chat", "COMPLETED", None, True),
        ("nested", "INTERRUPTED", None, True),
        ("nested", "COMPLETED", None, True),
    ]
    threads = sql.execute(
        "SELECT metadata ->> 'graph_id', status FROM lg_deploy.threads ORDER BY created_at"
    ).fetchall()
    assert threads == [
        ("chat", "idle"),
        ("approval", "idle"),
        ("sleep", "idle"),
        ("echo", "idle"),
        ("sleep", "idle"),
        ("notes", "idle"),
        ("approval", "idle"),
        ("chat", "idle"),
        ("nested", "idle"),
    ]
