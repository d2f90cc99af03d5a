"""Retries with backoff, per-execution timeouts, max_attempts defaults, scheduling and priority."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

from lg_deploy.errors import GraphOutputError, UnknownGraph
from lg_deploy.graphs import DEFAULT_GRAPHS, GraphRegistry
from lg_deploy.http import create_app
from lg_deploy.models import ExecutionStatus, utcnow
from lg_deploy.settings import load_settings
from lg_deploy.worker import run as worker_module
from lg_deploy.worker.retry import RetryPolicy
from tests.support.backends import Backend
from tests.support.factories import make_state
from tests.support.waiting import wait_until_async

Q, R, C, F = (ExecutionStatus(s) for s in ("QUEUED", "RUNNING", "COMPLETED", "FAILED"))
BACKOFF_SECONDS = 0.05
RETRYING = RetryPolicy(retry_on_error=True, backoff_seconds=BACKOFF_SECONDS, backoff_max_seconds=1)
WAIT_SECONDS = 10.0

FLAKY_SOURCE = """
from pathlib import Path
from typing import Any

from langgraph.func import entrypoint


@entrypoint()
async def graph(inputs: dict[str, Any]) -> dict[str, Any]:
    marker = Path(inputs["marker"])
    if not marker.exists():
        marker.write_text("failed once", encoding="utf-8")
        raise RuntimeError("first attempt fails")
    return {"recovered": True}
