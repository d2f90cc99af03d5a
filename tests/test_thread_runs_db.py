"""Runs on a thread below HTTP: the claim's thread gate on both backends, the database's one
running run per thread, the thread following its runs (trigger), and rows inserted by SQL."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from lg_deploy.errors import ThreadBusy, ThreadNotFound
from lg_deploy.models import ExecutionStatus, Finish, utcnow
from lg_deploy.store.memory import InMemoryExecutionStore
from lg_deploy.threads.memory import InMemoryThreadStore
from lg_deploy.threads.models import RunAdmission, ThreadStatus
from lg_deploy.threads.postgres import PostgresThreadStore
from lg_deploy.threads.protocol import ThreadStore
from tests.support.backends import Backend, make_claimer
from tests.support.factories import make_state


def thread_store(backend: Backend) -> ThreadStore:
    """The thread store over the backend's executions."""
    if backend.pool is None:
        assert isinstance(backend.store, InMemoryExecutionStore)
        return InMemoryThreadStore(backend.store)
    return PostgresThreadStore(backend.pool)


@pytest.mark.req("MULTITASK")
async def test_the_claim_takes_a_threads_runs_one_at_a_time_oldest_first(backend: Backend) -> None:
    """Three runs on one thread and one thread-less: a claim of 10 takes the thread's oldest and
    the thread-less one; the next comes only once the first is final."""
    threads = thread_store(backend)
    thread = await threads.create(None, {})
    assert thread is not None
    on_thread = []
    for n in range(3):
        state = make_state(input={"n": n}, thread_id=thread.thread_id)
        on_thread.append(await threads.submit_run(state, RunAdmission()))
    alone = await backend.store.create(make_state())
    assert (await threads.get(thread.thread_id)).status == ThreadStatus.BUSY  # type: ignore[union-attr]
    claimer = make_claimer(backend.store, worker_id="w1")
    first = await claimer.claim(10)
    assert {s.execution_id for s in first} == {on_thread[0].execution_id, alone.execution_id}
    assert await claimer.claim(10) == []
    (running,) = [s for s in first if s.thread_id is not None]
    await backend.store.finish_running(
        "w1", [Finish(running, ExecutionStatus.COMPLETED, output={"n": 0})]
    )
    (second,) = await claimer.claim(10)
    assert second.execution_id == on_thread[1].execution_id
    assert (await threads.get(thread.thread_id)).values == {"n": 0}  # type: ignore[union-attr]


@pytest.mark.req("THREAD-RUNS", "HITL")
async def test_the_thread_follows_its_runs_status_values_interrupts_and_errors(
    backend: Backend,
) -> None:
    """busy while a run is in flight; interrupted with its interrupts after an INTERRUPTED one;
    error after a failure; idle after a cancel or a success."""
    threads = thread_store(backend)
    thread = await threads.create(None, {})
    assert thread is not None
    claimer = make_claimer(backend.store, worker_id="w1")
    pending = {"task-1": [{"id": "i1", "value": "approve?"}]}
    outcomes = [
        (Finish, ExecutionStatus.INTERRUPTED, ThreadStatus.INTERRUPTED, pending),
        (Finish, ExecutionStatus.FAILED, ThreadStatus.ERROR, {}),
        (Finish, ExecutionStatus.COMPLETED, ThreadStatus.IDLE, {}),
    ]
    for _, status, thread_status, interrupts in outcomes:
        await threads.submit_run(make_state(thread_id=thread.thread_id), RunAdmission())
        (running,) = await claimer.claim(1)
        assert (await threads.get(thread.thread_id)).status == ThreadStatus.BUSY  # type: ignore[union-attr]
        output = {"v": status.value, "__interrupt__": [{"id": "i1"}]}
        finish = Finish(
            running,
            status,
            output=None if status == ExecutionStatus.FAILED else output,
            error="ValueError: no" if status == ExecutionStatus.FAILED else None,
            interrupts=interrupts or None,
        )
        await backend.store.finish_running("w1", [finish])
        after = await threads.get(thread.thread_id)
        assert after is not None
        assert (after.status, after.interrupts) == (thread_status, interrupts)
        if status != ExecutionStatus.FAILED:
            assert after.values == {"v": status.value}
        else:
            assert after.error == "ValueError: no"
    queued = await threads.submit_run(make_state(thread_id=thread.thread_id), RunAdmission())
    await backend.store.request_cancel(queued.execution_id)
    assert (await threads.get(thread.thread_id)).status == ThreadStatus.IDLE  # type: ignore[union-attr]


