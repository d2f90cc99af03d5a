"""PostgresClaimer and its intake: SKIP LOCKED claims, NOTIFY wake-up, polls, LISTEN reconnect."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from lg_deploy.db.listener import Listener
from lg_deploy.db.pool import open_pool
from lg_deploy.db.queries import query
from lg_deploy.models import ExecutionState
from lg_deploy.queue.postgres import PostgresClaimer
from lg_deploy.worker.intake import Intake
from tests.support.backends import make_intake
from tests.support.graphs import TEST_GRAPHS
from tests.support.sql import count_running, insert_rows, scalar
from tests.support.waiting import wait_until_async

WAIT_SECONDS = 10.0
SETTLE_SECONDS = 0.2  # long enough for a waiting claimer's first (empty) claim to finish
LEASE_SECONDS = 12.5

Sql = psycopg.Connection[Any]


class ClaimQueue:
    """An intake over a PostgresClaimer, seen as ids: `dequeue` gives the id, `claimed` its row."""

    def __init__(self, intake: Intake, claimer: PostgresClaimer) -> None:
        self.intake = intake
        self.claimer = claimer
        self._rows: dict[str, ExecutionState] = {}

    async def dequeue(self) -> str:
        """The id of the next row claimed for this worker."""
        state = await self.intake.dequeue()
        self._rows[state.execution_id] = state
        return state.execution_id

    def claimed(self, execution_id: str) -> ExecutionState | None:
        """The row as the claim stored it, for a dequeued id."""
        return self._rows.get(execution_id)

    @property
    def claimed_total(self) -> int:
        """Rows claimed so far."""
        return self.claimer.claimed_total

    async def close(self) -> None:
        """Release what no caller took, stop listening."""
        await self.intake.close()
        await self.claimer.close()


MakeQueue = Callable[..., ClaimQueue]


@pytest.fixture
async def make_queue(pool: AsyncConnectionPool[Any]) -> AsyncIterator[MakeQueue]:
    """Builds claim queues (worker w1, poll 0.2 s by default); closes them all after."""
    made: list[ClaimQueue] = []

    def make(
        *,
        worker_id: str = "w1",
        graph_ids: Any = TEST_GRAPHS,
        poll_interval_seconds: float = 0.2,
        listener: Listener | None = None,
        pool: AsyncConnectionPool[Any] = pool,
        lease_seconds: float = 30.0,
    ) -> ClaimQueue:
        claimer = PostgresClaimer(
            pool,
            worker_id=worker_id,
            graph_ids=graph_ids,
            lease_seconds=lease_seconds,
            listener=listener,
        )
        queue = ClaimQueue(
            make_intake(claimer, poll_interval_seconds=poll_interval_seconds), claimer
        )
        made.append(queue)
        return queue

    yield make
    for queue in reversed(made):
        await queue.close()


@pytest.fixture
async def listener(db_url: str) -> AsyncIterator[Listener]:
    """A started Listener on the test database."""
    listening = Listener(db_url)
    await listening.start()
    assert listening.connected
    try:
        yield listening
    finally:
        await listening.stop()


async def arrives_within(seconds: float, task: asyncio.Task[str]) -> str:
    """The task's id, failing the test unless it arrives within `seconds`."""
    return await asyncio.wait_for(task, seconds)


@pytest.mark.req("CARD-CLAIM", "LLD-5.1")
async def test_a_dequeued_row_is_running_for_this_worker(make_queue: MakeQueue, sql: Sql) -> None:
    """A dequeued id's row is RUNNING for this worker, attempt 1, leased on the database clock."""
    queue = make_queue(lease_seconds=LEASE_SECONDS)
    [inserted] = insert_rows(sql)
    execution_id = await asyncio.wait_for(queue.dequeue(), WAIT_SECONDS)
    assert execution_id == inserted
    row = sql.execute(
        "SELECT status, worker_id, attempts, lease_expires_at - updated_at, now() - started_at"
        " FROM lg_deploy.executions WHERE execution_id = %s",
        (execution_id,),
    ).fetchone()
    assert row is not None
    status, worker_id, attempts, lease, age = row
    assert (status, worker_id, attempts) == ("RUNNING", "w1", 1)
    assert lease == timedelta(seconds=LEASE_SECONDS)
    assert timedelta(0) <= age < timedelta(seconds=5)
    events = sql.execute(
        "SELECT from_status, to_status, worker_id, attempt FROM lg_deploy.execution_events"
        " WHERE execution_id = %s ORDER BY event_id",
        (execution_id,),
    ).fetchall()
    assert events == [(None, "QUEUED", None, 0), ("QUEUED", "RUNNING", "w1", 1)]
    assert queue.claimed_total == 1


