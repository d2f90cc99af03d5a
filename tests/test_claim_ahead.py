"""Claiming ahead: rows claimed before a slot asks are paced, renewed, cancellable, released."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from lg_deploy.queue.postgres import PostgresClaimer
from lg_deploy.store.postgres import PostgresExecutionStore
from lg_deploy.worker import ExecutionWorker
from lg_deploy.worker.intake import Intake
from lg_deploy.worker.pace import AHEAD_SECONDS, WINDOW_SECONDS, ClaimPace
from tests.support.backends import make_intake, make_worker
from tests.support.graphs import TEST_GRAPHS, Gate
from tests.support.sql import count_running, insert_rows
from tests.support.waiting import wait_until_async

Sql = psycopg.Connection[Any]
LEASE_SECONDS = 1.2
WAIT_SECONDS = 10.0


class FakeClock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class SteadyPace(ClaimPace):
    """A pace that asks for `rows` ahead, whatever the rate (the test changes `rows`)."""

    def __init__(self, rows: int) -> None:
        super().__init__(rows)
        self.rows = rows

    def ahead(self) -> int:
        """Always `rows`."""
        return self.rows


@pytest.mark.req("PERF-CLAIM-AHEAD")
def test_the_pace_claims_ahead_what_starts_in_the_next_20_ms() -> None:
    """1,000 starts in the last second: 20 ahead (capped by `most`); none before any start."""
    clock = FakeClock()
    pace = ClaimPace(most=64, clock=clock)
    assert pace.ahead() == 0
    for _ in range(1000):
        pace.started()
        clock.now += 0.0009
    assert pace.starts_per_second() == pytest.approx(1000, rel=0.01)
    assert pace.ahead() == int(1000 * AHEAD_SECONDS) == 20
    assert ClaimPace(most=5, clock=clock).ahead() == 0  # a new pace has seen no starts
    capped = ClaimPace(most=5, clock=clock)
    for _ in range(1000):
        capped.started()
    assert capped.ahead() == 5
    assert ClaimPace(most=0, clock=clock).ahead() == 0


@pytest.mark.req("PERF-CLAIM-AHEAD")
def test_the_pace_forgets_starts_older_than_its_window() -> None:
    """Starts fade out over the next window and are gone after two: long graphs claim none."""
    clock = FakeClock()
    pace = ClaimPace(most=1000, clock=clock)
    for _ in range(2000):
        pace.started()
    clock.now += WINDOW_SECONDS  # the 2,000 are the previous bucket now, fading
    assert pace.starts_per_second() == pytest.approx(2000)
    clock.now += WINDOW_SECONDS / 2
    assert pace.starts_per_second() == pytest.approx(1000)
    clock.now += 2 * WINDOW_SECONDS
    assert pace.starts_per_second() == 0
    assert pace.ahead() == 0


@pytest.mark.req("PERF-CLAIM-AHEAD")
def test_a_negative_most_is_refused() -> None:
    """`most` below 0 is a programming error."""
    with pytest.raises(ValueError, match="0 or more"):
        ClaimPace(most=-1)


@pytest.fixture
async def queues(pool: AsyncConnectionPool[Any]) -> AsyncIterator[list[Intake]]:
    """Intakes the test makes, closed (with their claimers) at teardown."""
    made: list[Intake] = []
    yield made
    for queue in made:
        await queue.close()
        await queue.claimer.close()


def queue_with(
    pool: AsyncConnectionPool[Any], made: list[Intake], pace: ClaimPace, hold_seconds: float = 30.0
) -> Intake:
    """An intake of worker w1 with this pace, short leases and a 0.1 s poll."""
    claimer = PostgresClaimer(
        pool, worker_id="w1", graph_ids=TEST_GRAPHS, lease_seconds=LEASE_SECONDS
    )
    queue = make_intake(claimer, poll_interval_seconds=0.1, hold_seconds=hold_seconds, pace=pace)
    made.append(queue)
    return queue


@dataclass
class Taken:
    """A queue over new rows, after its first dequeue."""

    ids: list[str]
    queue: Intake
    first: str


TakeFirst = Callable[..., Awaitable[Taken]]


@pytest.fixture
def take_first(pool: AsyncConnectionPool[Any], sql: Sql, queues: list[Intake]) -> TakeFirst:
    """Inserts `rows`, makes a queue with this pace (and options), and dequeues once."""

    async def take(rows: int, pace: ClaimPace, **options: Any) -> Taken:
        ids = insert_rows(sql, rows)
        queue = queue_with(pool, queues, pace, **options)
        first = await asyncio.wait_for(queue.dequeue(), WAIT_SECONDS)
        return Taken(ids, queue, first.execution_id)

    return take


def statuses(sql: Sql, ids: list[str]) -> dict[str, tuple[str, int, str | None]]:
    """id -> (status, attempts, error) as psql shows them."""
    rows = sql.execute(
        "SELECT execution_id::text, status, attempts, error FROM lg_deploy.executions"
        " WHERE execution_id = ANY(%s::uuid[])",
        (ids,),
    ).fetchall()
    return {row[0]: (row[1], row[2], row[3]) for row in rows}


@pytest.mark.req("PERF-CLAIM-AHEAD")
async def test_at_a_fast_pace_rows_are_claimed_ahead_in_batches(
    sql: Sql, take_first: TakeFirst
) -> None:
    """One caller, 6 ahead: the claim takes 7; the next claim waits until only 3 are left."""
    taken = await take_first(30, SteadyPace(6))
    queue = taken.queue
    assert taken.first in taken.ids
    assert count_running(sql) == 7
    assert sorted(queue.held().values()) == [1] * 6
    for _ in range(2):  # 5 then 4 left ahead: more than half, no claim
        await queue.dequeue()
    await asyncio.sleep(0.2)
    assert count_running(sql) == 7
    await queue.dequeue()  # 3 left: the claim tops them up to 6 ahead
    await wait_until_async(lambda: count_running(sql) == 10, WAIT_SECONDS)
    assert len(queue.held()) == 6


@pytest.mark.req("PERF-CLAIM-AHEAD")
async def test_rows_claimed_ahead_that_no_slot_takes_are_handed_back(
    sql: Sql, take_first: TakeFirst
) -> None:
    """After the hold time they are QUEUED again, the claim uncounted, for any worker to take."""
    pace = SteadyPace(4)
    taken = await take_first(5, pace, hold_seconds=0.3)
    ids, queue, first = taken.ids, taken.queue, taken.first
    pace.rows = 0  # the pace has dropped: nothing is claimed ahead again
    assert count_running(sql) == 5
    await wait_until_async(lambda: count_running(sql) == 1, WAIT_SECONDS)
    assert queue.held() == {}
    back = {i: got for i, got in statuses(sql, ids).items() if i != first}
    assert set(back.values()) == {("QUEUED", 0, "released unstarted by worker w1")}


@dataclass
class Busy:
    """A started one-slot worker w1 whose slot runs a gated graph, with rows held ahead."""

    ids: list[str]
    graphs: Gate
    queue: Intake
    worker: ExecutionWorker
    store: PostgresExecutionStore


StartBusy = Callable[[int, int], Awaitable[Busy]]


@pytest.fixture
async def start_busy(
    pool: AsyncConnectionPool[Any], sql: Sql, queues: list[Intake]
) -> AsyncIterator[StartBusy]:
    """Makes Busy workers over `rows` new rows with `ahead` claimed ahead; stops them after."""
    made: list[ExecutionWorker] = []

    async def start(rows: int, ahead: int) -> Busy:
        ids = insert_rows(sql, rows)
        graphs = Gate("w1")
        queue = queue_with(pool, queues, SteadyPace(ahead))
        store = PostgresExecutionStore(pool)
        worker = make_worker(
            store,
            graphs,
            intake=queue,
            concurrency=1,
            lease_seconds=LEASE_SECONDS,
            recovery_interval_seconds=0.3,
        )
        made.append(worker)
        await worker.start()
        await wait_until_async(lambda: graphs.started == 1, WAIT_SECONDS)
        assert len(queue.held()) == ahead
        return Busy(ids, graphs, queue, worker, store)

    yield start
    for worker in made:
        await worker.stop()


@pytest.mark.req("PERF-CLAIM-AHEAD")
async def test_rows_claimed_ahead_keep_their_leases_while_the_slot_is_busy(
    sql: Sql, start_busy: StartBusy
) -> None:
    """Three leases long, the worker renews the rows it holds ahead; each then runs once."""
    busy = await start_busy(3, 2)
    await asyncio.sleep(3 * LEASE_SECONDS)
    assert set(statuses(sql, busy.ids).values()) == {("RUNNING", 1, None)}  # none recovered
    busy.graphs.gate.set()
    await wait_until_async(
        lambda: set(statuses(sql, busy.ids).values()) == {("COMPLETED", 1, None)}, WAIT_SECONDS
    )
    assert busy.graphs.started == 3


@pytest.mark.req("PERF-CLAIM-AHEAD")
async def test_a_cancelled_row_claimed_ahead_fails_without_running(
    sql: Sql, start_busy: StartBusy
) -> None:
    """A cancel of a row held ahead makes it FAILED "cancelled" at the next renewal, unrun."""
    busy = await start_busy(3, 2)
    victim = next(iter(busy.queue.held()))
    await busy.store.request_cancel(victim)
    busy.worker.check_cancellations()
    await wait_until_async(lambda: statuses(sql, [victim])[victim][0] == "FAILED", WAIT_SECONDS)
    assert statuses(sql, [victim])[victim] == ("FAILED", 0, "cancelled")
    busy.graphs.gate.set()
    others = [i for i in busy.ids if i != victim]
    await wait_until_async(
        lambda: {got[0] for got in statuses(sql, others).values()} == {"COMPLETED"}, WAIT_SECONDS
    )
    assert busy.graphs.started == 2


@pytest.mark.req("PERF-CLAIM-AHEAD")
async def test_a_row_claimed_ahead_whose_lease_is_lost_is_not_run_on_that_claim(
    sql: Sql, start_busy: StartBusy, caplog: pytest.LogCaptureFixture
) -> None:
    """A renewal that no longer holds it drops it; it runs once, on its next claim."""
    busy = await start_busy(2, 1)
    (taken,) = busy.queue.held()
    with caplog.at_level(logging.WARNING, logger="lg_deploy.worker"):
        # As a recovery elsewhere would: the row is QUEUED again, its attempt spent.
        sql.execute(
            "UPDATE lg_deploy.executions SET status = 'QUEUED', worker_id = NULL,"
            " lease_expires_at = NULL WHERE execution_id = %s",
            (taken,),
        )
        await wait_until_async(lambda: busy.queue.held() == {}, WAIT_SECONDS)
    assert f"lease of claimed execution {taken} lost before it started" in caplog.text
    busy.graphs.gate.set()
    await wait_until_async(lambda: statuses(sql, [taken])[taken][0] == "COMPLETED", WAIT_SECONDS)
    assert statuses(sql, [taken])[taken] == ("COMPLETED", 2, None)
    assert busy.graphs.started == 2


@pytest.mark.req("PERF-CLAIM-AHEAD")
async def test_a_lost_lease_report_does_not_drop_a_row_claimed_after_it_was_asked(
    take_first: TakeFirst,
) -> None:
    """A renewal asked before the row's claim cannot speak for that claim: it stays held."""
    asked_at = time.monotonic()
    queue = (await take_first(2, SteadyPace(1))).queue
    (ahead,) = queue.held()
    assert not queue.forget(ahead, claimed_before=asked_at)
    assert list(queue.held()) == [ahead]
    assert queue.forget(ahead, claimed_before=time.monotonic())
    assert queue.held() == {}


@pytest.mark.req("PERF-CLAIM-AHEAD")
async def test_closing_hands_back_rows_claimed_ahead_and_fails_cancelled_ones(
    sql: Sql, take_first: TakeFirst
) -> None:
    """On close: untaken rows are QUEUED again uncounted; one asked to stop is FAILED instead."""
    taken = await take_first(4, SteadyPace(3))
    ids, queue, first = taken.ids, taken.queue, taken.first
    ahead = list(queue.held())
    sql.execute(
        "UPDATE lg_deploy.executions SET cancel_requested_at = now() WHERE execution_id = %s",
        (ahead[0],),
    )
    await queue.close()
    got = statuses(sql, ids)
    assert got[first] == ("RUNNING", 1, None)
    assert got[ahead[0]] == ("FAILED", 0, "cancelled")
    assert {got[i] for i in ahead[1:]} == {("QUEUED", 0, "released unstarted by worker w1")}
