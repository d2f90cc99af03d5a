"""Deployments sharing one database: each worker claims only the graphs it serves.

Two real `lg-deploy serve` processes with different graphs on one database, rows inserted by
SQL, read back as psql would; and the claim, the views and the never-served sweep in SQL.
"""

from __future__ import annotations

import json
import signal
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from lg_deploy.db.queries import query
from lg_deploy.graphs import DEFAULT_GRAPHS
from tests.support.servers import ServeProcess, running_server
from tests.support.waiting import wait_until

SqlConn = psycopg.Connection[Any]

PROJECT_GRAPHS = """
import asyncio
import pathlib

from langgraph.func import entrypoint


@entrypoint()
async def hello(inputs):
    return {"hello": inputs.get("name", "world")}


@entrypoint()
async def gate(inputs):
    marker = pathlib.Path(inputs["marker"])
    while not marker.exists():
        await asyncio.sleep(0.02)
    return {"opened": True}
"""
PROJECT = {"hello": "./project.py:hello", "gate": "./project.py:gate"}


@pytest.fixture
def deployments(
    worker_env: dict[str, str], tmp_path: Path
) -> tuple[dict[str, str], dict[str, str], Path]:
    """Environments of two deployments on one database: the examples, and a project's graphs."""
    (tmp_path / "project.py").write_text(PROJECT_GRAPHS, encoding="utf-8")
    examples = {**worker_env}
    project = {**worker_env, "LG_DEPLOY_GRAPHS": json.dumps(PROJECT)}
    return examples, project, tmp_path


def insert(sql: SqlConn, graph_id: str, payload: dict[str, Any], *, overdue: bool = False) -> str:
    """INSERT one execution as another system would; `overdue`: due an hour ago."""
    run_at = "now() - interval '1 hour'" if overdue else "now()"
    row = sql.execute(
        "INSERT INTO lg_deploy.executions (graph_id, input, run_at)"
        f" VALUES (%s, %s::jsonb, {run_at}) RETURNING execution_id::text",
        (graph_id, json.dumps(payload)),
    ).fetchone()
    assert row is not None
    return str(row[0])


def row(sql: SqlConn, execution_id: str) -> dict[str, Any]:
    """The execution's row, as psql shows it."""
    with sql.cursor(row_factory=psycopg.rows.dict_row) as cur:
        found = cur.execute(
            "SELECT status, worker_id, attempts, error, output FROM lg_deploy.executions"
            " WHERE execution_id = %s",
            (execution_id,),
        ).fetchone()
    assert found is not None
    return found


def final(sql: SqlConn, execution_id: str) -> dict[str, Any]:
    """The row once COMPLETED or FAILED."""
    wait_until(lambda: row(sql, execution_id)["status"] in ("COMPLETED", "FAILED"))
    return row(sql, execution_id)


def worker_of(server: ServeProcess) -> str:
    """The worker id a serve process reports on /readyz."""
    worker_id: str = httpx.get(f"{server.url}/readyz", timeout=5).json()["worker_id"]
    return worker_id


def claimers(sql: SqlConn, execution_id: str) -> set[str]:
    """Every worker that ever claimed this execution, from its history."""
    rows = sql.execute(
        "SELECT DISTINCT worker_id FROM lg_deploy.execution_events"
        " WHERE execution_id = %s AND to_status = 'RUNNING'",
        (execution_id,),
    ).fetchall()
    return {worker_id for (worker_id,) in rows}


@pytest.mark.req("FLEET-CLAIM", "FLEET-UNSERVED", "SERVE-E2E")
def test_two_deployments_on_one_database_each_run_only_their_own_graphs(
    deployments: tuple[dict[str, str], dict[str, str], Path], sql: SqlConn
) -> None:
    """Examples and a project share a database: each runs its own rows; a ghost's row waits."""
    examples_env, project_env, folder = deployments
    ghost = insert(sql, "ghost", {})
    with ExitStack() as stack:
        examples = stack.enter_context(running_server(examples_env, folder))
        project = stack.enter_context(running_server(project_env, folder))
        echoes = [insert(sql, "echo", {"n": n}) for n in range(5)]
        hellos = [insert(sql, "hello", {"name": f"n{n}"}) for n in range(5)]
        for execution_id in echoes:
            done = final(sql, execution_id)
            assert (done["status"], done["worker_id"]) == ("COMPLETED", worker_of(examples))
        for n, execution_id in enumerate(hellos):
            done = final(sql, execution_id)
            assert (done["status"], done["output"]) == ("COMPLETED", {"hello": f"n{n}"})
            assert done["worker_id"] == worker_of(project)
        # Both served later rows: neither touched the ghost's.
        assert row(sql, ghost) == {
            "status": "QUEUED",
            "worker_id": None,
            "attempts": 0,
            "error": None,
            "output": None,
        }
        graphs = httpx.get(f"{examples.url}/graphs", timeout=5).json()
        assert [item["graph_id"] for item in graphs["items"]] == sorted(DEFAULT_GRAPHS)
        assert graphs["worker_id"] == worker_of(examples)
        [unserved] = graphs["unserved"]
        assert (unserved["graph_id"], unserved["queued"], unserved["due"]) == ("ghost", 1, 1)
        assert unserved["last_served_at"] is None
        assert unserved["waiting_seconds"] >= 0
        ready = httpx.get(f"{project.url}/readyz", timeout=5).json()
        assert ready["graphs"] == ["gate", "hello"]
        scrape = httpx.get(f"{project.url}/metrics", timeout=5).text
        assert 'lg_deploy_unserved_executions{graph_id="ghost"} 1.0' in scrape
        assert 'lg_deploy_unserved_wait_seconds{graph_id="ghost"}' in scrape
        live = sql.execute(
            "SELECT worker_id, graph_ids FROM lg_deploy.live_workers ORDER BY worker_id"
        ).fetchall()
        assert sorted(live) == sorted(
            [(worker_of(examples), sorted(DEFAULT_GRAPHS)), (worker_of(project), ["gate", "hello"])]
        )
        view = sql.execute("SELECT graph_id, queued FROM lg_deploy.unserved_graphs").fetchall()
        assert view == [("ghost", 1)]