@pytest.mark.req("CARD-CLAIM", "SEC-BAD-ROWS")
async def test_a_row_the_model_would_refuse_does_not_sink_its_claim(
    make_queue: MakeQueue, sql: Sql
) -> None:
    """Rows with idempotency keys the API refuses ('' and 300 characters) are claimed as well."""
    keys = ["", "k" * 300]
    odd = [
        scalar(
            sql,
            "INSERT INTO lg_deploy.executions (graph_id, input, idempotency_key)"
            " VALUES ('echo', '{}', %s) RETURNING execution_id::text",
            key,
        )
        for key in keys
    ]
    plain = insert_rows(sql, 3)
    queue = make_queue()
    ids = await asyncio.gather(*(asyncio.wait_for(queue.dequeue(), WAIT_SECONDS) for _ in "abcde"))
    assert sorted(ids) == sorted(odd + plain)
    assert [queue.claimed(i).idempotency_key for i in odd] == keys  # type: ignore[union-attr]
    assert count_running(sql) == 5


@pytest.mark.req("CARD-CLAIM", "LLD-10")
async def test_claims_are_sized_to_the_waiting_callers(make_queue: MakeQueue, sql: Sql) -> None:
    """With 10 due rows and 3 waiting callers the queue claims 3 rows, in one statement."""
    queue = make_queue()
    insert_rows(sql, 10)
    ids = await asyncio.gather(*(asyncio.wait_for(queue.dequeue(), WAIT_SECONDS) for _ in "abc"))
    await asyncio.sleep(0.5)  # more than two poll intervals: an over-claim would show by now
    assert count_running(sql) == 3
    assert queue.claimed_total == 3
    running = sql.execute(
        "SELECT execution_id::text FROM lg_deploy.executions WHERE status = 'RUNNING'"
    ).fetchall()
    assert {row[0] for row in running} == set(ids)
    claim_times = scalar(
        sql,
        "SELECT count(DISTINCT at) FROM lg_deploy.execution_events WHERE to_status = 'RUNNING'",
    )
    assert claim_times == 1


@pytest.mark.req("CARD-CLAIM", "LLD-5.1")
async def test_highest_priority_then_oldest_is_claimed_first(
    make_queue: MakeQueue, sql: Sql
) -> None:
    """Rows inserted in mixed order come out by priority (highest first), then by run_at."""
    rows = sql.execute(
        "INSERT INTO lg_deploy.executions (graph_id, input, priority, run_at) VALUES"
        " ('echo', '{}', 0, now() - interval '50 s'), ('echo', '{}', -5, now() - interval '60 s'),"
        " ('echo', '{}', 5, now() - interval '10 s'), ('echo', '{}', 0, now() - interval '20 s'),"
        " ('echo', '{}', 5, now() - interval '40 s') RETURNING execution_id::text"
    ).fetchall()
    p0_old, m5, p5_new, p0_new, p5_old = (row[0] for row in rows)
    queue = make_queue()
    order = [await asyncio.wait_for(queue.dequeue(), WAIT_SECONDS) for _ in rows]
    assert order == [p5_old, p5_new, p0_old, p0_new, m5]


@pytest.mark.req("CARD-CLAIM", "LLD-5.1")
async def test_a_row_is_not_claimed_before_its_run_at(make_queue: MakeQueue, sql: Sql) -> None:
    """A row whose run_at is one second away stays QUEUED until then and is claimed once due."""
    execution_id = scalar(
        sql,
        "INSERT INTO lg_deploy.executions (graph_id, input, run_at)"
        " VALUES ('echo', '{}', now() + interval '1 second') RETURNING execution_id::text",
    )
    queue = make_queue()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(queue.dequeue(), 0.5)
    assert count_running(sql) == 0
    assert await asyncio.wait_for(queue.dequeue(), 3.0) == execution_id
    early = scalar(
        sql,
        "SELECT started_at < run_at FROM lg_deploy.executions WHERE execution_id = %s",
        execution_id,
    )
    assert early is False


