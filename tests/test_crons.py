"""Crons across real processes: the SDK's cron routes, ticks made exactly once by a fleet of
serve and worker processes, ticks missed across a restart, crons inserted by SQL, the CLI."""

from __future__ import annotations

import itertools
import json
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from tests.support.processes import LG_DEPLOY_COMMAND, SqlConn, Workers
from tests.support.servers import ServeProcess, running_server
from tests.support.waiting import wait_until

EVERY_SECOND = "* * * * * *"
FLEET_SECONDS = 10.0  # ten ticks, each contended by four processes
TICK_WAIT_SECONDS = 15.0


@pytest.fixture
def server(worker_env: dict[str, str], tmp_path: Path) -> Iterator[ServeProcess]:
    """`lg-deploy serve` (the example graphs) on the test database."""
    with running_server(worker_env, tmp_path) as started:
        yield started


@pytest.fixture
async def client(server: ServeProcess) -> AsyncIterator[LangGraphClient]:
    """The official Python SDK's client of the server."""
    sdk = get_client(url=server.url)
    try:
        yield sdk
    finally:
        await sdk.http.client.aclose()


def ticks_of(sql: SqlConn, cron_id: str) -> list[tuple[datetime, int]]:
    """(cron_tick, executions made for it) for each tick of the cron, oldest first."""
    rows = sql.execute(
        "SELECT cron_tick, count(*) FROM lg_deploy.executions WHERE cron_id = %s"
        " GROUP BY cron_tick ORDER BY cron_tick",
        (cron_id,),
    ).fetchall()
    return [(row[0], int(row[1])) for row in rows]


def consecutive_seconds(ticks: list[datetime]) -> bool:
    """True when the ticks are whole seconds one after another, none missing."""
    return all((b - a).total_seconds() == 1 for a, b in itertools.pairwise(ticks))


@pytest.mark.req("CRON-API", "CRON-ONCE")
async def test_the_sdk_creates_reads_changes_searches_and_deletes_a_cron_whose_ticks_run(
    client: LangGraphClient, sql: SqlConn
) -> None:
    """A thread-less every-second cron made by the SDK runs its graph each tick (executions
    carrying its cron_id, its input, its metadata); search, count and get find it; disabling it
    stops the ticks; delete removes it and leaves its executions."""
    cron = await client.crons.create(
        "echo", schedule=EVERY_SECOND, input={"n": 1}, metadata={"team": "ops"}
    )
    cron_id = cron["cron_id"]
    assert (cron["schedule"], cron["timezone"], cron["enabled"]) == (EVERY_SECOND, "UTC", True)
    wait_until(lambda: len(ticks_of(sql, cron_id)) >= 2, TICK_WAIT_SECONDS)
    row = sql.execute(
        "SELECT graph_id, input, metadata, status FROM lg_deploy.executions WHERE cron_id = %s"
        " ORDER BY cron_tick LIMIT 1",
        (cron_id,),
    ).fetchone()
    assert row is not None
    assert row[:3] == ("echo", {"n": 1}, {"team": "ops", "cron_id": cron_id})
    found = await client.crons.search(assistant_id="echo", metadata={"team": "ops"})
    assert [c["cron_id"] for c in found] == [cron_id]
    assert await client.crons.count(assistant_id="echo") == 1
    assert (await client.crons.search(thread_id=cron_id)) == []
    updated = await client.crons.update(cron_id, enabled=False)
    assert updated["enabled"] is False
    stopped = len(ticks_of(sql, cron_id))
    wait_until(lambda: _still(sql, cron_id, stopped), TICK_WAIT_SECONDS)
    await client.crons.delete(cron_id)
    assert await client.crons.count() == 0
    assert len(ticks_of(sql, cron_id)) == stopped


def _still(sql: SqlConn, cron_id: str, count: int) -> bool:
    """True once two ticks' time has passed with no new execution of the cron."""
    row = sql.execute(
        "SELECT now() - updated_at > interval '2 seconds' FROM lg_deploy.crons WHERE cron_id = %s",
        (cron_id,),
    ).fetchone()
    return bool(row and row[0]) and len(ticks_of(sql, cron_id)) == count


