"""Streaming below HTTP, on both EventLogs where both apply: fenced appends, what a run's end
adds to its stream (the trigger, or memory's follower), the EventSink's batches, pruning, and
the stream_mode CHECK on rows inserted by SQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from lg_deploy.models import ExecutionState, ExecutionStatus, Finish
from lg_deploy.retention import prune_stream_events
from lg_deploy.store import InMemoryExecutionStore, PostgresExecutionStore
from lg_deploy.store.protocol import ExecutionStore
from lg_deploy.streams.memory import InMemoryEventLog
from lg_deploy.streams.postgres import PostgresEventLog
from lg_deploy.streams.protocol import Attempt, EventLog, RunEvents, StreamEvent
from lg_deploy.streams.sink import MAX_BATCH, EventSink
from lg_deploy.threads.memory import InMemoryThreadStore
from lg_deploy.threads.models import RunAdmission
from lg_deploy.threads.postgres import PostgresThreadStore
from lg_deploy.threads.protocol import ThreadStore
from tests.support.factories import COMPLETED, FAILED, QUEUED, RUNNING, make_state, moved
from tests.support.waiting import wait_until_async

SqlConn = psycopg.Connection[Any]
WORKER = "worker-a"  # the worker `moved` claims for
ALL = 10_000  # a read limit above any test's event count
OK = {"done": True}


@pytest.fixture
def log(store: ExecutionStore) -> EventLog:
    """The EventLog over `store`: memory's follows the store's runs, Postgres's run_events."""
    if isinstance(store, InMemoryExecutionStore):
        return InMemoryEventLog(store)
    assert isinstance(store, PostgresExecutionStore)
    return PostgresEventLog(store.pool)


def thread_store(store: ExecutionStore) -> ThreadStore:
    """The thread store over `store`'s executions."""
    if isinstance(store, InMemoryExecutionStore):
        return InMemoryThreadStore(store)
    assert isinstance(store, PostgresExecutionStore)
    return PostgresThreadStore(store.pool)


async def claimed(store: ExecutionStore, state: ExecutionState) -> ExecutionState:
    """`state` (QUEUED) claimed by worker-a: RUNNING, attempt 1."""
    return await store.update(moved(state, RUNNING), expected_status=QUEUED)


async def running(store: ExecutionStore, **fields: Any) -> ExecutionState:
    """A new execution streaming `values` (unless told), claimed by worker-a."""
    fields.setdefault("stream_mode", ["values"])
    return await claimed(store, await store.create(make_state(**fields)))


async def finish(
    store: ExecutionStore, state: ExecutionState, status: ExecutionStatus, error: str | None = None
) -> ExecutionState:
    """Record worker-a's outcome of `state`, as its worker does."""
    output = OK if status == COMPLETED else None
    (done,) = await store.finish_running(WORKER, [Finish(state, status, output, error)])
    assert isinstance(done, ExecutionState), done
    return done


def attempt_of(state: ExecutionState) -> Attempt:
    """The attempt holding `state`."""
    assert state.worker_id is not None
    return Attempt(state.execution_id, state.attempts, state.worker_id)


def pairs(events: Sequence[StreamEvent]) -> list[tuple[str, str]]:
    """(event, data) of each event."""
    return [(e.event, e.data) for e in events]


def tokens(count: int, start: int = 0) -> list[tuple[str, str]]:
    """`count` distinct messages events."""
    return [("messages", json.dumps([{"content": f"t{n}"}, {}])) for n in range(start, count)]


async def read_all(log: EventLog, execution_id: str) -> RunEvents:
    """Every event the run has recorded, with its status."""
    return await log.run_events(execution_id, 0, ALL)


@pytest.mark.req("STREAM-EVENTS", "STREAM-RESUME")
async def test_the_holding_attempt_appends_in_order_with_increasing_ids(
    store: ExecutionStore, log: EventLog
) -> None:
    """Two batches of the RUNNING run's attempt are kept in order with strictly increasing ids,
    read back after a cursor and up to a limit; the run is not finished yet."""
    state = await running(store)
    first = [("metadata", '{"run_id":"r"}'), ("values", '{"n":1}')]
    second = [("custom", '{"progress":"half"}'), ("values", '{"n":2}')]
    assert await log.append(attempt_of(state), first) == 2
    assert await log.append(attempt_of(state), second) == 2
    read = await read_all(log, state.execution_id)
    ids = [e.event_id for e in read.events]
    assert pairs(read.events) == first + second
    assert ids == sorted(set(ids))  # strictly increasing
    assert (read.status, read.finished) == (RUNNING, False)
    assert pairs((await log.run_events(state.execution_id, ids[1], ALL)).events) == second
    assert pairs((await log.run_events(state.execution_id, 0, 1)).events) == first[:1]
    assert await log.last_run_event(state.execution_id) == ids[-1]


