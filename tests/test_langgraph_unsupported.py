"""What lg-deploy does not do yet of the LangGraph Platform API is said out loud (422, 501)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from lg_deploy.http import create_app
from lg_deploy.http.langgraph_run_body import (
    REFUSED_RUN_KEYS,
    REFUSED_THREAD_RUN_KEYS,
    REFUSED_WAIT_KEYS,
)
from lg_deploy.http.langgraph_unsupported import UNSUPPORTED_ROUTES
from lg_deploy.settings import load_settings

PATH_PARAMETER = re.compile(r"{\w+}")
# A value of each refused key that asks for what lg-deploy does not do yet.
ASKING = {
    "checkpoint": {"checkpoint_id": "c1"},
    "checkpoint_id": "c1",
    "on_completion": "keep",
    "on_disconnect": "cancel",
}
# Keys accepted and ignored (they cannot change a thread-less background run), non-default.
IGNORED = {
    "multitask_strategy": "interrupt",
    "if_not_exists": "create",
    "durability": "exit",
    "checkpoint_during": False,
    "stream_mode": ["updates", "messages-tuple"],
    "stream_subgraphs": True,
    "stream_resumable": True,
    "feedback_keys": ["score"],
    "langsmith_tracer": {"project_name": "p", "example_id": None},
    "strict_resume": True,
    "on_disconnect": "cancel",  # on /runs: a background run has no client connection to lose
    "on_completion": "delete",
    "unknown_future_key": {"x": 1},
}
# The default bodies of runs.create and runs.wait: Python langgraph-sdk 0.4.14 (its create adds
# the stream options) and JS @langchain/langgraph-sdk 1.15.0 (undefined keys are dropped).
SDK_DEFAULTS = {
    "/runs": [
        {"assistant_id": "echo", "input": {"a": 1}, "stream_mode": "values",
         "stream_subgraphs": False, "stream_resumable": False},
        {"assistant_id": "echo", "input": {"a": 1}},
    ],
    "/runs/wait": [{"assistant_id": "echo", "input": {"a": 1}}],
}  # fmt: skip

THREAD_PARTS = "protocol v2 (thread event streams and commands) is"


@pytest.fixture
def client() -> Iterator[TestClient]:
    """A client of a running memory-backend app."""
    environ = {"LG_DEPLOY_BACKEND": "memory", "LG_DEPLOY_SHUTDOWN_GRACE_SECONDS": "0"}
    with TestClient(create_app(load_settings(environ))) as test_client:
        yield test_client


def _concrete(path: str) -> str:
    return PATH_PARAMETER.sub(lambda _: str(uuid.uuid4()), path)


@pytest.mark.req("SDK-UNSUPPORTED-ROUTES")
def test_every_unsupported_platform_route_answers_501_json_naming_its_feature(
    client: TestClient,
) -> None:
    """Each platform route lg-deploy lacks, each method: not_supported JSON, 501 (405 with
    Allow on a path it serves with other methods)."""
    served = {r.path: r.methods for r in client.app.routes if isinstance(r, Route)}  # type: ignore[attr-defined]
    checked = 0
    for path, methods, feature in UNSUPPORTED_ROUTES:
        for method in methods:
            answer = client.request(method, _concrete(path), json={"assistant_id": "echo"})
            expected = 405 if path in served else 501
            assert answer.status_code == expected, (method, path, answer.text)
            if path in served:
                assert set(answer.headers["Allow"].split(", ")) == served[path]
            body = answer.json()
            assert (body["error"], body["feature"]) == ("not_supported", feature)
            assert body["message"].endswith("not supported by lg-deploy yet")
            assert body["request_id"] == answer.headers["X-Request-ID"]
            checked += 1
    assert checked >= 10  # the table shrinks as features land, but never empties by accident


@pytest.mark.req("SDK-UNSUPPORTED-ROUTES", "SEC-LEAKS")
@pytest.mark.parametrize(
    ("method", "path", "status", "words"),
    [
        ("POST", "/threads/{id}/stream/events", 501, THREAD_PARTS),
        ("POST", "/threads/{id}/commands", 501, THREAD_PARTS),
        ("PATCH", "/threads/{id}/state", 405, "changing a checkpoint's metadata is"),
        ("POST", "/runs/batch", 501, "batches of runs are"),
        ("POST", "/mcp", 501, "MCP is"),
        ("GET", "/info", 501, "info"),
    ],
)
def test_platform_routes_say_not_supported_while_own_405_and_404_stay(
    client: TestClient, method: str, path: str, status: int, words: str
) -> None:
    """A platform route answers not_supported JSON with the request id; DELETE /executions
    stays 405, /no/such/route 404, and a method the platform lacks too a plain 405."""
    answer = client.request(method, _concrete(path), json={})
    assert answer.status_code == status
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert set(body) == {"error", "message", "request_id", "feature"}
    assert body["error"] == "not_supported"
    assert words in body["message"]
    assert "Traceback" not in answer.text
    assert client.delete("/executions").json()["error"] == "method_not_allowed"
    assert client.get("/no/such/route").json()["error"] == "not_found"
    assert client.put("/threads").json()["error"] == "method_not_allowed"
    assert client.put("/assistants/echo").json()["error"] == "method_not_allowed"
    assert client.get("/assistants/echo/schemas").status_code == 200  # served now


REFUSALS = {
    "/runs": REFUSED_RUN_KEYS,
    "/runs/wait": REFUSED_WAIT_KEYS,
    "/threads/{id}/runs": REFUSED_THREAD_RUN_KEYS,
    "/threads/{id}/runs/wait": {**REFUSED_THREAD_RUN_KEYS, "on_disconnect": None},
}


@pytest.mark.req("SDK-REFUSED-KEYS")
@pytest.mark.parametrize("route", sorted(REFUSALS))
def test_each_refused_key_is_422_not_supported_naming_it_and_nothing_runs(
    client: TestClient, route: str
) -> None:
    """Every key of the refusal tables, with a value asking for it: 422 naming it; no run."""
    refused = REFUSALS[route]
    before = len(client.get("/executions").json()["items"])
    for key in refused:
        body = {"assistant_id": "echo", key: ASKING[key]}
        answer = client.post(_concrete(route), json=body)
        assert answer.status_code == 422, (route, key, answer.text)
        body = answer.json()
        assert body["error"] == "not_supported"
        assert body["message"].startswith(f"{key}: not supported by lg-deploy yet")
        assert [d["field"] for d in body["details"]] == [key]
    assert len(client.get("/executions").json()["items"]) == before
    assert set(ASKING) == {key for table in REFUSALS.values() for key in table}


@pytest.mark.req("SDK-REFUSED-KEYS", "SDK-COMPAT")
def test_sdk_default_bodies_and_ignored_keys_are_accepted(client: TestClient) -> None:
    """Both SDKs' default bodies and every ignored key run; the default strategy is enqueue."""
    for route, bodies in SDK_DEFAULTS.items():
        for body in bodies:
            answer = client.post(route, json=body)
            assert answer.status_code == 200, (route, body, answer.text)
    for key, value in IGNORED.items():
        answer = client.post("/runs", json={"assistant_id": "echo", key: value})
        assert answer.status_code == 200, (key, answer.text)
    default = client.post("/runs", json={"assistant_id": "echo"}).json()
    assert default["multitask_strategy"] == "enqueue"
    mixed: dict[str, Any] = {"assistant_id": "echo", "on_completion": "keep", "checkpoint_id": "c"}
    fields = [d["field"] for d in client.post("/runs", json=mixed).json()["details"]]
    assert sorted(fields) == ["checkpoint_id", "on_completion"]


@pytest.mark.req("SDK-REFUSED-KEYS")
def test_the_memory_backend_refuses_a_webhook_rather_than_dropping_it(client: TestClient) -> None:
    """On the memory backend a webhook is 422 not_supported naming it (no outbox); nothing runs."""
    before = len(client.get("/executions").json()["items"])
    hook = "https://hooks.example.com/x"
    for route, body in (
        ("/runs", {"assistant_id": "echo", "webhook": hook}),
        ("/executions", {"graph_id": "echo", "webhook": hook}),
    ):
        answer = client.post(route, json=body)
        assert answer.status_code == 422, answer.text
        refused = answer.json()
        assert (refused["error"], refused["details"][0]["field"]) == ("not_supported", "webhook")
        assert "postgres backend" in refused["message"]
    assert len(client.get("/executions").json()["items"]) == before
