"""Assistants driven by the official JS SDK (@langchain/langgraph-sdk) against a real serve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.graphs import ASSISTANT_GRAPHS, thread_graphs_env
from tests.support.js import run_js
from tests.support.servers import running_server

API_KEY = "assistants-js-key"


@pytest.mark.req("ASSISTANTS")
def test_the_js_sdk_drives_assistants_end_to_end(
    worker_env: dict[str, str], tmp_path: Path, sql: psycopg.Connection[Any]
) -> None:
    """tests/js/assistants.mjs: create (assistantId, ifExists), get, update, getVersions,
    setLatest, search (includePagination, select), count, getGraph (xray), getSchemas,
    getSubgraphs, runs with the assistant's context, delete, as the JS SDK sends them; psql
    then sees the assistant kept with its three versions and runs recording their assistant."""
    env = thread_graphs_env(
        {**worker_env, "LG_DEPLOY_API_KEY": API_KEY}, tmp_path, ASSISTANT_GRAPHS
    )
    with running_server(env, tmp_path) as server:
        done = run_js("assistants.mjs", server.url, API_KEY)
    assert done.returncode == 0, done.stderr + done.stdout
    assert done.stdout.strip().splitlines()[-1] == "assistants: all assertions held"
    kept = sql.execute(
        "SELECT a.graph_id, a.name, a.version, array_agg(v.version ORDER BY v.version)"
        " FROM lg_deploy.assistants a JOIN lg_deploy.assistant_versions v USING (assistant_id)"
        " GROUP BY 1, 2, 3"
    ).fetchall()
    assert kept == [("chat", "Ann's chat", 1, [1, 2, 3])]
    runs = sql.execute(
        "SELECT graph_id, status, assistant_id IS NOT NULL, context FROM lg_deploy.executions"
        " ORDER BY created_at"
    ).fetchall()
    assert runs == [
        ("review", "COMPLETED", True, {"editor": "eve"}),
        ("review", "COMPLETED", True, {"editor": "max"}),
        ("chat", "COMPLETED", True, {"user": "ann"}),
    ]
