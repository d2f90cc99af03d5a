"""Threads expire: LG_DEPLOY_THREAD_TTL_SECONDS deletes threads left unchanged that long, with
their runs and checkpoints, in the background; a thread with a run in flight stays."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support.graphs import thread_graphs_env
from tests.support.processes import SqlConn
from tests.support.servers import running_server
from tests.support.waiting import wait_until

WAIT_SECONDS = 30.0


def thread_rows(sql: SqlConn, thread_id: str) -> tuple[int, int, int]:
    """(threads, executions, checkpoints) rows of the thread, as psql counts them."""
    row = sql.execute(
        "SELECT (SELECT count(*) FROM lg_deploy.threads WHERE thread_id = %(t)s),"
        " (SELECT count(*) FROM lg_deploy.executions WHERE thread_id = %(t)s),"
        " (SELECT count(*) FROM lg_deploy.checkpoints WHERE thread_id = %(t)s::text)",
        {"t": thread_id},
    ).fetchone()
    assert row is not None
    return (int(row[0]), int(row[1]), int(row[2]))


@pytest.mark.req("THREAD-TTL")
def test_threads_unchanged_past_their_ttl_go_with_their_runs_and_checkpoints(
    worker_env: dict[str, str], tmp_path: Path, sql: SqlConn
) -> None:
    """A finished thread is deleted with its run and checkpoints once its TTL passes; a thread
    whose run is still running is kept."""
    env = thread_graphs_env(
        {
            **worker_env,
            "LG_DEPLOY_THREAD_TTL_SECONDS": "2",
            "LG_DEPLOY_RETENTION_INTERVAL_SECONDS": "0.5",
        },
        tmp_path,
    )
    with running_server(env, tmp_path) as server, server.http() as api:
        done = api.post("/threads", json={}).json()["thread_id"]
        answer = api.post(
            f"/threads/{done}/runs/wait", json={"assistant_id": "notes", "input": {"note": "a"}}
        )
        assert answer.status_code == 200, answer.text
        busy = api.post("/threads", json={}).json()["thread_id"]
        body = {"assistant_id": "notes", "input": {"note": "b", "seconds": 600}}
        assert api.post(f"/threads/{busy}/runs", json=body).status_code == 200
        assert thread_rows(sql, done)[0:2] == (1, 1)
        assert thread_rows(sql, done)[2] > 0
        wait_until(lambda: thread_rows(sql, done) == (0, 0, 0), WAIT_SECONDS)
        assert thread_rows(sql, busy)[0] == 1
        assert _status(api, busy) == "busy"
        assert any(
            line.get("message") == "retention deleted 1 expired threads"
            for line in server.log_lines()
        )


def _status(api: httpx.Client, thread_id: str) -> str:
    status: str = api.get(f"/threads/{thread_id}").json()["status"]
    return status