@pytest.mark.req("STREAM-EVENTS")
async def test_a_stale_attempt_appends_nothing(store: ExecutionStore, log: EventLog) -> None:
    """Another attempt number, another worker, and the holder once its run is final or before
    it is claimed each append nothing (0); only the holder's event is kept."""
    state = await running(store)
    held = attempt_of(state)
    assert await log.append(held, [("values", '{"n":1}')]) == 1
    stale = [
        Attempt(state.execution_id, state.attempts + 1, WORKER),
        Attempt(state.execution_id, state.attempts, "worker-b"),
    ]
    for attempt in stale:
        assert await log.append(attempt, [("values", '{"stale":true}')]) == 0
    await finish(store, state, COMPLETED)
    assert await log.append(held, [("values", '{"late":true}')]) == 0
    queued = await store.create(make_state(stream_mode=["values"]))
    assert await log.append(Attempt(queued.execution_id, 0, WORKER), [("values", "{}")]) == 0
    assert pairs((await read_all(log, state.execution_id)).events) == [("values", '{"n":1}')]
    assert (await read_all(log, queued.execution_id)).events == []


@pytest.mark.req("STREAM-EVENTS", "STREAM-ERRORS")
async def test_a_failed_streaming_run_ends_its_stream_with_an_error_event(
    store: ExecutionStore, log: EventLog
) -> None:
    """A streaming run failing with "ValueError: kaboom" gets a last `error` event holding
    {"error": "ValueError", "message": "kaboom"}, and reads as finished FAILED."""
    state = await running(store)
    await log.append(attempt_of(state), [("metadata", '{"run_id":"r"}')])
    await finish(store, state, FAILED, "ValueError: kaboom")
    read = await read_all(log, state.execution_id)
    assert [e.event for e in read.events] == ["metadata", "error"]
    assert json.loads(read.events[-1].data) == {"error": "ValueError", "message": "kaboom"}
    assert (read.status, read.finished) == (FAILED, True)


@pytest.mark.req("STREAM-EVENTS", "STREAM-ERRORS")
async def test_cancelled_runs_and_runs_that_stream_nothing_get_no_error_event(
    store: ExecutionStore, log: EventLog
) -> None:
    """A run cancelled while RUNNING (its worker records "cancelled") or while QUEUED, and a
    failed run with no stream modes, record no event at all."""
    in_flight = await running(store)
    await store.request_cancel(in_flight.execution_id)
    await finish(store, in_flight, FAILED, "cancelled")
    queued = await store.create(make_state(stream_mode=["values"]))
    assert (await store.request_cancel(queued.execution_id)).status == FAILED
    silent = await running(store, stream_mode=None)
    await finish(store, silent, FAILED, "ValueError: kaboom")
    for state in (in_flight, queued, silent):
        read = await read_all(log, state.execution_id)
        assert (read.status, read.events) == (FAILED, [])


@pytest.mark.req("STREAM-EVENTS")
async def test_a_run_rolled_back_reads_as_gone_with_its_events(
    store: ExecutionStore, log: EventLog
) -> None:
    """A streaming run cancelled with rollback is forgotten as it ends: its stream reads as
    gone (no status, no events) and so finished."""
    state = await running(store)
    await log.append(attempt_of(state), [("values", '{"n":1}')])
    await store.request_cancel(state.execution_id, "rollback")
    await finish(store, state, FAILED, "cancelled")
    assert await read_all(log, state.execution_id) == RunEvents(None, [])


@pytest.mark.req("STREAM-EVENTS", "STREAM-THREAD", "STREAM-ERRORS")
async def test_a_run_on_a_thread_adds_run_done_to_the_threads_stream_only(
    store: ExecutionStore, log: EventLog
) -> None:
    """Each run ending on a thread adds a run_done row, after its error if it failed: the
    thread's stream shows it, the run's own stream does not."""
    threads = thread_store(store)
    thread = await threads.create(None, {})
    assert thread is not None
    ended: list[tuple[ExecutionStatus, str | None]] = [(COMPLETED, None), (FAILED, "ValueError: x")]
    runs = []
    for status, error in ended:
        queued = make_state(thread_id=thread.thread_id, stream_mode=["values"])
        state = await claimed(store, await threads.submit_run(queued, RunAdmission()))
        await log.append(attempt_of(state), [("values", '{"n":1}')])
        await finish(store, state, status, error)
        runs.append(state.execution_id)
    seen = await log.thread_events(thread.thread_id, 0, ALL)
    assert [(e.execution_id, e.event) for e in seen] == [
        (runs[0], "values"),
        (runs[0], "run_done"),
        (runs[1], "values"),
        (runs[1], "error"),
        (runs[1], "run_done"),
    ]
    assert json.loads(seen[1].data) == {"status": "run_done", "run_id": runs[0]}
    assert await log.last_thread_event(thread.thread_id) == seen[-1].event_id
    assert [e.event for e in (await read_all(log, runs[0])).events] == ["values"]
    assert [e.event for e in (await read_all(log, runs[1])).events] == ["values", "error"]
    assert [e.event for e in await log.thread_events(thread.thread_id, seen[2].event_id, 2)] == [
        "error",
        "run_done",
    ]