@pytest.mark.req("CRON-API")
async def test_a_cron_on_a_thread_runs_each_tick_on_that_thread(
    client: LangGraphClient, sql: SqlConn
) -> None:
    """create_for_thread: each tick's run is a run of that thread (thread_id set), and the
    thread's runs list shows them; a missing thread is a 404."""
    thread = await client.threads.create()
    cron = await client.crons.create_for_thread(
        thread["thread_id"], "echo", schedule=EVERY_SECOND, input={"n": 2}
    )
    assert cron["thread_id"] == thread["thread_id"]
    wait_until(lambda: len(ticks_of(sql, cron["cron_id"])) >= 1, TICK_WAIT_SECONDS)
    runs = await client.runs.list(thread["thread_id"])
    assert runs
    assert all(r["thread_id"] == thread["thread_id"] for r in runs)
    with pytest.raises(httpx.HTTPStatusError) as missing:
        await client.crons.create_for_thread(
            "00000000-0000-0000-0000-000000000000", "echo", schedule=EVERY_SECOND
        )
    assert missing.value.response.status_code == 404
    await client.crons.delete(cron["cron_id"])


@pytest.mark.req("CRON-SCHEDULE")
async def test_a_schedule_or_time_zone_the_api_cannot_read_is_a_422(
    client: LangGraphClient, sql: SqlConn
) -> None:
    """A bad schedule or zone is refused with the reason; no cron is stored."""
    for options in ({"schedule": "61 * * * *"}, {"schedule": "* * * * *", "timezone": "Mars/X"}):
        with pytest.raises(httpx.HTTPStatusError) as refused:
            await client.crons.create("echo", **options)
        assert refused.value.response.status_code == 422
    assert sql.execute("SELECT count(*) FROM lg_deploy.crons").fetchone() == (0,)


@pytest.mark.req("CRON-ONCE")
def test_two_serve_and_two_worker_processes_make_exactly_one_execution_per_tick(
    worker_env: dict[str, str], tmp_path: Path, workers: Workers, sql: SqlConn
) -> None:
    """An every-second cron ticked for 10 s by 2 serve and 2 worker processes: one execution
    per tick, no tick missing between the first and the last, every one run to COMPLETED."""
    with running_server(worker_env, tmp_path), running_server(worker_env, tmp_path):
        workers.start()
        workers.start()
        cron_id = insert_cron(sql, EVERY_SECOND)
        started = time.monotonic()
        wait_until(lambda: time.monotonic() - started > FLEET_SECONDS, FLEET_SECONDS + 5)
        sql.execute("UPDATE lg_deploy.crons SET enabled = false WHERE cron_id = %s", (cron_id,))
        ticks = ticks_of(sql, cron_id)
        wait_until(lambda: _all_completed(sql, cron_id), TICK_WAIT_SECONDS)
    assert len(ticks) >= FLEET_SECONDS - 2, ticks
    assert {count for _, count in ticks} == {1}, ticks
    assert consecutive_seconds([tick for tick, _ in ticks]), ticks


def insert_cron(sql: SqlConn, schedule: str, **columns: Any) -> str:
    """A cron of the echo graph inserted with plain SQL, as another system would; its id."""
    row = sql.execute(
        "INSERT INTO lg_deploy.crons (graph_id, schedule, input) VALUES ('echo', %s, %s)"
        " RETURNING cron_id",
        (schedule, json.dumps(columns or {"n": 0})),
    ).fetchone()
    assert row is not None
    return str(row[0])


def _all_completed(sql: SqlConn, cron_id: str) -> bool:
    row = sql.execute(
        "SELECT count(*) FILTER (WHERE status <> 'COMPLETED') FROM lg_deploy.executions"
        " WHERE cron_id = %s",
        (cron_id,),
    ).fetchone()
    return row == (0,)


@pytest.mark.req("CRON-MISSED")
def test_ticks_missed_across_a_restart_run_late_once_each_or_once_in_all(
    worker_env: dict[str, str], workers: Workers, sql: SqlConn
) -> None:
    """With every process stopped across ticks: ticks missed by less than the grace run late,
    once each, none skipped; with a 1 s grace, a 3 s outage's ticks run once in all."""
    first = workers.start()
    cron_id = insert_cron(sql, EVERY_SECOND)
    wait_until(lambda: len(ticks_of(sql, cron_id)) >= 2, TICK_WAIT_SECONDS)
    outage = _stop_across_ticks(sql, first.process, cron_id)
    second = workers.start()
    wait_until(lambda: _ticked_past(sql, cron_id, outage[-1]), TICK_WAIT_SECONDS)
    ticks = [tick for tick, _ in ticks_of(sql, cron_id)]
    assert set(outage) <= set(ticks)
    assert consecutive_seconds(ticks)
    long_outage = _stop_across_ticks(sql, second.process, cron_id, seconds=3)
    workers.start(LG_DEPLOY_CRON_MISSED_SECONDS="1")
    wait_until(lambda: _ticked_past(sql, cron_id, long_outage[-1]), TICK_WAIT_SECONDS)
    made = {tick for tick, _ in ticks_of(sql, cron_id)}
    assert len(made & set(long_outage)) <= 1
    assert {count for _, count in ticks_of(sql, cron_id)} == {1}


