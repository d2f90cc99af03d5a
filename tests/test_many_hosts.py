"""Scale-out: one API process and three separately started worker processes share one database."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from tests.support.processes import Workers, status_counts, wait_all_completed
from tests.support.servers import ServeProcess as Server
from tests.support.servers import StartServer

SqlConn = psycopg.Connection[Any]
EXECUTIONS = 300
WORKER_PROCESSES = 3
CLIENTS = 4
DRAIN_SECONDS = 60.0


def submit_sleeps(server: Server, count: int) -> list[str]:
    """POST `count` 20 ms sleeps from a few concurrent clients; their ids."""

    def submit_share(share: range) -> list[str]:
        ids = []
        with server.http() as client:
            for _ in share:
                answer = client.post(
                    "/executions", json={"graph_id": "sleep", "input": {"seconds": 0.02}}
                )
                assert answer.status_code == 202, answer.text
                ids.append(str(answer.json()["execution_id"]))
        return ids

    shares = [range(i, count, CLIENTS) for i in range(CLIENTS)]
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        return [execution_id for ids in pool.map(submit_share, shares) for execution_id in ids]


def transitions(sql: SqlConn, from_status: str, to_status: str) -> Counter[str]:
    """How many times each execution made this status change."""
    rows = sql.execute(
        "SELECT execution_id::text, count(*) FROM lg_deploy.execution_events"
        " WHERE from_status = %s AND to_status = %s GROUP BY 1",
        (from_status, to_status),
    ).fetchall()
    return Counter({row[0]: row[1] for row in rows})


@pytest.mark.req("OPS-MANY-HOSTS", "CARD-CLAIM")
def test_api_process_and_three_worker_processes_share_the_queue(
    start_server: StartServer, workers: Workers, worker_env: dict[str, str], sql: SqlConn
) -> None:
    """300 HTTP submissions all complete once each, and at least three processes ran them."""
    server = start_server(worker_env, LG_DEPLOY_WORKER_CONCURRENCY="1")
    started = [workers.start() for _ in range(WORKER_PROCESSES)]
    process_names = {server.process.pid: "serve"}
    process_names.update({w.process.pid: f"worker-{n}" for n, w in enumerate(started)})

    ids = submit_sleeps(server, EXECUTIONS)
    assert len(set(ids)) == EXECUTIONS
    wait_all_completed(sql, EXECUTIONS, DRAIN_SECONDS)

    assert status_counts(sql) == {"COMPLETED": EXECUTIONS}
    claims = transitions(sql, "QUEUED", "RUNNING")
    assert set(claims) == set(ids)
    assert set(claims.values()) == {1}, "an execution was claimed twice"
    completions = transitions(sql, "RUNNING", "COMPLETED")
    assert set(completions) == set(ids)
    assert set(completions.values()) == {1}, "an execution completed twice"
    rows = sql.execute(
        "SELECT e.worker_id, e.attempts, v.worker_id FROM lg_deploy.executions e"
        " JOIN lg_deploy.execution_events v USING (execution_id)"
        " WHERE v.from_status = 'QUEUED' AND v.to_status = 'RUNNING'"
    ).fetchall()
    assert all(row[1] == 1 for row in rows)
    assert all(row[0] == row[2] for row in rows), "completed by another worker than the claimer"
    by_process = Counter(process_names.get(int(row[0].split(":")[1]), row[0]) for row in rows)
    print(f"executions per process: {dict(sorted(by_process.items()))}")
    assert set(by_process) <= set(process_names.values()), by_process
    assert len(by_process) >= 3, f"work did not spread: {by_process}"
    for worker in started:
        worker.assert_alive()