"""


@pytest.fixture
def registry(tmp_path: Path) -> GraphRegistry:
    """The shipped examples plus `flaky`, which fails until its marker file exists."""
    (tmp_path / "flaky.py").write_text(FLAKY_SOURCE, encoding="utf-8")
    return GraphRegistry({**DEFAULT_GRAPHS, "flaky": "./flaky.py:graph"}, base_dir=tmp_path)


def memory_client(**env: str) -> TestClient:
    """A TestClient of a memory-backend app with extra LG_DEPLOY_* settings."""
    environ = {"LG_DEPLOY_BACKEND": "memory", "LG_DEPLOY_SHUTDOWN_GRACE_SECONDS": "0", **env}
    return TestClient(create_app(load_settings(environ)))


def post(client: TestClient, **body: Any) -> dict[str, Any]:
    """POST /executions, which must be accepted."""
    answer = client.post("/executions", json=body)
    assert answer.status_code == 202, answer.text
    created: dict[str, Any] = answer.json()
    return created


def final(client: TestClient, execution_id: str) -> dict[str, Any]:
    """The execution once final (server-side long poll)."""
    state: dict[str, Any] = client.get(
        f"/executions/{execution_id}/wait", params={"timeout": WAIT_SECONDS}
    ).json()
    assert state["status"] in ("COMPLETED", "FAILED"), state
    return state


@pytest.mark.req("DUR-RETRY")
@pytest.mark.parametrize(
    ("policy", "error", "attempt", "expected"),
    [
        (RetryPolicy(), RuntimeError("x"), 1, False),
        (RetryPolicy(retry_on_error=True), RuntimeError("x"), 1, True),
        (RetryPolicy(retry_on_error=True), RuntimeError("x"), 2, True),
        (RetryPolicy(retry_on_error=True), RuntimeError("x"), 3, False),
        (RetryPolicy(retry_on_error=True), UnknownGraph("nope", ["echo"]), 1, False),
        (RetryPolicy(retry_on_error=True), GraphOutputError("not JSON"), 1, False),
        (RetryPolicy(), psycopg.OperationalError("server closed the connection"), 1, True),
        (RetryPolicy(), psycopg.errors.AdminShutdown("terminating connection"), 2, True),
        (RetryPolicy(), psycopg.OperationalError("server closed the connection"), 3, False),
        (RetryPolicy(), psycopg.errors.UniqueViolation("a graph's own bug"), 1, False),
    ],
    ids=[
        "off",
        "attempt-1",
        "attempt-2",
        "last-attempt",
        "unknown-graph",
        "bad-output",
        "lost-connection",
        "admin-shutdown",
        "lost-connection-last-attempt",
        "other-database-error",
    ],
)
def test_retry_policy_decides_which_failures_run_again(
    policy: RetryPolicy, error: Exception, attempt: int, expected: bool
) -> None:
    """With retry_on_error, or for a lost database connection whatever it says, while attempt <
    max_attempts (3); never permanent errors."""
    assert policy.retries(error, attempt, 3) is expected


@pytest.mark.req("DUR-RETRY")
def test_backoff_is_exponential_capped_and_jittered() -> None:
    """Attempt n waits in [b*2^(n-1)/2, b*2^(n-1)], capped by the maximum, with varying jitter."""
    policy = RetryPolicy(retry_on_error=True, backoff_seconds=1.0, backoff_max_seconds=10.0)
    rng = random.Random(7)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (20, 10.0)]:
        for _ in range(50):
            assert ceiling / 2 <= policy.delay_seconds(attempt, rng) <= ceiling
    samples = [policy.delay_seconds(3, random.Random(7)) for _ in range(3)]
    assert len(set(samples)) == 1, "the same seed gives the same delay"
    varied = [policy.delay_seconds(3, rng) for _ in range(10)]
    assert len(set(varied)) == 10
    assert max(varied) - min(varied) > 0.5


@pytest.mark.req("DUR-RETRY")
async def test_failing_graph_is_retried_until_max_attempts(backend: Backend) -> None:
    """retry_on_error, max 3: FAILED after exactly 3 runs; history shows each error and backoff."""
    worker = backend.worker(GraphRegistry(DEFAULT_GRAPHS), retry=RETRYING)
    await worker.start()
    execution_id = await backend.submit(worker, graph_id="fail", input={"message": "boom"})
    state = await backend.final(execution_id)
    assert (state.status, state.attempts, state.error) == (F, 3, "RuntimeError: boom")
    assert state.run_at > state.created_at, "retries are scheduled through run_at"
    events = await backend.store.events(execution_id)
    assert [(e.from_status, e.to_status, e.attempt) for e in events] == [
        (None, Q, 0),
        (Q, R, 1),
        (R, Q, 1),
        (Q, R, 2),
        (R, Q, 2),
        (Q, R, 3),
        (R, F, 3),
    ]
    assert [e.error for e in events if e.to_status in (Q, F)][1:] == [
        "RuntimeError: boom (attempt 1 of 3; retrying)",
        "RuntimeError: boom (attempt 2 of 3; retrying)",
        "RuntimeError: boom",
    ]
    for retry_number, (back, again) in enumerate([(events[2], events[3]), (events[4], events[5])]):
        least_wait = BACKOFF_SECONDS * 2**retry_number / 2
        assert again.at - back.at >= timedelta(seconds=least_wait) - timedelta(milliseconds=5)


@pytest.mark.req("DUR-RETRY", "DUR-CLOCK")
async def test_a_worker_clock_an_hour_fast_does_not_shift_the_backoff(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A retry's run_at is the store's clock plus the backoff, whatever the worker's clock."""
    monkeypatch.setattr(worker_module, "utcnow", lambda: utcnow() + timedelta(hours=1))
    slow = RetryPolicy(retry_on_error=True, backoff_seconds=20.0, backoff_max_seconds=20.0)
    worker = backend.worker(GraphRegistry(DEFAULT_GRAPHS), retry=slow)
    await worker.start()
    execution_id = await backend.submit(worker, graph_id="fail", input={"message": "boom"})

    async def requeued() -> bool:
        state = await backend.store.get(execution_id)
        return state is not None and (state.status, state.attempts) == (Q, 1)

    await wait_until_async(requeued)
    state = await backend.store.get(execution_id)
    assert state is not None
    [back] = [e for e in await backend.store.events(execution_id) if e.from_status == R]
    backoff = state.run_at - back.at
    assert timedelta(seconds=9) <= backoff <= timedelta(seconds=21), backoff  # 10-20 s, jittered


