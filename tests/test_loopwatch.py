"""Blocking code in an async node is noticed, named, measured, and costs no lease."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from lg_deploy.loopwatch import LoopWatch
from lg_deploy.metrics import Metrics
from lg_deploy.store.memory import InMemoryExecutionStore
from lg_deploy.worker.leases import STALLED_RENEWAL_LEASES, LeaseKeeper
from tests.support.processes import Workers
from tests.support.servers import running_server
from tests.support.waiting import wait_until

SqlConn = psycopg.Connection[Any]

BLOCKING_GRAPH = """
import time

from langgraph.func import entrypoint


@entrypoint()
async def graph(inputs):
    time.sleep(float(inputs["seconds"]))  # blocks the event loop: the mistake under test
    return {"slept": inputs["seconds"]}
"""


def block_here(seconds: float) -> None:
    """Block the calling thread, from this test file."""
    time.sleep(seconds)


@pytest.mark.req("LOOP-LAG")
async def test_blocked_loop_is_named_while_it_lasts_and_measured(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 0.8 s block: warnings while it lasts name this file and the runs; lag and stall counted."""
    metrics = Metrics()
    stalls: list[float] = []
    watch = LoopWatch(
        running=lambda: ["run-1", "run-2"],
        warn_seconds=0.2,
        metrics=metrics,
        on_stall=stalls.append,
    )
    watch.start()
    try:
        await asyncio.sleep(0.3)  # on time: nothing to say
        assert watch.stalls == 0
        with caplog.at_level(logging.WARNING, logger="lg_deploy.loopwatch"):
            block_here(0.8)
            await asyncio.sleep(0.3)  # the loop runs again: the tick that came late reports
    finally:
        await watch.stop()
    during = [r.getMessage() for r in caplog.records if "so far" in r.getMessage()]
    assert during, caplog.text
    assert f"{Path(__file__).name}:" in during[0]
    assert "in block_here" in during[0]
    assert "run-1, run-2" in during[0]
    assert any("was blocked for" in r.getMessage() for r in caplog.records)
    assert watch.stalls == 1
    assert stalls
    assert max(stalls) >= 0.2
    scrape = metrics.render().decode()
    assert "lg_deploy_event_loop_stalls_total 1.0" in scrape
    assert bucket(scrape, "0.5") < bucket(scrape, "1.0")  # one tick came 0.5 to 1 s late


def bucket(scrape: str, bound: str) -> float:
    """The loop-lag histogram's cumulative count at `bound` in a Prometheus scrape."""
    prefix = f'lg_deploy_event_loop_lag_seconds_bucket{{le="{bound}"}} '
    [line] = [line for line in scrape.splitlines() if line.startswith(prefix)]
    return float(line.removeprefix(prefix))


def keeper(renewals: list[dict[str, int]]) -> LeaseKeeper:
    """A lease keeper (5 s leases) holding one run, whose blocking renewals are recorded."""
    return LeaseKeeper(
        InMemoryExecutionStore(),
        wake=lambda: None,
        worker_id="w",
        held=lambda: {"a": 1},
        on_renewal=lambda renewal, asked: None,
        lease_seconds=5.0,
        recovery_interval_seconds=1.0,
        blocking_renewal=lambda worker_id, held, seconds: renewals.append(held),
    )


@pytest.mark.req("LOOP-LAG")
def test_leases_are_renewed_for_a_stalled_loop_but_not_for_a_wedged_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Stalled past a beat: renewed from the thread; stuck past 10 leases: left to expire."""
    renewals: list[dict[str, int]] = []
    stalled = keeper(renewals)
    stalled._renewed_at = time.monotonic() - 2.0  # the last beat was 2 s ago (beat: 1.25 s)
    stalled.renew_stalled(2.0)
    stalled.renew_stalled(2.1)  # not a beat later: once is enough
    assert renewals == [{"a": 1}]
    wedged = keeper(renewals)
    wedged._renewed_at = time.monotonic() - 60.0
    with caplog.at_level(logging.ERROR, logger="lg_deploy.worker.leases"):
        wedged.renew_stalled(STALLED_RENEWAL_LEASES * 5.0 + 1)
    assert renewals == [{"a": 1}]
    assert "no longer renewing" in caplog.text


@pytest.mark.req("LOOP-LAG", "LLD-9.1")
def test_blocking_node_longer_than_its_lease_runs_once_beside_another_worker(
    worker_env: dict[str, str], sql: SqlConn, tmp_path: Path, workers: Workers
) -> None:
    """A node blocks serve's loop 4 s on 1 s leases while another worker sweeps leases: one
    attempt, completed; the warning names the node's line and the run; /metrics counts the stall."""
    (tmp_path / "blocking.py").write_text(BLOCKING_GRAPH, encoding="utf-8")
    leases = {
        "LG_DEPLOY_LEASE_SECONDS": "1",
        "LG_DEPLOY_RECOVERY_INTERVAL_SECONDS": "0.2",
        "LG_DEPLOY_POLL_INTERVAL_SECONDS": "0.1",
    }
    # The other worker serves the built-in graphs, so it cannot take the run first; it stands by
    # with its lease sweep, which would requeue the run (and a second claim would follow) if
    # serve's lease lapsed while its loop was blocked. It registers before the run is inserted.
    workers.start(**leases)
    env = {**worker_env, **leases, "LG_DEPLOY_GRAPHS": '{"blocking": "./blocking.py:graph"}'}
    with running_server(env, tmp_path) as server:
        wait_until(lambda: registered_workers(sql) == 2, 60)
        row = sql.execute(
            "INSERT INTO lg_deploy.executions (graph_id, input)"
            " VALUES ('blocking', '{\"seconds\": 4}') RETURNING execution_id::text"
        ).fetchone()
        assert row is not None
        execution_id = row[0]
        wait_until(lambda: status(sql, execution_id) in ("COMPLETED", "FAILED"), 30)
        claims = sql.execute(
            "SELECT count(*) FROM lg_deploy.execution_events"
            " WHERE execution_id = %s AND to_status = 'RUNNING'",
            (execution_id,),
        ).fetchone()
        assert (status(sql, execution_id), claims) == ("COMPLETED", (1,))
        assert registered_workers(sql) == 2  # the other one stood by all along
        warned = blocked_warnings(server.log_lines(), execution_id)
        assert warned
        assert "blocking.py:9 in graph" in warned[0]
        scrape = httpx.get(f"{server.url}/metrics", timeout=5).text
        assert "lg_deploy_event_loop_stalls_total 1.0" in scrape


def registered_workers(sql: SqlConn) -> int:
    """How many worker processes have a row in lg_deploy.workers."""
    row = sql.execute("SELECT count(*) FROM lg_deploy.workers").fetchone()
    return int(row[0]) if row else 0


def status(sql: SqlConn, execution_id: str) -> str:
    """The execution's status, as psql shows it."""
    row = sql.execute(
        "SELECT status FROM lg_deploy.executions WHERE execution_id = %s", (execution_id,)
    ).fetchone()
    assert row is not None
    return str(row[0])


def blocked_warnings(lines: list[dict[str, Any]], execution_id: str) -> list[str]:
    """The watchdog's "blocked ... so far" messages that name this execution."""
    return [
        line["message"]
        for line in lines
        if "so far" in line.get("message", "") and execution_id in line["message"]
    ]