@pytest.mark.req("MULTITASK", "THREAD-RUNS")
async def test_submitting_to_a_thread_rejects_when_busy_and_creates_when_asked(
    backend: Backend,
) -> None:
    """reject_if_busy refuses while a run is in flight (nothing added); a missing thread is
    ThreadNotFound unless create_thread; the thread is labelled with the run's graph."""
    threads = thread_store(backend)
    missing = str(uuid.uuid4())
    with pytest.raises(ThreadNotFound):
        await threads.submit_run(make_state(thread_id=missing), RunAdmission())
    admission = RunAdmission(create_thread=True, assistant_id="a-1")
    first = await threads.submit_run(make_state(thread_id=missing), admission)
    made = await threads.get(missing)
    assert made is not None
    assert made.metadata == {"graph_id": "echo", "assistant_id": "a-1"}
    with pytest.raises(ThreadBusy):
        await threads.submit_run(make_state(thread_id=missing), RunAdmission(reject_if_busy=True))
    assert [r.execution_id for r in await backend.store.list_thread_runs(missing)] == [
        first.execution_id
    ]


@pytest.mark.req("MULTITASK")
def test_the_database_refuses_a_second_running_run_on_a_thread(
    sql: psycopg.Connection[Any],
) -> None:
    """executions_one_running_per_thread: a second RUNNING row on a thread, even by plain SQL,
    is a unique violation."""
    (thread_id,) = sql.execute(
        "INSERT INTO lg_deploy.threads DEFAULT VALUES RETURNING thread_id"
    ).fetchone() or (None,)
    ids = [
        sql.execute(
            "INSERT INTO lg_deploy.executions (graph_id, input, thread_id)"
            " VALUES ('echo', '{}', %s) RETURNING execution_id",
            (thread_id,),
        ).fetchone()[0]  # type: ignore[index]
        for _ in range(2)
    ]
    claim = (
        "UPDATE lg_deploy.executions SET status = 'RUNNING', attempts = 1, worker_id = 'w',"
        " lease_expires_at = now() + interval '1 minute' WHERE execution_id = %s"
    )
    sql.execute(claim, (ids[0],))
    with pytest.raises(psycopg.errors.UniqueViolation, match="executions_one_running_per_thread"):
        sql.execute(claim, (ids[1],))


@pytest.mark.req("THREAD-RUNS", "HITL")
def test_the_schema_guards_thread_runs_rows_inserted_by_sql(sql: psycopg.Connection[Any]) -> None:
    """A command or null input needs a thread; a thread run must name a real thread; an
    unknown strategy is refused; INTERRUPTED is final and in the transition table."""
    (thread_id,) = sql.execute(
        "INSERT INTO lg_deploy.threads DEFAULT VALUES RETURNING thread_id"
    ).fetchone() or (None,)
    insert = (
        "INSERT INTO lg_deploy.executions (graph_id, input, thread_id, command, multitask_strategy)"
        " VALUES ('echo', %s, %s, %s, %s)"
    )
    refused = [
        (None, None, None, None, "executions_input_is_object"),
        (Jsonb({}), None, Jsonb({"resume": 1}), None, "executions_command_needs_thread"),
        (Jsonb({}), str(uuid.uuid4()), None, None, "executions_thread_fkey"),
        (Jsonb({}), thread_id, None, "sometimes", "executions_multitask_strategy_known"),
    ]
    for input_, thread, command, strategy, constraint in refused:
        with (
            pytest.raises(psycopg.errors.IntegrityError, match=constraint),
            sql.transaction(),
        ):
            sql.execute(insert, (input_, thread, command, strategy))
    sql.execute(insert, (None, thread_id, Jsonb({"resume": "yes"}), "enqueue"))
    busy = sql.execute("SELECT status FROM lg_deploy.threads WHERE thread_id = %s", (thread_id,))
    assert busy.fetchone() == ("busy",)
    meaning = sql.execute(
        "SELECT meaning FROM lg_deploy.execution_transitions"
        " WHERE from_status = 'RUNNING' AND to_status = 'INTERRUPTED'"
    ).fetchone()
    assert meaning is not None


@pytest.mark.req("THREAD-RUNS", "DUR-LEASE")
async def test_recovery_ends_the_thread_busy_spell_with_the_run(backend: Backend) -> None:
    """A thread run whose worker is gone: lease recovery requeues it (the thread stays busy),
    and with no attempts left fails it, the thread becoming `error` in that same step."""
    threads = thread_store(backend)
    thread = await threads.create(None, {})
    assert thread is not None
    state = make_state(thread_id=thread.thread_id, max_attempts=2)
    await threads.submit_run(state, RunAdmission())
    claimer = make_claimer(backend.store, worker_id="gone")
    for attempt, status, thread_status in [
        (1, ExecutionStatus.QUEUED, ThreadStatus.BUSY),
        (2, ExecutionStatus.FAILED, ThreadStatus.ERROR),
    ]:
        (running,) = await claimer.claim(1)
        assert running.attempts == attempt
        later = utcnow() + timedelta(minutes=5)
        assert await backend.store.recover_expired(now=later) == [(state.execution_id, status)]
        after = await threads.get(thread.thread_id)
        assert after is not None
        assert after.status == thread_status
    assert "no attempts left" in str(after.error)
