"""The HTTP API over the memory backend: executions, request ids, lifespan, operations."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from lg_deploy.http import create_app
from lg_deploy.logs import ContextFilter
from lg_deploy.models import ExecutionStatus
from lg_deploy.settings import load_settings
from lg_deploy.store.memory import InMemoryExecutionStore
from tests.support.waiting import wait_until

WAIT_SECONDS = 10.0
LONG_SLEEP = {"graph_id": "sleep", "input": {"seconds": 30}}


def memory_app(**env: str) -> Starlette:
    """An app on the memory backend that stops at once on shutdown (no grace)."""
    environ = {"LG_DEPLOY_BACKEND": "memory", "LG_DEPLOY_SHUTDOWN_GRACE_SECONDS": "0", **env}
    return create_app(load_settings(environ))


@pytest.fixture
def client() -> Iterator[TestClient]:
    """A client of a memory-backend app whose lifespan (workers included) is running."""
    with TestClient(memory_app()) as test_client:
        yield test_client


def submit(client: TestClient, graph_id: str = "echo", **body: Any) -> dict[str, Any]:
    """POST one execution and return it; it must be accepted."""
    answer = client.post("/executions", json={"graph_id": graph_id, **body})
    assert answer.status_code == 202, answer.text
    result: dict[str, Any] = answer.json()
    return result


def status_of(client: TestClient, execution_id: str) -> str:
    """The execution's status as GET reports it."""
    status: str = client.get(f"/executions/{execution_id}").json()["status"]
    return status


def finished(client: TestClient, execution_id: str) -> dict[str, Any]:
    """The execution once final (long poll); fails if it is not final within WAIT_SECONDS."""
    answer = client.get(f"/executions/{execution_id}/wait", params={"timeout": WAIT_SECONDS})
    assert answer.status_code == 200, answer.text
    state: dict[str, Any] = answer.json()
    assert state["status"] in ("COMPLETED", "FAILED"), state
    return state


@pytest.mark.req("LLD-7.1")
def test_create_app_runs_over_an_injected_store() -> None:
    """Given a memory store, the app uses it and opens no database (the URL is unusable)."""
    store = InMemoryExecutionStore()
    settings = load_settings({"LG_DEPLOY_DATABASE_URL": "postgresql://127.0.0.1:1/none"})
    with TestClient(create_app(settings, store=store)) as client:
        execution_id = submit(client, input={"k": "v"})["execution_id"]
        assert finished(client, execution_id)["output"] == {"k": "v"}
        stored = client.portal.call(store.get, execution_id)
    assert stored is not None
    assert stored.status == ExecutionStatus.COMPLETED


@pytest.mark.req("LLD-7.2")
def test_shutdown_hands_a_running_execution_back_to_the_queue() -> None:
    """Leaving the lifespan (grace 0) cancels a running graph and stores it QUEUED, interrupted."""
    store = InMemoryExecutionStore()
    settings = load_settings(
        {"LG_DEPLOY_BACKEND": "memory", "LG_DEPLOY_SHUTDOWN_GRACE_SECONDS": "0"}
    )
    app = create_app(settings, store=store)
    started = time.monotonic()
    with TestClient(app) as client:
        execution_id = submit(client, **LONG_SLEEP)["execution_id"]
        wait_until(lambda: status_of(client, execution_id) == "RUNNING")
    assert time.monotonic() - started < 10, "shutdown waited for the 30 s graph"
    state = asyncio.run(store.get(execution_id))
    events = asyncio.run(store.events(execution_id))
    assert state is not None
    assert state.status == ExecutionStatus.QUEUED
    assert state.error is not None
    assert state.error.startswith("interrupted")
    assert [e.to_status for e in events][-1] == ExecutionStatus.QUEUED