@pytest.mark.req("STREAM-EVENTS", "STREAM-THREAD")
async def test_a_thread_less_run_adds_no_run_done(store: ExecutionStore, log: EventLog) -> None:
    """A completed run with no thread records no run_done row."""
    state = await running(store)
    await log.append(attempt_of(state), [("values", "{}")])
    await finish(store, state, COMPLETED)
    assert [e.event for e in (await read_all(log, state.execution_id)).events] == ["values"]


class GatedLog:
    """An EventLog whose appends wait for `gate` (open unless shut) and may fail first; it
    records the size of each batch it was asked to append."""

    def __init__(self, inner: EventLog, *, failures: int = 0) -> None:
        self.inner = inner
        self.gate = asyncio.Event()
        self.gate.set()
        self.failures = failures
        self.batches: list[int] = []

    async def append(self, attempt: Attempt, events: Sequence[tuple[str, str]]) -> int:
        """Record the batch, wait for the gate, fail if still told to, then append."""
        self.batches.append(len(events))
        await self.gate.wait()
        if self.failures > 0:
            self.failures -= 1
            raise OSError("connection lost")
        return await self.inner.append(attempt, list(events))

    async def run_events(self, execution_id: str, after: int, limit: int) -> RunEvents:
        """As the inner log."""
        return await self.inner.run_events(execution_id, after, limit)

    async def last_run_event(self, execution_id: str) -> int:
        """As the inner log."""
        return await self.inner.last_run_event(execution_id)

    async def thread_events(self, thread_id: str, after: int, limit: int) -> list[StreamEvent]:
        """As the inner log."""
        return await self.inner.thread_events(thread_id, after, limit)

    async def last_thread_event(self, thread_id: str) -> int:
        """As the inner log."""
        return await self.inner.last_thread_event(thread_id)


@pytest.mark.req("STREAM-EVENTS")
async def test_the_sink_batches_what_is_emitted_while_an_append_is_in_flight(
    store: ExecutionStore, log: EventLog
) -> None:
    """Emits made while a slow append is in flight go out in MAX_BATCH-sized appends after it,
    in order; close() returns only once all are recorded."""
    state = await running(store)
    gated = GatedLog(log)
    gated.gate.clear()
    sink = EventSink(gated, attempt_of(state))
    sink.emit("metadata", '{"run_id":"r"}')
    await wait_until_async(lambda: gated.batches == [1])
    more = tokens(2 * MAX_BATCH + 7)
    for event, data in more:
        sink.emit(event, data)
    closing = asyncio.create_task(sink.close())
    for _ in range(20):
        await asyncio.sleep(0)  # the gate is shut: nothing can be recorded, close cannot end
    assert not closing.done()
    gated.gate.set()
    await closing
    assert gated.batches == [1, MAX_BATCH, MAX_BATCH, 7]
    assert pairs((await read_all(log, state.execution_id)).events) == [
        ("metadata", '{"run_id":"r"}'),
        *more,
    ]
    assert (sink.emitted, sink.stale) == (len(more) + 1, False)


@pytest.mark.req("STREAM-EVENTS")
async def test_the_sink_retries_a_failed_append_keeping_order(
    store: ExecutionStore, log: EventLog
) -> None:
    """An append that fails is retried with the same events first; each is recorded once."""
    state = await running(store)
    gated = GatedLog(log, failures=2)
    sink = EventSink(gated, attempt_of(state))
    emitted = tokens(5)
    for event, data in emitted:
        sink.emit(event, data)
    await sink.close()
    assert pairs((await read_all(log, state.execution_id)).events) == emitted
    assert gated.failures == 0


@pytest.mark.req("STREAM-EVENTS")
async def test_the_sink_of_a_stale_attempt_drops_its_events(
    store: ExecutionStore, log: EventLog
) -> None:
    """Once an append keeps nothing (the run ended or passed on) the sink is stale: what it
    holds and what is emitted later are dropped, and no append is tried again."""
    state = await running(store)
    await finish(store, state, COMPLETED)
    gated = GatedLog(log)
    sink = EventSink(gated, attempt_of(state))
    for event, data in tokens(3):
        sink.emit(event, data)
    await sink.close()
    assert sink.stale
    sink.emit("values", "{}")
    await sink.close()
    assert (sink.emitted, gated.batches) == (3, [3])
    assert (await read_all(log, state.execution_id)).events == []


