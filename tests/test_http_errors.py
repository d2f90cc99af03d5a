"""API errors: JSON with a code, a message and the request id for every cause; no traceback."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
from starlette.testclient import TestClient

from lg_deploy.http import create_app
from lg_deploy.http.schemas import ErrorBody
from lg_deploy.models import ExecutionState
from lg_deploy.settings import load_settings
from lg_deploy.store.memory import InMemoryExecutionStore
from lg_deploy.store.protocol import ExecutionStore

MAX_BODY_BYTES = 2048
SECRET = "secret detail"
UNKNOWN_ID = str(uuid.UUID(int=42))


class CrashingStore(InMemoryExecutionStore):
    """A store whose reads crash with a message that must never reach a client."""

    async def get(self, execution_id: str) -> ExecutionState | None:
        """Always raises RuntimeError."""
        raise RuntimeError(SECRET)


class DatabaseDownStore(InMemoryExecutionStore):
    """A store behaving as PostgresExecutionStore does when the database cannot be reached."""

    def __getattribute__(self, name: str) -> Any:
        """Every public store method raises psycopg.OperationalError."""
        if not name.startswith("_") and callable(getattr(ExecutionStore, name, None)):

            async def refused(*args: Any, **kwargs: Any) -> Any:
                raise psycopg.OperationalError("connection refused")

            return refused
        return super().__getattribute__(name)


STORES = {"memory": InMemoryExecutionStore, "crash": CrashingStore, "down": DatabaseDownStore}


@dataclass(frozen=True)
class Case:
    """One request that must fail: what to send, what must come back, and the documented route."""

    name: str
    method: str
    path: str  # "{done}" becomes a COMPLETED execution's id, "{unknown}" an unknown id
    status: int
    code: str
    route: str | None  # the OpenAPI path it belongs to; None for unknown routes and methods
    body: bytes | None = None
    content_type: str = "application/json"
    chunked: bool = False
    store: str = "memory"
    mentions: str = ""  # text the message must contain


def submit_body(**fields: Any) -> bytes:
    """A JSON body for POST /executions."""
    return json.dumps(fields).encode()


BIG_BODY = submit_body(graph_id="echo", input={"blob": "x" * MAX_BODY_BYTES})
BY_ID_ROUTES = [
    ("GET", "", "/executions/{execution_id}"),
    ("GET", "/wait", "/executions/{execution_id}/wait"),
    ("POST", "/cancel", "/executions/{execution_id}/cancel"),
    ("GET", "/events", "/executions/{execution_id}/events"),
]
SUBMIT = ("POST", "/executions")
CASES = [
    Case("malformed-json", *SUBMIT, 400, "bad_request", "/executions", b'{"graph_id": "echo",'),
    Case("nan-literal", *SUBMIT, 400, "bad_request", "/executions",
         b'{"graph_id": "echo", "input": {"x": NaN}}', mentions="NaN"),
    Case("text-plain", *SUBMIT, 415, "unsupported_media_type", "/executions",
         submit_body(graph_id="echo"), content_type="text/plain"),
    Case("too-large", *SUBMIT, 413, "payload_too_large", "/executions", BIG_BODY),
    Case("too-large-chunked", *SUBMIT, 413, "payload_too_large", "/executions", BIG_BODY,
         chunked=True),
    Case("input-not-object", *SUBMIT, 422, "invalid_request", "/executions",
         submit_body(graph_id="echo", input=[1, 2]), mentions="input"),
    Case("missing-graph-id", *SUBMIT, 422, "invalid_request", "/executions",
         submit_body(input={}), mentions="graph_id"),
    Case("unknown-field", *SUBMIT, 422, "invalid_request", "/executions",
         submit_body(graph_id="echo", colour="red"), mentions="colour"),
    Case("unknown-graph", *SUBMIT, 422, "unknown_graph", "/executions",
         submit_body(graph_id="nope"), mentions="nope"),
    Case("nul-in-input", *SUBMIT, 422, "invalid_request", "/executions",
         submit_body(graph_id="echo", input={"t": "a\u0000b"}), mentions="NUL"),
    Case("wait-timeout-zero", "GET", "/executions/{done}/wait?timeout=0", 422, "invalid_request",
         "/executions/{execution_id}/wait", mentions="timeout"),
    Case("wait-timeout-huge", "GET", "/executions/{done}/wait?timeout=301", 422,
         "invalid_request", "/executions/{execution_id}/wait", mentions="timeout"),
    Case("cancel-completed", "POST", "/executions/{done}/cancel", 409, "conflict",
         "/executions/{execution_id}/cancel", mentions="COMPLETED"),
    Case("unknown-route", "GET", "/nothing/here", 404, "not_found", None),
    Case("wrong-method", "DELETE", "/executions/{unknown}", 405, "method_not_allowed", None),
    Case("crash", "GET", "/executions/{unknown}", 500, "internal_error",
         "/executions/{execution_id}", store="crash"),
    Case("db-down-submit", *SUBMIT, 503, "database_unavailable", "/executions",
         submit_body(graph_id="echo"), store="down"),
    Case("db-down-list", "GET", "/executions", 503, "database_unavailable", "/executions",
         store="down"),
    Case("db-down-metrics", "GET", "/metrics", 503, "database_unavailable", "/metrics",
         store="down"),
    *[Case(f"bad-id{suffix or '-get'}", method, f"/executions/not-a-uuid{suffix}", 422,
           "invalid_request", route, mentions="UUID") for method, suffix, route in BY_ID_ROUTES],
    *[Case(f"unknown-id{suffix or '-get'}", method, f"/executions/{{unknown}}{suffix}", 404,
           "not_found", route, mentions=UNKNOWN_ID) for method, suffix, route in BY_ID_ROUTES],
    *[Case(f"db-down{suffix or '-get'}", method, f"/executions/{{unknown}}{suffix}", 503,
           "database_unavailable", route, store="down") for method, suffix, route in BY_ID_ROUTES],
]  # fmt: skip


def error_app_client(store: str = "memory") -> TestClient:
    """A client (not yet entered) of a memory app with a 2048-byte body limit over `store`."""
    settings = load_settings(
        {
            "LG_DEPLOY_BACKEND": "memory",
            "LG_DEPLOY_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
            "LG_DEPLOY_SHUTDOWN_GRACE_SECONDS": "0",
        }
    )
    app = create_app(settings, store=STORES[store]())
    return TestClient(app, raise_server_exceptions=False)


def completed_id(client: TestClient) -> str:
    """The id of a fresh execution of echo, once COMPLETED."""
    execution_id: str = client.post("/executions", json={"graph_id": "echo"}).json()["execution_id"]
    done = client.get(f"/executions/{execution_id}/wait", params={"timeout": 10}).json()
    assert done["status"] == "COMPLETED"
    return execution_id


def send(client: TestClient, case: Case) -> httpx.Response:
    """Send the request `case` describes."""
    path = case.path.replace("{unknown}", UNKNOWN_ID)
    if "{done}" in path:
        path = path.replace("{done}", completed_id(client))
    headers = {"content-type": case.content_type} if case.body is not None else {}
    content: Any = case.body
    if case.chunked and case.body is not None:
        body = case.body
        content = (body[i : i + 512] for i in range(0, len(body), 512))
    return client.request(case.method, path, content=content, headers=headers)


def assert_error_body(answer: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The answer is `status` with a JSON error body of `code` carrying the request id."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = answer.json()
    assert body["error"] == code
    assert isinstance(body["message"], str)
    assert body["message"]
    assert body["request_id"]
    assert body["request_id"] == answer.headers["x-request-id"]
    ErrorBody.model_validate(body)
    assert set(body) <= set(ErrorBody.model_fields), "undocumented field in an error body"
    return body


@pytest.mark.req("LLD-9.2")
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_each_failure_answers_its_status_as_json_with_the_request_id(case: Case) -> None:
    """Each cause answers its 4xx/5xx with JSON {error, message, request_id}, no internals."""
    with error_app_client(case.store) as client:
        answer = send(client, case)
    body = assert_error_body(answer, case.status, case.code)
    assert case.mentions in body["message"]
    assert "Traceback" not in answer.text
    assert SECRET not in answer.text


@pytest.mark.req("LLD-9.2", "LLD-7.3")
def test_error_body_carries_the_callers_request_id() -> None:
    """An error answer to a request with a valid X-Request-ID carries that id in body and header."""
    with error_app_client() as client:
        answer = client.get(f"/executions/{UNKNOWN_ID}", headers={"X-Request-ID": "err-1"})
    assert assert_error_body(answer, 404, "not_found")["request_id"] == "err-1"


@pytest.mark.req("LLD-9.2")
def test_unknown_graph_error_lists_the_known_graphs() -> None:
    """Submitting an unknown graph answers 422 unknown_graph with the known graph names."""
    with error_app_client() as client:
        answer = client.post("/executions", json={"graph_id": "nope"})
    body = assert_error_body(answer, 422, "unknown_graph")
    assert {"echo", "fail", "pipeline", "sleep"} <= set(body["known_graphs"])


@pytest.mark.req("LLD-9.2")
def test_validation_error_details_name_each_field_and_problem() -> None:
    """A 422 for several bad fields lists each as {field, problem}."""
    with error_app_client() as client:
        answer = client.post("/executions", json={"graph_id": "", "priority": 1000})
    details = assert_error_body(answer, 422, "invalid_request")["details"]
    assert {item["field"] for item in details} == {"graph_id", "priority"}
    assert all(item["problem"] for item in details)


@pytest.mark.req("LLD-9.2")
def test_body_within_the_limit_is_accepted() -> None:
    """A body of just under LG_DEPLOY_MAX_BODY_BYTES is accepted (the limit is not off by much)."""
    padding = "x" * (MAX_BODY_BYTES - len(submit_body(graph_id="echo", input={"p": ""})) - 1)
    body = submit_body(graph_id="echo", input={"p": padding})
    assert len(body) == MAX_BODY_BYTES - 1
    with error_app_client() as client:
        answer = client.post(
            "/executions", content=body, headers={"content-type": "application/json"}
        )
    assert answer.status_code == 202, answer.text


@pytest.mark.req("LLD-9.2")
@pytest.mark.parametrize(
    ("path", "allowed"), [("/healthz", {"GET"}), ("/executions", {"GET", "POST"})]
)
def test_wrong_method_answer_names_the_allowed_methods(path: str, allowed: set[str]) -> None:
    """A 405 carries an Allow header listing every method the path serves (RFC 9110 15.5.6)."""
    with error_app_client() as client:
        answer = client.request("DELETE", path)
    assert_error_body(answer, 405, "method_not_allowed")
    assert "allow" in answer.headers, "405 without an Allow header"
    assert {m.strip() for m in answer.headers["allow"].split(",")} >= allowed


@pytest.fixture
def openapi() -> dict[str, Any]:
    """The document served at GET /openapi.json."""
    with error_app_client() as client:
        answer = client.get("/openapi.json")
    assert answer.status_code == 200
    return answer.json()


def documented_responses(openapi: dict[str, Any], route: str, method: str) -> dict[str, Any]:
    """The responses documented for one operation."""
    responses: dict[str, Any] = openapi["paths"][route][method.lower()]["responses"]
    return responses


@pytest.mark.req("API-OPENAPI", "LLD-9.2")
@pytest.mark.parametrize(
    "case", [c for c in CASES if c.route], ids=[c.name for c in CASES if c.route]
)
def test_every_error_status_is_documented_for_its_route(
    openapi: dict[str, Any], case: Case
) -> None:
    """Each status the failure cases produce is a documented response of that operation."""
    assert case.route is not None
    responses = documented_responses(openapi, case.route, case.method)
    assert str(case.status) in responses, f"{case.method} {case.route} lacks {case.status}"
    schema = responses[str(case.status)]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/ErrorBody"}


@pytest.mark.req("LLD-9.2", "API-LIMITS")
def test_nesting_and_string_limits_answer_4xx_not_500() -> None:
    """Absurd nesting is 400 (body) or 422 (input deeper than 32); huge strings are 422."""
    app = create_app(load_settings({"LG_DEPLOY_BACKEND": "memory"}))
    with TestClient(app) as client:
        flood = b"[" * 200_000 + b"]" * 200_000
        answer = client.post(
            "/executions", content=flood, headers={"content-type": "application/json"}
        )
        assert (answer.status_code, answer.json()["message"]) == (400, "body is nested too deeply")
        deep: dict[str, object] = {"leaf": 1}
        for _ in range(40):
            deep = {"a": deep}
        answer = client.post("/executions", json={"graph_id": "echo", "input": deep})
        assert answer.status_code == 422
        assert "nested deeper than 32" in answer.json()["message"]
        long = {"text": "x" * 300_000}
        answer = client.post("/executions", json={"graph_id": "echo", "input": long})
        assert answer.status_code == 422
        assert "at most 262144 characters" in answer.json()["message"]
        fine = {"a": [{"b": "c" * 1000}] * 10}
        assert (
            client.post("/executions", json={"graph_id": "echo", "input": fine}).status_code == 202
        )