@pytest.mark.req("API-EXECUTIONS")
def test_submit_answers_202_with_a_location_that_gets_the_same_execution(
    client: TestClient,
) -> None:
    """POST /executions answers 202 QUEUED; its Location header GETs that same execution."""
    answer = client.post("/executions", json={"graph_id": "echo", "input": {"n": 7}})
    assert answer.status_code == 202
    created = answer.json()
    assert created["status"] == "QUEUED"
    assert created["input"] == {"n": 7}
    location = answer.headers["location"]
    assert location == f"/executions/{created['execution_id']}"
    fetched = client.get(location)
    assert fetched.status_code == 200
    assert fetched.json()["execution_id"] == created["execution_id"]
    assert fetched.json()["created_at"] == created["created_at"]


@pytest.mark.req("API-EXECUTIONS", "LLD-6.1")
def test_worker_completes_a_submission_and_wait_returns_its_output(client: TestClient) -> None:
    """The app's own worker runs the execution; /wait returns it COMPLETED with the output."""
    execution_id = submit(client, graph_id="pipeline", input={"text": "a b c"})["execution_id"]
    state = finished(client, execution_id)
    assert state["status"] == "COMPLETED"
    assert state["output"]["count"] == 3
    assert state["attempts"] == 1
    assert state["finished_at"] is not None


@pytest.mark.req("API-EXECUTIONS")
def test_wait_with_short_timeout_returns_the_unfinished_state_after_that_timeout(
    client: TestClient,
) -> None:
    """/wait?timeout=0.5 on a 30 s sleep answers the non-final state after about 0.5 s."""
    execution_id = submit(client, **LONG_SLEEP)["execution_id"]
    started = time.monotonic()
    answer = client.get(f"/executions/{execution_id}/wait", params={"timeout": 0.5})
    elapsed = time.monotonic() - started
    assert answer.status_code == 200
    assert answer.json()["status"] in ("QUEUED", "RUNNING")
    assert 0.45 <= elapsed < 2.0, elapsed


@pytest.mark.req("LLD-7.3")
def test_valid_request_id_is_echoed_and_stored_on_the_execution(client: TestClient) -> None:
    """A well-formed X-Request-ID is reused: echoed in the answer and kept on the row."""
    answer = client.post(
        "/executions", json={"graph_id": "echo"}, headers={"X-Request-ID": "caller-42.a:b"}
    )
    assert answer.headers["x-request-id"] == "caller-42.a:b"
    assert answer.json()["request_id"] == "caller-42.a:b"
    assert client.get(answer.headers["location"]).json()["request_id"] == "caller-42.a:b"


@pytest.mark.req("LLD-7.3")
@pytest.mark.parametrize("bad_id", ["x" * 300, "has spaces in it", "semi;colon", ""])
def test_unsafe_request_id_is_replaced_by_a_fresh_one(client: TestClient, bad_id: str) -> None:
    """An over-long or unsafe X-Request-ID is not reused; a new id is echoed and stored."""
    answer = client.post("/executions", json={"graph_id": "echo"}, headers={"X-Request-ID": bad_id})
    fresh = answer.headers["x-request-id"]
    assert fresh
    assert fresh != bad_id
    assert len(fresh) <= 128
    assert answer.json()["request_id"] == fresh
    other = client.get("/healthz", headers={"X-Request-ID": bad_id}).headers["x-request-id"]
    assert other != fresh, "each request must get its own new id"


