"""ExecutionWorker on both backends: outcomes, failure isolation, timeouts, concurrency, logs."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from lg_deploy.graphs import DEFAULT_GRAPHS, GraphRegistry
from lg_deploy.logs import ContextFilter
from lg_deploy.models import ExecutionStatus
from lg_deploy.store.memory import InMemoryExecutionStore
from lg_deploy.worker import ExecutionWorker
from lg_deploy.worker.retry import RetryPolicy
from tests.support.backends import WAIT_SECONDS, Backend, claim_and_run, make_worker
from tests.support.factories import make_state
from tests.support.graphs import GatedRunner


async def submit_echoes(
    backend: Backend, worker: ExecutionWorker, count: int, **fields: Any
) -> list[str]:
    """`count` echo executions, each with its own input (and `fields`)."""
    return [await backend.submit(worker, input={"n": n}, **fields) for n in range(count)]


async def assert_echoes_completed(backend: Backend, ids: list[str]) -> None:
    """Every id ends COMPLETED with its input as output."""
    for execution_id in ids:
        state = await backend.final(execution_id)
        assert state.status == ExecutionStatus.COMPLETED, state.error
        assert state.output == state.input


@pytest.mark.req("LLD-6.1", "GRAPH-EXAMPLES")
async def test_echo_execution_completes_with_its_input(
    backend: Backend, registry: GraphRegistry
) -> None:
    """An echo execution ends COMPLETED, output = input, one attempt, worker and clocks set."""
    worker = backend.worker(registry)
    await worker.start()
    execution_id = await backend.submit(worker, input={"ticket": 42, "tags": ["a"]})
    state = await backend.final(execution_id)
    assert state.status == ExecutionStatus.COMPLETED
    assert state.output == {"ticket": 42, "tags": ["a"]}
    assert (state.attempts, state.worker_id, state.error) == (1, worker.worker_id, None)
    assert state.started_at is not None
    assert state.finished_at is not None
    assert state.started_at <= state.finished_at
    assert state.lease_expires_at is None


@pytest.mark.req("LLD-11", "LLD-6.1")
async def test_worker_runs_alone_with_fake_store_queue_and_graphs() -> None:
    """With the in-memory store and claimer and a fake runner the worker needs nothing else."""
    store, runner = InMemoryExecutionStore(), GatedRunner()
    worker = make_worker(store, runner, concurrency=2)
    ok = await store.create(make_state(graph_id="anything", input={"x": 1}))
    bad = await store.create(make_state(graph_id="boom", input={}))
    assert (await claim_and_run(worker, ok.execution_id)) is not None
    done = await claim_and_run(worker, bad.execution_id)
    assert done is not None
    assert done.status == ExecutionStatus.FAILED
    assert done.error == "ValueError: fake failure"
    assert runner.calls == [("anything", {"x": 1}), ("boom", {})]
    stored = await store.get(ok.execution_id)
    assert stored is not None
    assert stored.output == {"seen": {"x": 1}}


@pytest.mark.req("LLD-9.1", "LLD-6.1", "WORKER-OUTPUT")
@pytest.mark.parametrize(
    ("graph_id", "graph_input", "expected"),
    [
        ("fail", {"message": "model said no"}, ["RuntimeError: model said no"]),
        ("set_output", {}, ["not JSON-serialisable"]),
        ("nan_output", {}, ["not JSON-serialisable", "NaN"]),
        ("nul_output", {}, ["not JSON-serialisable", "NUL"]),
        ("own_timeout", {}, ["TimeoutError: model call timed out"]),
        ("nul_error", {}, ["RuntimeError: bad\ufffdbyte"]),
    ],
    ids=["fail", "set", "nan", "nul", "graph-raised-timeout", "nul-in-error"],
)
async def test_failing_execution_is_recorded_and_harms_no_other(
    backend: Backend,
    registry: GraphRegistry,
    graph_id: str,
    graph_input: dict[str, Any],
    expected: list[str],
) -> None:
    """A failing graph ends FAILED with a readable error; 10 echoes beside it and later ones run."""
    worker = backend.worker(registry, concurrency=4)
    await worker.start()
    bad = await backend.submit(worker, graph_id=graph_id, input=graph_input)
    echoes = await submit_echoes(backend, worker, 10)
    state = await backend.final(bad)
    assert state.status == ExecutionStatus.FAILED
    assert state.error is not None
    assert "\n" not in state.error
    for text in expected:
        assert text in state.error
    assert state.output is None
    assert state.attempts == 1
    await assert_echoes_completed(backend, echoes)
    await assert_echoes_completed(backend, await submit_echoes(backend, worker, 3))


@pytest.mark.req("LLD-9.1", "LLD-6.1")
async def test_id_of_an_unknown_graph_handed_to_a_worker_fails_naming_the_known_graphs(
    registry: GraphRegistry,
) -> None:
    """An id of a graph the worker lacks (memory queue) fails at once, naming the known graphs.

    Even a retrying worker gives it one attempt: no other attempt could know the graph.
    """
    store = InMemoryExecutionStore()
    retrying = RetryPolicy(retry_on_error=True)
    worker = make_worker(store, registry, retry=retrying)
    bad = await store.create(make_state(graph_id="no_such_graph", input={}))
    done = await claim_and_run(worker, bad.execution_id)
    assert done is not None
    assert (done.status, done.attempts) == (ExecutionStatus.FAILED, 1)
    assert done.error is not None
    assert "\n" not in done.error
    for text in ["no_such_graph", *DEFAULT_GRAPHS]:
        assert text in done.error
    assert done.traceback is None


@pytest.mark.req("LLD-9.1", "LLD-6.1")
async def test_hanging_graph_times_out_while_others_complete(
    backend: Backend, registry: GraphRegistry
) -> None:
    """A graph running past execution_timeout_seconds ends FAILED "timed out"; others complete.

    A graph that raises TimeoutError itself, well within the deadline, fails with its own error.
    """
    worker = backend.worker(registry, concurrency=3, execution_timeout_seconds=0.5)
    await worker.start()
    hanging = await backend.submit(worker, graph_id="sleep", input={"seconds": 3600})
    own = await backend.submit(worker, graph_id="own_timeout", input={})
    # The echoes' own timeout keeps a loaded machine's slow echo from failing them at 0.5 s.
    echoes = await submit_echoes(backend, worker, 5, timeout_seconds=WAIT_SECONDS)
    await assert_echoes_completed(backend, echoes)
    state = await backend.final(hanging)
    assert state.status == ExecutionStatus.FAILED
    assert state.error == "timed out after 0.5 s"
    assert (await backend.final(own)).error == "TimeoutError: model call timed out"
    later = await submit_echoes(backend, worker, 2, timeout_seconds=WAIT_SECONDS)
    await assert_echoes_completed(backend, later)


@pytest.mark.req("LLD-6.1", "CARD-CLAIM")
async def test_runs_in_parallel_up_to_concurrency(
    backend: Backend, registry: GraphRegistry
) -> None:
    """Ten 0.3 s executions at concurrency 5 overlap, and never more than 5 graphs run at once.

    (A slot takes its next execution while the last one's outcome is written, so more than 5
    may be in the worker, and RUNNING in the table, for the length of a write.)"""
    worker = backend.worker(registry, concurrency=5)
    ids = [
        (
            await backend.store.create(make_state(graph_id="sleep", input={"seconds": 0.3}))
        ).execution_id
        for _ in range(10)
    ]
    most_running = most_in_worker = 0
    started = time.monotonic()
    await worker.start()
    worker.wake()
    while True:
        most_running = max(most_running, await backend.count_running(ids))
        states = [await backend.store.get(i) for i in ids]
        most_in_worker = max(most_in_worker, len(worker.graph_running_ids))
        if all(s is not None and s.is_final for s in states):
            break
        assert time.monotonic() - started < WAIT_SECONDS
        await asyncio.sleep(0.02)
    elapsed = time.monotonic() - started
    assert all(s is not None and s.status == ExecutionStatus.COMPLETED for s in states)
    assert elapsed < 1.8, f"10 x 0.3 s took {elapsed:.2f} s: not parallel"
    assert 2 <= most_running <= 10  # 5 graphs running, and up to 5 outcomes being written
    assert most_in_worker <= 5


@pytest.mark.req("LLD-6.1")
async def test_request_id_is_on_the_workers_log_records(
    backend: Backend, registry: GraphRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """Each worker log record of an execution carries its request_id, execution_id and graph_id."""
    caplog.handler.addFilter(ContextFilter())
    caplog.set_level(logging.INFO, logger="lg_deploy")
    worker = backend.worker(registry)
    await worker.start()
    ids = [await backend.submit(worker, input={"n": n}, request_id=f"req-{n}") for n in range(3)]
    for execution_id in ids:
        await backend.final(execution_id)
    # The row is final once its outcome commits; the worker logs the outcome after that.
    await worker.stop(grace_seconds=WAIT_SECONDS)
    for n, execution_id in enumerate(ids):
        mine = [r for r in caplog.records if getattr(r, "execution_id", None) == execution_id]
        assert len(mine) >= 2, "expected start and completion records"
        assert {getattr(r, "request_id", None) for r in mine} == {f"req-{n}"}
        assert {getattr(r, "graph_id", None) for r in mine} == {"echo"}
        assert {r.name for r in mine} == {"lg_deploy.worker"}