def _stop_across_ticks(
    sql: SqlConn, process: subprocess.Popen[bytes], cron_id: str, seconds: float = 2
) -> list[datetime]:
    """Stop the process (SIGTERM, then wait for its exit) and let `seconds` of ticks pass with
    no process up; the ticks it missed (from the cron's next_run_at), by the database clock."""
    process.terminate()
    process.wait(10)
    row = sql.execute(
        "SELECT next_run_at, next_run_at + make_interval(secs => %s) FROM lg_deploy.crons"
        " WHERE cron_id = %s",
        (seconds, cron_id),
    ).fetchone()
    assert row is not None
    first, until = row
    wait_until(lambda: _db_now(sql) > until, seconds + 5)
    missed = sql.execute(
        "SELECT generate_series(%s::timestamptz, %s::timestamptz - interval '1 second',"
        " interval '1 second')",
        (first, until),
    ).fetchall()
    return [r[0] for r in missed]


def _db_now(sql: SqlConn) -> datetime:
    row = sql.execute("SELECT now()").fetchone()
    assert row is not None
    moment: datetime = row[0]
    return moment


def _ticked_past(sql: SqlConn, cron_id: str, tick: datetime) -> bool:
    row = sql.execute(
        "SELECT next_run_at > %s FROM lg_deploy.crons WHERE cron_id = %s", (tick, cron_id)
    ).fetchone()
    return bool(row and row[0])


@pytest.mark.req("CRON-SCHEDULE", "CRON-API")
def test_crons_inserted_by_sql_tick_and_bad_ones_are_refused_or_disabled_with_the_reason(
    workers: Workers, sql: SqlConn
) -> None:
    """A row inserted by SQL gets its next tick and runs, its webhook on each tick's execution;
    an unknown time zone is refused by the database by name; a schedule no parser reads is
    disabled with the reason, never stuck."""
    workers.start()
    row = sql.execute(
        "INSERT INTO lg_deploy.crons (graph_id, schedule, webhook)"
        " VALUES ('echo', %s, 'http://hooks.example/cron') RETURNING cron_id",
        (EVERY_SECOND,),
    ).fetchone()
    assert row is not None
    good = str(row[0])
    wait_until(lambda: len(ticks_of(sql, good)) >= 1, TICK_WAIT_SECONDS)
    hooks = sql.execute(
        "SELECT DISTINCT webhook FROM lg_deploy.executions WHERE cron_id = %s", (good,)
    ).fetchall()
    assert hooks == [("http://hooks.example/cron",)]
    with pytest.raises(Exception, match="crons_timezone_known"):
        sql.execute(
            "INSERT INTO lg_deploy.crons (graph_id, schedule, timezone)"
            " VALUES ('echo', '* * * * *', 'Mars/Olympus')"
        )
    with pytest.raises(Exception, match="crons_schedule_fields"):
        insert_cron(sql, "* *")
    bad = insert_cron(sql, "61 * * * *")
    wait_until(lambda: _disabled(sql, bad), TICK_WAIT_SECONDS)
    error = sql.execute("SELECT error FROM lg_deploy.crons WHERE cron_id = %s", (bad,)).fetchone()
    assert error is not None
    assert "61 * * * *" in error[0]


def _disabled(sql: SqlConn, cron_id: str) -> bool:
    row = sql.execute(
        "SELECT NOT enabled FROM lg_deploy.crons WHERE cron_id = %s", (cron_id,)
    ).fetchone()
    return bool(row and row[0])


@pytest.mark.req("CRON-API")
def test_the_cli_creates_lists_disables_and_deletes_a_cron(
    server: ServeProcess, worker_env: dict[str, str], sql: SqlConn
) -> None:
    """`lg-deploy cron create|list|disable|delete --url` against a real server."""

    def cli(*args: str) -> Any:
        done = subprocess.run(
            [*LG_DEPLOY_COMMAND, "cron", *args, "--url", server.url],
            env=worker_env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return json.loads(done.stdout)

    made = cli("create", "echo", "--schedule", "0 9 * * 1-5", "--timezone", "Europe/Paris")
    assert (made["schedule"], made["timezone"]) == ("0 9 * * 1-5", "Europe/Paris")
    assert made["next_run_date"] is not None
    assert [c["cron_id"] for c in cli("list")] == [made["cron_id"]]
    assert cli("disable", made["cron_id"])["enabled"] is False
    cli("delete", made["cron_id"])
    assert sql.execute("SELECT count(*) FROM lg_deploy.crons").fetchone() == (0,)