@pytest.mark.req("DUR-RETRY")
async def test_graph_failing_once_completes_on_its_second_attempt(
    backend: Backend, registry: GraphRegistry, tmp_path: Path
) -> None:
    """A graph that fails once, then succeeds, ends COMPLETED after 2 attempts."""
    worker = backend.worker(registry, retry=RETRYING)
    await worker.start()
    marker = str(tmp_path / f"marker-{backend.name}")
    execution_id = await backend.submit(worker, graph_id="flaky", input={"marker": marker})
    state = await backend.final(execution_id)
    assert (state.status, state.attempts, state.output) == (C, 2, {"recovered": True})
    errors = [e.error for e in await backend.store.events(execution_id) if e.to_status == Q]
    assert errors[1:] == ["RuntimeError: first attempt fails (attempt 1 of 3; retrying)"]


@pytest.mark.req("DUR-RETRY")
async def test_failure_not_retried_fails_on_the_first_attempt(
    backend: Backend, registry: GraphRegistry
) -> None:
    """Without retry_on_error, one attempt and FAILED at once (unknown graphs: test_worker)."""
    worker = backend.worker(registry, retry=RetryPolicy(retry_on_error=False))
    await worker.start()
    execution_id = await backend.submit(worker, graph_id="fail")
    state = await backend.final(execution_id)
    assert (state.status, state.attempts) == (F, 1)
    assert [e.to_status for e in await backend.store.events(execution_id)] == [Q, R, F]


@pytest.mark.req("DUR-TIMEOUT")
async def test_execution_timeout_fails_the_run_with_its_duration(
    backend: Backend, registry: GraphRegistry
) -> None:
    """timeout_seconds=0.3 on a 30 s sleep: FAILED "timed out after 0.3 s" within a second or so."""
    worker = backend.worker(registry, retry=RETRYING)
    await worker.start()
    started = time.monotonic()
    execution_id = await backend.submit(
        worker, graph_id="sleep", input={"seconds": 30}, timeout_seconds=0.3
    )
    state = await backend.final(execution_id)
    assert (state.status, state.error, state.attempts) == (F, "timed out after 0.3 s", 1)
    assert time.monotonic() - started < 3


@pytest.mark.req("DUR-TIMEOUT")
def test_timeout_setting_is_the_default_and_the_executions_own_wins() -> None:
    """LG_DEPLOY_EXECUTION_TIMEOUT_SECONDS applies without timeout_seconds; a given one wins."""
    with memory_client(LG_DEPLOY_EXECUTION_TIMEOUT_SECONDS="0.4") as client:
        default = post(client, graph_id="sleep", input={"seconds": 30})
        shorter = post(client, graph_id="sleep", input={"seconds": 30}, timeout_seconds=0.2)
        longer = post(client, graph_id="sleep", input={"seconds": 0.8}, timeout_seconds=5)
        assert default["timeout_seconds"] is None
        assert final(client, default["execution_id"])["error"] == "timed out after 0.4 s"
        assert final(client, shorter["execution_id"])["error"] == "timed out after 0.2 s"
        finished = final(client, longer["execution_id"])
        assert (finished["status"], finished["output"]) == ("COMPLETED", {"slept": 0.8})


@pytest.mark.req("DUR-RETRY")
def test_max_attempts_defaults_to_the_setting_and_the_body_wins() -> None:
    """With LG_DEPLOY_MAX_ATTEMPTS=5 a submit gets max_attempts 5; a body value overrides it."""
    with memory_client(LG_DEPLOY_MAX_ATTEMPTS="5") as client:
        assert post(client, graph_id="echo")["max_attempts"] == 5
        assert post(client, graph_id="echo", max_attempts=2)["max_attempts"] == 2


@pytest.mark.req("DUR-SCHEDULE")
def test_delayed_submission_waits_then_runs_over_http() -> None:
    """delay_seconds=1: run_at is 1 s after creation, not started before it, completed after."""
    with memory_client() as client:
        created = post(client, graph_id="echo", input={"n": 1}, delay_seconds=1)
        execution_id = created["execution_id"]
        time.sleep(0.6)
        assert client.get(f"/executions/{execution_id}").json()["status"] == "QUEUED"
        state = final(client, execution_id)
    assert state["status"] == "COMPLETED"
    created_at, run_at, started_at = (
        datetime.fromisoformat(state[key]) for key in ("created_at", "run_at", "started_at")
    )
    assert run_at - created_at == timedelta(seconds=1)
    assert started_at >= run_at