@pytest.mark.req("LLD-7.3")
def test_request_and_worker_log_lines_carry_the_request_id(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Request start/completion lines (method, path, status, duration) and worker lines share it."""
    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(ContextFilter())
    answer = client.post(
        "/executions", json={"graph_id": "echo"}, headers={"X-Request-ID": "rid-7"}
    )
    execution_id = answer.json()["execution_id"]
    finished(client, execution_id)
    # The worker logs the outcome just after storing it, so the line may trail the answer.
    wait_until(lambda: any(r.getMessage() == "execution completed" for r in caplog.records))
    mine = [r for r in caplog.records if getattr(r, "request_id", None) == "rid-7"]
    messages = [r.getMessage() for r in mine]
    assert "request started" in messages
    done = next(r for r in mine if r.getMessage() == "request completed")
    fields = vars(done)
    assert (fields["method"], fields["path"], fields["status"]) == ("POST", "/executions", 202)
    assert isinstance(fields["duration_ms"], float)
    assert fields["duration_ms"] >= 0
    worker_lines = [r for r in mine if getattr(r, "execution_id", None) == execution_id]
    assert {"execution started", "execution completed"} <= {r.getMessage() for r in worker_lines}


@pytest.mark.req("API-EXECUTIONS")
def test_list_is_newest_first_and_filters_by_status_and_graph(client: TestClient) -> None:
    """GET /executions lists newest first; status and graph_id filters combine."""
    ids = [submit(client, graph_id=g)["execution_id"] for g in ("echo", "fail", "echo")]
    for execution_id in ids:
        finished(client, execution_id)
    listed = client.get("/executions").json()["items"]
    assert [item["execution_id"] for item in listed] == ids[::-1]

    def listing(**params: str) -> list[str]:
        answer = client.get("/executions", params=params)
        assert answer.status_code == 200, answer.text
        return [item["execution_id"] for item in answer.json()["items"]]

    assert listing(status="FAILED") == [ids[1]]
    assert listing(graph_id="echo") == [ids[2], ids[0]]
    assert listing(graph_id="echo", status="COMPLETED") == [ids[2], ids[0]]
    assert listing(graph_id="fail", status="COMPLETED") == []
    assert listing(graph_id="pipeline") == []


@pytest.mark.req("API-EXECUTIONS")
def test_keyset_pages_of_two_visit_five_executions_exactly_once(client: TestClient) -> None:
    """limit=2 pages through 5 executions newest first, each once; the last cursor is null."""
    ids = [submit(client, input={"i": i})["execution_id"] for i in range(5)]
    seen: list[str] = []
    cursor: str | None = None
    for _page in range(3):
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = client.get("/executions", params=params).json()
        assert len(page["items"]) <= 2
        seen += [item["execution_id"] for item in page["items"]]
        cursor = page["next_cursor"]
    assert seen == ids[::-1]
    assert cursor is None


@pytest.mark.req("API-EXECUTIONS", "LLD-9.2")
@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"colour": "red"}, "colour"),
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"status": "DONE"}, "status"),
    ],
)
def test_list_refuses_bad_query_parameters_naming_them(
    client: TestClient, params: dict[str, str], named: str
) -> None:
    """A bad cursor, unknown parameter or out-of-range limit is a 422 that names the parameter."""
    answer = client.get("/executions", params=params)
    assert answer.status_code == 422
    assert named in answer.json()["message"]


@pytest.mark.req("API-EXECUTIONS")
def test_events_list_queued_running_completed_in_order(client: TestClient) -> None:
    """GET /executions/{id}/events is the history: QUEUED, RUNNING, COMPLETED, oldest first."""
    execution_id = submit(client)["execution_id"]
    finished(client, execution_id)
    items = client.get(f"/executions/{execution_id}/events").json()["items"]
    assert [(e["from_status"], e["to_status"]) for e in items] == [
        (None, "QUEUED"),
        ("QUEUED", "RUNNING"),
        ("RUNNING", "COMPLETED"),
    ]
    assert {e["execution_id"] for e in items} == {execution_id}


@pytest.mark.req("API-EXECUTIONS")
def test_cancel_fails_queued_at_once_and_stops_running_ones() -> None:
    """QUEUED cancels to FAILED "cancelled" (200); RUNNING is stopped (202); final ones are 409."""
    with TestClient(memory_app(LG_DEPLOY_WORKER_CONCURRENCY="1")) as client:
        busy = submit(client, **LONG_SLEEP)["execution_id"]
        wait_until(lambda: status_of(client, busy) == "RUNNING")
        waiting = submit(client)["execution_id"]
        assert status_of(client, waiting) == "QUEUED"
        cancelled = client.post(f"/executions/{waiting}/cancel")
        assert cancelled.status_code == 200
        assert (cancelled.json()["status"], cancelled.json()["error"]) == ("FAILED", "cancelled")
        assert client.get(f"/executions/{waiting}").json()["status"] == "FAILED"
        events = client.get(f"/executions/{waiting}/events").json()["items"]
        assert (events[-1]["from_status"], events[-1]["to_status"]) == ("QUEUED", "FAILED")
        again = client.post(f"/executions/{waiting}/cancel")
        assert again.status_code == 409
        assert again.json()["error"] == "conflict"
        running = client.post(f"/executions/{busy}/cancel")
        assert running.status_code == 202
        assert running.json()["status"] == "RUNNING"
        assert running.json()["cancel_requested_at"] is not None
        wait_until(lambda: status_of(client, busy) == "FAILED")
        assert client.get(f"/executions/{busy}").json()["error"] == "cancelled"


@pytest.mark.req("API-OPS", "GRAPH-EXAMPLES")
def test_graphs_lists_the_example_graphs(client: TestClient) -> None:
    """GET /graphs names echo, fail, pipeline and sleep when no graph is configured."""
    answer = client.get("/graphs")
    assert answer.status_code == 200
    names = {item["graph_id"] for item in answer.json()["items"]}
    assert {"echo", "fail", "pipeline", "sleep"} <= names


@pytest.mark.req("API-OPS")
def test_healthz_is_ok_and_readyz_is_ready_on_memory(client: TestClient) -> None:
    """/healthz answers ok; /readyz answers 200 ready on the memory backend."""
    health = client.get("/healthz")
    assert (health.status_code, health.json()["status"]) == (200, "ok")
    ready = client.get("/readyz")
    assert (ready.status_code, ready.json()["status"]) == (200, "ready")
    assert all(ready.json()["checks"].values())


@pytest.mark.req("API-OPS")
def test_metrics_expose_queue_depth_outcomes_durations_and_requests() -> None:
    """/metrics is Prometheus text with lg_deploy_ series for depth, outcomes, run time, HTTP."""
    with TestClient(memory_app(LG_DEPLOY_WORKER_CONCURRENCY="1")) as client:
        finished(client, submit(client)["execution_id"])
        busy = submit(client, **LONG_SLEEP)["execution_id"]
        wait_until(lambda: status_of(client, busy) == "RUNNING")
        submit(client, **LONG_SLEEP)
        answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    text = answer.text
    assert 'lg_deploy_queue_depth{graph_id="sleep",status="RUNNING"} 1.0' in text
    assert 'lg_deploy_queue_depth{graph_id="sleep",status="QUEUED"} 1.0' in text
    assert 'lg_deploy_executions_finished_total{graph_id="echo",status="COMPLETED"} 1.0' in text
    assert 'lg_deploy_execution_run_seconds_bucket{graph_id="echo",le="+Inf"' in text
    route = 'route="/executions/{execution_id}/wait",status="200"'
    assert f'lg_deploy_http_requests_total{{method="GET",{route}}} 1.0' in text


@pytest.mark.req("LLD-7.1")
def test_the_six_characters_backslash_u0000_are_stored_as_text(client: TestClient) -> None:
    """A string holding a backslash then "u0000" is not a NUL: it is accepted and comes back."""
    text = "\\u0000"  # six characters: PostgreSQL stores them
    assert len(text) == 6
    execution_id = submit(client, input={"t": text})["execution_id"]
    assert finished(client, execution_id)["output"] == {"t": text}


@pytest.mark.req("API-EXECUTIONS", "CARD-NOTIFY")
def test_a_submit_due_now_wakes_the_claimer_and_one_due_later_does_not(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Due now (no delay, or a run_at already past): the claimer is woken at once. Due later
    (delay_seconds or a future run_at): nothing to claim yet, so no wake; its poll finds it."""
    runtime = client.app_state["runtime"]
    wakes: list[str] = []
    monkeypatch.setattr(runtime.worker, "wake", lambda: wakes.append("wake"))
    submit(client, delay_seconds=3600)
    submit(client, run_at="2999-01-01T00:00:00Z")
    assert wakes == []
    submit(client)
    submit(client, run_at="2000-01-01T00:00:00Z")
    assert wakes == ["wake", "wake"]