@pytest.mark.req("FLEET-CLAIM", "FLEET-UNSERVED", "LLD-7.2")
def test_a_run_handed_back_at_shutdown_waits_for_a_process_that_serves_its_graph(
    deployments: tuple[dict[str, str], dict[str, str], Path], sql: SqlConn
) -> None:
    """The project stops mid-run: its row waits QUEUED, untouched by the examples, and completes
    once the project is back."""
    examples_env, project_env, folder = deployments
    project_env = {**project_env, "LG_DEPLOY_SHUTDOWN_GRACE_SECONDS": "0"}
    marker = folder / "open"
    with ExitStack() as stack:
        examples = stack.enter_context(running_server(examples_env, folder))
        with running_server(project_env, folder) as project:
            first_worker = worker_of(project)
            gated = insert(sql, "gate", {"marker": str(marker)})
            wait_until(lambda: row(sql, gated)["status"] == "RUNNING")
            project.process.send_signal(signal.SIGTERM)
            assert project.process.wait(30) == 0
        waiting = row(sql, gated)
        assert (waiting["status"], waiting["attempts"]) == ("QUEUED", 1)
        assert "stopped" in waiting["error"]
        gone = sql.execute(
            "SELECT count(*) FROM lg_deploy.workers WHERE worker_id = %s", (first_worker,)
        ).fetchone()
        assert gone == (0,)
        unserved = sql.execute(
            "SELECT graph_id, queued, last_served_at IS NOT NULL FROM lg_deploy.unserved_graphs"
        ).fetchall()
        assert unserved == [("gate", 1, True)]
        # The examples run later work meanwhile, so they had their chance at the gated row.
        later = insert(sql, "echo", {"after": "hand-back"})
        assert final(sql, later)["worker_id"] == worker_of(examples)
        assert row(sql, gated)["status"] == "QUEUED"
        assert claimers(sql, gated) == {first_worker}
        marker.touch()
        with running_server(project_env, folder) as again:
            done = final(sql, gated)
            assert (done["status"], done["output"]) == ("COMPLETED", {"opened": True})
            assert done["worker_id"] == worker_of(again) != first_worker


@pytest.mark.req("FLEET-UNSERVED")
def test_rows_for_a_graph_never_served_fail_after_unserved_graph_seconds(
    worker_env: dict[str, str], sql: SqlConn, tmp_path: Path
) -> None:
    """With LG_DEPLOY_UNSERVED_GRAPH_SECONDS, a never-served graph's overdue row fails readably;
    a row of a graph some worker served before stays QUEUED."""
    sql.execute("INSERT INTO lg_deploy.served_graphs (graph_id) VALUES ('retired')")
    ghost = insert(sql, "ghsot", {}, overdue=True)
    retired = insert(sql, "retired", {}, overdue=True)
    env = {**worker_env, "LG_DEPLOY_UNSERVED_GRAPH_SECONDS": "60", "LG_DEPLOY_LEASE_SECONDS": "1"}
    with running_server(env, tmp_path):
        failed = final(sql, ghost)
    assert failed["status"] == "FAILED"
    assert failed["attempts"] == 0
    assert "no worker has ever served graph 'ghsot'" in failed["error"]
    assert "LG_DEPLOY_UNSERVED_GRAPH_SECONDS" in failed["error"]
    assert "\n" not in failed["error"]
    # The sweep that failed the ghost's row read the retired graph's too, and left it.
    assert row(sql, retired)["status"] == "QUEUED"
    history = sql.execute(
        "SELECT from_status, to_status FROM lg_deploy.execution_events"
        " WHERE execution_id = %s ORDER BY event_id",
        (ghost,),
    ).fetchall()
    assert history == [(None, "QUEUED"), ("QUEUED", "FAILED")]