@pytest.mark.req("CARD-CLAIM", "LLD-10")
async def test_two_workers_claim_every_row_exactly_once(
    make_queue: MakeQueue, listener: Listener, db_url: str, sql: Sql
) -> None:
    """Two queues with 4 dequeuers each share 200 rows of one INSERT: each row is claimed once."""
    other_pool = await open_pool(db_url, max_size=5)
    queues = {
        "w1": make_queue(listener=listener),
        "w2": make_queue(worker_id="w2", listener=listener, pool=other_pool),
    }
    got: dict[str, list[str]] = {"w1": [], "w2": []}

    async def drain(worker_id: str) -> None:
        while True:
            got[worker_id].append(await queues[worker_id].dequeue())

    tasks = [asyncio.create_task(drain(w)) for w in queues for _ in range(4)]
    try:
        inserted = insert_rows(sql, 200)
        await wait_until_async(lambda: len(got["w1"]) + len(got["w2"]) >= 200)
        await asyncio.sleep(SETTLE_SECONDS)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for queue in queues.values():
            await queue.close()
        await other_pool.close()
    claimed = got["w1"] + got["w2"]
    assert len(claimed) == len(set(claimed)) == 200
    assert set(claimed) == set(inserted)
    assert got["w1"]
    assert got["w2"]
    owners = dict(sql.execute("SELECT execution_id::text, worker_id FROM lg_deploy.executions"))
    assert all(owners[e] == worker for worker, ids in got.items() for e in ids)
    claims = sql.execute(
        "SELECT count(*), count(DISTINCT execution_id) FROM lg_deploy.execution_events"
        " WHERE from_status = 'QUEUED' AND to_status = 'RUNNING'"
    ).fetchone()
    assert claims == (200, 200)


@pytest.mark.req("CARD-NOTIFY", "CARD-LISTEN")
async def test_a_notification_wakes_a_waiting_dequeue(
    make_queue: MakeQueue, listener: Listener, sql: Sql
) -> None:
    """With a 30 s poll, a plain SQL INSERT reaches a waiting dequeue within a second (NOTIFY)."""
    queue = make_queue(listener=listener, poll_interval_seconds=30)
    waiting = asyncio.create_task(queue.dequeue())
    await asyncio.sleep(SETTLE_SECONDS)
    [execution_id] = insert_rows(sql)
    assert await arrives_within(1.0, waiting) == execution_id


@pytest.mark.req("CARD-NOTIFY")
async def test_without_a_listener_the_poll_finds_new_rows(make_queue: MakeQueue, sql: Sql) -> None:
    """With no listener and a 0.3 s poll, a waiting dequeue gets an inserted row within 1.5 s."""
    queue = make_queue(listener=None, poll_interval_seconds=0.3)
    waiting = asyncio.create_task(queue.dequeue())
    await asyncio.sleep(SETTLE_SECONDS)
    [execution_id] = insert_rows(sql)
    assert await arrives_within(1.5, waiting) == execution_id


TERMINATE_LISTENER = (
    "SELECT pg_terminate_backend(pid, %s) FROM pg_stat_activity"
    " WHERE application_name = 'lg-deploy-listener' AND datname = current_database()"
)


@pytest.mark.req("CARD-LISTEN", "CARD-NOTIFY")
async def test_the_listener_listens_again_after_its_connection_drops(
    make_queue: MakeQueue, listener: Listener, sql: Sql
) -> None:
    """After its backend is terminated the listener reconnects and NOTIFY wakes dequeue again."""
    queue = make_queue(listener=listener, poll_interval_seconds=30)
    assert scalar(sql, TERMINATE_LISTENER, 0) is True
    await wait_until_async(lambda: listener.connects == 2)
    waiting = asyncio.create_task(queue.dequeue())
    await asyncio.sleep(SETTLE_SECONDS)
    [execution_id] = insert_rows(sql)
    assert await arrives_within(1.5, waiting) == execution_id