@pytest.mark.req("DUR-SCHEDULE")
async def test_delayed_execution_is_not_claimed_before_it_is_due(
    backend: Backend, registry: GraphRegistry
) -> None:
    """store.create(delay_seconds=1): QUEUED for ~1 s, then a worker runs it."""
    worker = backend.worker(registry)
    await worker.start()
    stored = await backend.store.create(make_state(), delay_seconds=1)
    worker.wake()
    assert stored.run_at - stored.created_at == timedelta(seconds=1)
    await asyncio.sleep(0.6)
    waiting = await backend.store.get(stored.execution_id)
    assert waiting is not None
    assert (waiting.status, waiting.attempts) == (Q, 0)
    state = await backend.final(stored.execution_id)
    assert state.status == C
    assert state.started_at is not None
    assert state.started_at >= stored.run_at


@pytest.mark.req("DUR-SCHEDULE")
def test_run_at_and_delay_seconds_together_are_refused() -> None:
    """Giving both run_at and delay_seconds is a 422 that says why."""
    with memory_client() as client:
        answer = client.post(
            "/executions",
            json={"graph_id": "echo", "run_at": "2030-01-01T00:00:00Z", "delay_seconds": 1},
        )
    assert answer.status_code == 422
    assert "run_at or delay_seconds" in answer.text


@pytest.mark.req("DUR-SCHEDULE")
async def test_higher_priority_runs_first_when_a_slot_frees(
    pg_backend: Backend, registry: GraphRegistry
) -> None:
    """With the one slot busy, a later priority-10 submission runs before an earlier priority-0."""
    worker = pg_backend.worker(registry, concurrency=1)
    await worker.start()
    blocker = await pg_backend.submit(worker, graph_id="sleep", input={"seconds": 0.5})
    await pg_backend.reach(blocker, lambda s: s.status == R)
    low = await pg_backend.submit(worker, input={"which": "low"}, priority=0)
    high = await pg_backend.submit(worker, input={"which": "high"}, priority=10)
    low_state, high_state = await pg_backend.final(low), await pg_backend.final(high)
    assert low_state.started_at is not None
    assert high_state.started_at is not None
    assert high_state.started_at < low_state.started_at


LOSES_CONNECTION_SOURCE = """
from pathlib import Path
from typing import Any

import psycopg
from langgraph.func import entrypoint


@entrypoint()
async def graph(inputs: dict[str, Any]) -> dict[str, Any]:
    marker = Path(inputs["marker"])
    if not marker.exists():
        marker.write_text("lost it once", encoding="utf-8")
        raise psycopg.OperationalError("consuming input failed: server closed the connection")
    return {"recovered": True}
"""


@pytest.mark.req("DUR-RETRY")
async def test_a_lost_database_connection_is_retried_without_retry_on_error(
    backend: Backend, tmp_path: Path
) -> None:
    """A graph that loses its database connection once (a restart under its checkpointer)
    runs again and completes, though retry_on_error is off."""
    (tmp_path / "loses.py").write_text(LOSES_CONNECTION_SOURCE, encoding="utf-8")
    registry = GraphRegistry({"loses": "./loses.py:graph"}, base_dir=tmp_path)
    policy = RetryPolicy(backoff_seconds=BACKOFF_SECONDS, backoff_max_seconds=1)
    worker = backend.worker(registry, retry=policy)
    await worker.start()
    marker = str(tmp_path / f"marker-{backend.name}")
    execution_id = await backend.submit(worker, graph_id="loses", input={"marker": marker})
    state = await backend.final(execution_id)
    assert (state.status, state.attempts, state.output) == (C, 2, {"recovered": True})
    errors = [e.error for e in await backend.store.events(execution_id) if e.to_status == Q]
    assert errors[1].startswith("OperationalError: consuming input failed")
