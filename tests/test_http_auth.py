"""The optional API key: every route but liveness refuses requests without it (JSON 401)."""

from __future__ import annotations

import logging

import pytest
from starlette.testclient import TestClient

from lg_deploy.http import create_app
from lg_deploy.http.auth import is_loopback, presented_key
from lg_deploy.settings import load_settings

KEY = "s3cret-key"


@pytest.fixture
def client() -> TestClient:
    """An app on the memory backend that requires KEY."""
    settings = load_settings({"LG_DEPLOY_BACKEND": "memory", "LG_DEPLOY_API_KEY": KEY})
    return TestClient(create_app(settings))


@pytest.mark.req("API-AUTH", "LLD-9.2")
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/executions"),
        ("POST", "/executions"),
        ("GET", "/graphs"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("GET", "/nowhere"),
    ],
)
def test_routes_refuse_requests_without_the_key(client: TestClient, method: str, path: str) -> None:
    """Without a key every route but /healthz answers 401 JSON with the request id."""
    with client:
        response = client.request(method, path, headers={"X-Request-ID": "auth-1"})
    assert response.status_code == 401
    body = response.json()
    assert body["error"] == "unauthorized"
    assert body["request_id"] == "auth-1" == response.headers["x-request-id"]
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.req("API-AUTH")
def test_liveness_needs_no_key(client: TestClient) -> None:
    """/healthz answers without a key, so orchestrators can probe it."""
    with client:
        assert client.get("/healthz").status_code == 200


@pytest.mark.req("API-AUTH")
@pytest.mark.parametrize(
    "headers",
    [{"Authorization": f"Bearer {KEY}"}, {"authorization": f"bearer {KEY}"}, {"X-API-Key": KEY}],
)
def test_the_key_opens_every_route(client: TestClient, headers: dict[str, str]) -> None:
    """A bearer token or an X-API-Key header with the right key is let through."""
    with client:
        assert client.get("/graphs", headers=headers).status_code == 200
        submitted = client.post("/executions", json={"graph_id": "echo"}, headers=headers)
        assert submitted.status_code == 202


@pytest.mark.req("API-AUTH")
@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer wrong"},
        {"X-API-Key": KEY + "x"},
        {"Authorization": f"Basic {KEY}"},
        {"X-API-Key": ""},
    ],
)
def test_wrong_keys_are_refused(client: TestClient, headers: dict[str, str]) -> None:
    """A wrong key, a key in another scheme, or an empty key is refused."""
    with client:
        assert client.get("/graphs", headers=headers).status_code == 401


@pytest.mark.req("API-AUTH")
def test_no_key_configured_means_open() -> None:
    """Without LG_DEPLOY_API_KEY no route asks for a key."""
    with TestClient(create_app(load_settings({"LG_DEPLOY_BACKEND": "memory"}))) as open_client:
        assert open_client.get("/graphs").status_code == 200


@pytest.mark.req("API-AUTH")
def test_warns_when_listening_beyond_loopback_without_key(caplog: pytest.LogCaptureFixture) -> None:
    """Starting on 0.0.0.0 with no key logs a warning; on loopback it does not."""
    exposed = load_settings({"LG_DEPLOY_BACKEND": "memory", "LG_DEPLOY_HOST": "0.0.0.0"})
    with caplog.at_level(logging.WARNING), TestClient(create_app(exposed)):
        pass
    assert any("without LG_DEPLOY_API_KEY" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with (
        caplog.at_level(logging.WARNING),
        TestClient(create_app(load_settings({"LG_DEPLOY_BACKEND": "memory"}))),
    ):
        pass
    assert not any("without LG_DEPLOY_API_KEY" in r.getMessage() for r in caplog.records)


@pytest.mark.req("API-AUTH")
def test_key_and_host_helpers() -> None:
    """Keys are read from bearer or X-API-Key headers; loopback hosts are recognised."""
    assert presented_key([(b"authorization", b"Bearer abc")]) == "abc"
    assert presented_key([(b"x-api-key", b"abc")]) == "abc"
    assert presented_key([(b"authorization", b"Basic abc")]) is None
    assert is_loopback("127.0.0.1")
    assert is_loopback("::1")
    assert is_loopback("localhost")
    assert not is_loopback("0.0.0.0")
    assert not is_loopback("example.com")