def claim(sql: SqlConn, graph_ids: list[str], limit: int = 10) -> list[tuple[str, int]]:
    """Run the claim statement once for these graphs: (graph, priority) of the rows, sorted."""
    params = {
        "limit": limit,
        "worker_id": "w-sql",
        "lease_seconds": 30,
        "now": None,
        "graph_ids": graph_ids,
    }
    with sql.cursor(row_factory=psycopg.rows.dict_row) as cur:
        rows = cur.execute(query("claim_executions"), params).fetchall()
    return sorted((found["graph_id"], found["priority"]) for found in rows)


@pytest.mark.req("FLEET-CLAIM", "CARD-CLAIM")
def test_claim_takes_only_served_graphs_in_priority_then_due_order_across_them(
    sql: SqlConn,
) -> None:
    """Other graphs' rows, even of higher priority, are never claimed; across the served graphs
    rows come highest priority first, then earliest due, whichever graph they belong to."""
    sql.execute(
        "INSERT INTO lg_deploy.executions (graph_id, input, priority, run_at) VALUES"
        " ('other', '{}', 50, now() - interval '9 minutes'),"
        " ('b', '{}', 0, now() - interval '5 minutes'),"
        " ('a', '{}', 0, now() - interval '4 minutes'),"
        " ('b', '{}', 0, now() - interval '3 minutes'),"
        " ('a', '{}', 7, now() - interval '1 minute'),"
        " ('a', '{}', 0, now() + interval '1 hour')"
    )
    assert claim(sql, ["a", "b"], limit=3) == [("a", 0), ("a", 7), ("b", 0)]
    left = sql.execute(
        "SELECT graph_id, run_at < now() FROM lg_deploy.executions WHERE status = 'QUEUED'"
        " ORDER BY run_at"
    ).fetchall()
    assert left == [("other", True), ("b", True), ("a", False)]  # b's newer row, a's later one
    assert claim(sql, ["a", "b"]) == [("b", 0)]
    assert claim(sql, ["nothing"]) == []
    assert sql.execute(
        "SELECT status, attempts FROM lg_deploy.executions WHERE graph_id = 'other'"
    ).fetchone() == ("QUEUED", 0)


def claim_buffers(sql: SqlConn) -> int:
    """Buffers one claim of the echo graph touches, by EXPLAIN (ANALYZE, BUFFERS)."""
    params = {"limit": 5, "worker_id": "w-plan", "lease_seconds": 30, "now": None}
    params["graph_ids"] = ["echo"]
    explain = "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + query("claim_executions")
    [[plan]] = sql.execute(explain, params).fetchone() or [[{}]]
    top: dict[str, int] = plan["Plan"]
    return top["Shared Hit Blocks"] + top["Shared Read Blocks"]


@pytest.mark.req("FLEET-CLAIM", "PERF-CLAIM-SCHEDULED")
def test_other_deployments_queued_rows_add_no_work_to_a_claim(sql: SqlConn) -> None:
    """50,000 QUEUED rows of another graph, at a higher priority, leave a claim as cheap."""
    insert_echoes = (
        "INSERT INTO lg_deploy.executions (graph_id, input)"
        " SELECT 'echo', '{}' FROM generate_series(1, 2)"
    )
    sql.execute(insert_echoes)
    baseline = claim_buffers(sql)
    sql.execute(
        "INSERT INTO lg_deploy.executions (graph_id, input, priority)"
        " SELECT 'other', '{}', 10 FROM generate_series(1, 50000)"
    )
    sql.execute("ANALYZE lg_deploy.executions")
    sql.execute(insert_echoes)
    touched = claim_buffers(sql)
    assert touched < baseline + 50, f"{touched} buffers against {baseline} without other rows"
    claimed = sql.execute(
        "SELECT graph_id, count(*) FROM lg_deploy.executions WHERE worker_id = 'w-plan'"
        " GROUP BY graph_id"
    ).fetchall()
    assert claimed == [("echo", 4)]


@pytest.mark.req("FLEET-UNSERVED")
def test_only_live_workers_count_as_serving_a_graph(sql: SqlConn) -> None:
    """A worker row past its expiry serves nothing: its graph's rows show as unserved."""
    sql.execute(
        "INSERT INTO lg_deploy.workers (worker_id, hostname, pid, graph_ids, concurrency,"
        " expires_at) VALUES"
        " ('alive', 'h', 1, '{echo}', 4, now() + interval '1 minute'),"
        " ('dead', 'h', 2, '{sleep}', 4, now() - interval '1 second')"
    )
    sql.execute(
        "INSERT INTO lg_deploy.executions (graph_id, input, run_at) VALUES"
        " ('echo', '{}', now()), ('sleep', '{}', now() - interval '10 seconds'),"
        " ('sleep', '{}', now() + interval '1 hour')"
    )
    unserved = sql.execute(
        "SELECT graph_id, queued, due, longest_wait >= interval '10 seconds'"
        " FROM lg_deploy.unserved_graphs"
    ).fetchall()
    assert unserved == [("sleep", 2, 1, True)]
    live = sql.execute("SELECT worker_id FROM lg_deploy.live_workers").fetchall()
    assert live == [("alive",)]
    sql.execute(query("forget_dead_workers"), {"keep_seconds": 0})
    left = sql.execute("SELECT worker_id FROM lg_deploy.workers").fetchall()
    assert left == [("alive",)]