def backdate_finish(sql: SqlConn, execution_id: str, seconds: float) -> None:
    """Make a final run look final for `seconds` (the guard trigger keeps finished_at, so it
    is bypassed for this one statement)."""
    with sql.transaction():
        sql.execute("SET LOCAL session_replication_role = replica")
        sql.execute(
            "UPDATE lg_deploy.executions SET finished_at = now() - make_interval(secs => %s)"
            " WHERE execution_id = %s",
            (seconds, execution_id),
        )


def event_count(sql: SqlConn, execution_id: str) -> int:
    """How many run_events rows the run has."""
    row = sql.execute(
        "SELECT count(*) FROM lg_deploy.run_events WHERE execution_id = %s", (execution_id,)
    ).fetchone()
    return int(row[0]) if row else 0


@pytest.mark.req("STREAM-EVENTS")
async def test_pruning_deletes_only_the_events_of_runs_final_for_longer_than_the_cut_off(
    pool: AsyncConnectionPool[Any], sql: SqlConn
) -> None:
    """In batches, prune_stream_events deletes the events of a run final for two hours (the
    run stays) and keeps those of a running run and of one final just now."""
    store = PostgresExecutionStore(pool)
    log = PostgresEventLog(pool)
    old, recent, still = [await running(store) for _ in range(3)]
    for state, count in ((old, 5), (recent, 2), (still, 2)):
        assert await log.append(attempt_of(state), tokens(count)) == count
    await finish(store, old, COMPLETED)
    await finish(store, recent, FAILED, "ValueError: kaboom")
    backdate_finish(sql, old.execution_id, 7200)
    assert await prune_stream_events(pool, 3600, batch_size=2) == 5
    counts = [event_count(sql, s.execution_id) for s in (old, recent, still)]
    assert counts == [0, 3, 2]
    assert await store.get(old.execution_id) is not None
    assert await prune_stream_events(pool, 3600) == 0


@pytest.mark.req("STREAM-EVENTS")
async def test_an_append_announces_its_run_and_thread_once(pool: AsyncConnectionPool[Any]) -> None:
    """Each kept batch sends one NOTIFY lg_deploy_events naming the run and its thread; a stale
    append sends none."""
    store = PostgresExecutionStore(pool)
    thread = await PostgresThreadStore(pool).create(None, {})
    assert thread is not None
    queued = make_state(thread_id=thread.thread_id, stream_mode=["values"])
    state = await claimed(store, await PostgresThreadStore(pool).submit_run(queued, RunAdmission()))
    log = PostgresEventLog(pool)
    async with pool.connection() as listening:
        await listening.execute("LISTEN lg_deploy_events")
        await log.append(Attempt(state.execution_id, 9, WORKER), tokens(2))
        await log.append(attempt_of(state), tokens(3))
        heard = [n.payload async for n in listening.notifies(timeout=5.0, stop_after=1)]
        await listening.execute("UNLISTEN lg_deploy_events")
    assert heard == [f"{state.execution_id},{thread.thread_id}"]


@pytest.mark.req("STREAM-EVENTS")
@pytest.mark.parametrize("modes", [["telepathy"], ["values", "bogus"], ["Values"], [""]])
def test_sql_rows_with_an_unknown_stream_mode_are_refused(sql: SqlConn, modes: list[str]) -> None:
    """An INSERT by plain SQL naming a stream mode the platform lacks breaks the named CHECK."""
    with pytest.raises(psycopg.errors.CheckViolation) as refused:
        sql.execute(
            "INSERT INTO lg_deploy.executions (graph_id, input, stream_mode)"
            " VALUES ('echo', '{}', %s::text[])",
            (modes,),
        )
    assert refused.value.diag.constraint_name == "executions_stream_mode_known"


@pytest.mark.req("STREAM-EVENTS")
def test_sql_rows_with_known_stream_modes_or_none_are_accepted(sql: SqlConn) -> None:
    """Every platform mode together, and NULL (records nothing), are accepted by plain SQL."""
    known = ["values", "updates", "messages", "messages-tuple", "custom", "debug", "tasks"]
    known += ["checkpoints", "events"]
    for modes in (known, None):
        row = sql.execute(
            "INSERT INTO lg_deploy.executions (graph_id, input, stream_mode)"
            " VALUES ('echo', '{}', %s::text[]) RETURNING stream_mode",
            (modes,),
        ).fetchone()
        assert row == (modes,)
