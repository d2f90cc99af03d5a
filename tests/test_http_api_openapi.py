"""GET /openapi.json describes what the server really serves, accepts and answers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import BaseModel
from starlette.routing import Route
from starlette.testclient import TestClient

from lg_deploy.http import create_app
from lg_deploy.http import schemas as http_schemas
from lg_deploy.models import ExecutionState
from lg_deploy.settings import load_settings

COMPONENT = "#/components/schemas/"
MODELS: dict[str, type[BaseModel]] = {
    model.__name__: model
    for model in (
        ExecutionState,
        http_schemas.ExecutionPage,
        http_schemas.EventList,
        http_schemas.GraphList,
        http_schemas.Health,
        http_schemas.ErrorBody,
    )
}


@pytest.fixture
def client() -> Iterator[TestClient]:
    """A client of a running memory-backend app."""
    environ = {"LG_DEPLOY_BACKEND": "memory", "LG_DEPLOY_SHUTDOWN_GRACE_SECONDS": "0"}
    with TestClient(create_app(load_settings(environ))) as test_client:
        yield test_client


@pytest.fixture
def document(client: TestClient) -> dict[str, Any]:
    """The served OpenAPI document."""
    answer = client.get("/openapi.json")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    served: dict[str, Any] = answer.json()
    return served


def refs_in(node: Any) -> Iterator[str]:
    """Every $ref value anywhere in a JSON document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs_in(item)


def component(document: dict[str, Any], ref: str) -> dict[str, Any]:
    """The component schema a local $ref points at."""
    assert ref.startswith(COMPONENT), f"{ref} does not point into components.schemas"
    schemas: dict[str, Any] = document["components"]["schemas"]
    name = ref.removeprefix(COMPONENT)
    assert name in schemas, f"{ref} points at nothing"
    found: dict[str, Any] = schemas[name]
    return found


def assert_matches(document: dict[str, Any], schema: dict[str, Any], value: Any) -> None:
    """`value` has the object shape `schema` documents: required keys present, no others."""
    if "$ref" in schema:
        target = component(document, schema["$ref"])
        if "properties" in target:
            assert isinstance(value, dict)
            assert set(target.get("required", [])) <= set(value), "a required field is missing"
            assert set(value) <= set(target["properties"]), "an undocumented field is answered"
            for name, item in value.items():
                assert_matches(document, target["properties"][name], item)
    elif schema.get("type") == "array":
        assert isinstance(value, list)
        for item in value:
            assert_matches(document, schema["items"], item)


@pytest.mark.req("API-OPENAPI")
def test_document_has_the_openapi_3_1_shape_and_every_ref_resolves(
    document: dict[str, Any],
) -> None:
    """The document is OpenAPI 3.1 (openapi, info, paths, components); each $ref resolves."""
    assert document["openapi"].startswith("3.1")
    assert document["info"]["title"]
    assert document["info"]["version"]
    assert document["paths"]
    assert document["components"]["schemas"]
    unresolved = sorted({ref for ref in refs_in(document) if not ref.startswith(COMPONENT)})
    assert unresolved == [], f"$refs that do not resolve in this document: {unresolved}"
    for ref in set(refs_in(document)):
        component(document, ref)


@pytest.mark.req("API-OPENAPI")
def test_every_served_route_is_documented_and_every_documented_one_is_served(
    client: TestClient, document: dict[str, Any]
) -> None:
    """The app's routes and methods (but /openapi.json itself) equal the document's paths."""
    served = {
        (route.path, method.lower())
        for route in client.app.routes  # type: ignore[attr-defined]
        if isinstance(route, Route) and route.path != "/openapi.json"
        for method in (route.methods or ()) - {"HEAD"}
    }
    documented = {
        (path, method) for path, operations in document["paths"].items() for method in operations
    }
    assert served == documented


def success_answers(client: TestClient) -> Iterator[tuple[str, str, httpx.Response]]:
    """(OpenAPI path, method, real answer) for each documented success of the API."""
    submitted = client.post("/executions", json={"graph_id": "echo", "input": {"a": [1, 2]}})
    yield "/executions", "post", submitted
    by_id = f"/executions/{submitted.json()['execution_id']}"
    yield "/executions/{execution_id}/wait", "get", client.get(f"{by_id}/wait?timeout=10")
    yield "/executions/{execution_id}", "get", client.get(by_id)
    yield "/executions", "get", client.get("/executions")
    yield "/executions/{execution_id}/events", "get", client.get(f"{by_id}/events")
    queued = client.post("/executions", json={"graph_id": "echo"}).json()["execution_id"]
    cancelled = client.post(f"/executions/{queued}/cancel")
    if cancelled.status_code == 200:  # the worker may have started it first
        yield "/executions/{execution_id}/cancel", "post", cancelled
    yield "/graphs", "get", client.get("/graphs")
    yield "/healthz", "get", client.get("/healthz")
    yield "/readyz", "get", client.get("/readyz")


@pytest.mark.req("API-OPENAPI")
def test_real_success_bodies_match_their_documented_schemas(
    client: TestClient, document: dict[str, Any]
) -> None:
    """Each success answer's status is documented and its body fits the referenced schema."""
    checked = 0
    for path, method, answer in success_answers(client):
        responses = document["paths"][path][method]["responses"]
        assert str(answer.status_code) in responses, f"{method} {path} {answer.status_code}"
        schema = responses[str(answer.status_code)]["content"]["application/json"]["schema"]
        assert_matches(document, schema, answer.json())
        MODELS[schema["$ref"].removeprefix(COMPONENT)].model_validate(answer.json())
        checked += 1
    assert checked >= 8


@pytest.mark.req("API-OPENAPI")
def test_submit_documents_its_location_header_and_request_body(
    document: dict[str, Any],
) -> None:
    """POST /executions documents the Location header and a SubmitExecution JSON body."""
    operation = document["paths"]["/executions"]["post"]
    assert "Location" in operation["responses"]["202"]["headers"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    submit = component(document, body["$ref"])
    assert {"graph_id", "input"} <= set(submit["properties"])
    assert submit["required"] == ["graph_id"]


@pytest.mark.req("API-OPENAPI")
def test_documented_query_parameters_are_the_ones_the_server_accepts(
    client: TestClient, document: dict[str, Any]
) -> None:
    """Each documented query parameter is accepted with a valid value; others are refused."""
    for _ in range(2):
        client.post("/executions", json={"graph_id": "echo"})
    cursor = client.get("/executions", params={"limit": 1}).json()["next_cursor"]
    samples = {"status": "QUEUED", "graph_id": "echo", "limit": "1", "cursor": cursor}
    samples["timeout"] = "0.1"
    some_id = client.get("/executions").json()["items"][0]["execution_id"]
    for path in ("/executions", "/executions/{execution_id}/wait"):
        parameters = document["paths"][path]["get"]["parameters"]
        names = [p["name"] for p in parameters if p["in"] == "query"]
        assert names, f"{path} documents no query parameters"
        url = path.replace("{execution_id}", some_id)
        for name in names:
            answer = client.get(url, params={name: samples[name]})
            assert answer.status_code == 200, f"documented {name} refused: {answer.text}"
        refused = client.get(url, params={"undocumented": "1"})
        assert refused.status_code == 422