@pytest.mark.req("CARD-LISTEN", "CARD-NOTIFY")
async def test_a_row_inserted_while_the_listener_is_down_is_fetched_on_reconnect(
    make_queue: MakeQueue, listener: Listener, sql: Sql
) -> None:
    """A row whose NOTIFY was missed while LISTEN was down is claimed right after the reconnect."""
    queue = make_queue(listener=listener, poll_interval_seconds=30)
    waiting = asyncio.create_task(queue.dequeue())
    await asyncio.sleep(SETTLE_SECONDS)
    # Both statements run before the event loop can reconnect: the insert's NOTIFY is lost.
    assert scalar(sql, TERMINATE_LISTENER, 5000) is True
    [execution_id] = insert_rows(sql)
    assert await arrives_within(1.5, waiting) == execution_id
    assert listener.connects == 2


@pytest.mark.req("CARD-CLAIM", "LLD-10")
async def test_close_hands_back_claims_no_caller_took(
    make_queue: MakeQueue, db_url: str, sql: Sql
) -> None:
    """close() requeues rows claimed for cancelled callers (attempt uncounted), not delivered."""
    queue = make_queue()
    [delivered] = insert_rows(sql)
    assert await asyncio.wait_for(queue.dequeue(), WAIT_SECONDS) == delivered
    unstarted = insert_rows(sql, 2)
    with psycopg.connect(db_url) as locker:  # holds the claim UPDATE until the callers are gone
        locker.execute("LOCK TABLE lg_deploy.executions IN SHARE MODE")
        callers = [asyncio.create_task(queue.dequeue()) for _ in unstarted]
        blocked_claims = (  # the claim is the only statement here that can wait on a lock
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock'"
        )
        await wait_until_async(lambda: scalar(sql, blocked_claims) == 1)
        for caller in callers:
            caller.cancel()
        await asyncio.gather(*callers, return_exceptions=True)
        locker.rollback()
    await wait_until_async(lambda: queue.claimed_total == 3)
    assert count_running(sql) == 3
    await queue.close()
    rows = sql.execute(
        "SELECT execution_id::text, status, attempts, lease_expires_at IS NULL"
        " FROM lg_deploy.executions"
    ).fetchall()
    assert {row[0]: row[1:] for row in rows} == {
        delivered: ("RUNNING", 1, False),
        **{execution_id: ("QUEUED", 0, True) for execution_id in unstarted},
    }
    hand_backs = sql.execute(
        "SELECT execution_id::text FROM lg_deploy.execution_events WHERE from_status = 'RUNNING'"
        " AND to_status = 'QUEUED' AND worker_id = 'w1' AND error LIKE '%released unstarted%'"
    ).fetchall()
    assert sorted(row[0] for row in hand_backs) == sorted(unstarted)
    other = make_queue(worker_id="w2")
    again = [await asyncio.wait_for(other.dequeue(), WAIT_SECONDS) for _ in unstarted]
    assert sorted(again) == sorted(unstarted)


def claim_buffers(sql: Sql, limit: int) -> tuple[int, int]:
    """Run claim_executions once under EXPLAIN ANALYZE: (rows claimed, buffers it touched)."""
    params = {
        "limit": limit,
        "worker_id": "w-plan",
        "lease_seconds": 30,
        "now": None,
        "graph_ids": ["echo"],
    }
    explain = "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + query("claim_executions")
    [[plan]] = sql.execute(explain, params).fetchone() or [[{}]]
    top = plan["Plan"]
    claimed = scalar(sql, "SELECT count(*) FROM lg_deploy.executions WHERE worker_id = 'w-plan'")
    return claimed, top["Shared Hit Blocks"] + top["Shared Read Blocks"]


@pytest.mark.req("PERF-CLAIM-SCHEDULED")
def test_rows_due_later_add_no_work_to_a_claim(sql: Sql) -> None:
    """50,000 rows due tomorrow (two priorities) leave a claim of 2 due rows as cheap as before."""
    insert_rows(sql, 2)
    claimed, baseline = claim_buffers(sql, 5)
    assert claimed == 2
    sql.execute(
        "INSERT INTO lg_deploy.executions (graph_id, input, run_at, priority)"
        " SELECT 'echo', '{}', now() + interval '1 day', i % 2 FROM generate_series(1, 50000) i"
    )
    sql.execute("ANALYZE lg_deploy.executions")
    insert_rows(sql, 2)
    claimed, touched = claim_buffers(sql, 5)
    assert claimed == 4  # the 2 new due rows; none of tomorrow's
    assert touched < baseline + 50, f"{touched} buffers against {baseline} without later rows"
