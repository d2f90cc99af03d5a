"""The console's gate, CSRF checks and error answers, over HTTP against a real `lg-deploy serve`."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from lg_deploy.console.session import SESSION_SECONDS, session_token, session_valid
from tests.support.processes import SqlConn
from tests.support.servers import ServeProcess, running_server
from tests.support.sql import insert_row

API_KEY = "console-http-key"
BROWSER = {"Accept": "text/html,application/xhtml+xml"}


@pytest.fixture
def server(worker_env: dict[str, str], tmp_path: Path) -> Iterator[ServeProcess]:
    """`lg-deploy serve` keyed API_KEY."""
    with running_server({**worker_env, "LG_DEPLOY_API_KEY": API_KEY}, tmp_path) as started:
        yield started


@contextmanager
def signed_in(server: ServeProcess) -> Iterator[tuple[httpx.Client, str]]:
    """A client signed in through the form, as a browser; and its CSRF token."""
    with httpx.Client(base_url=server.url, headers=BROWSER, timeout=30) as client:
        form = client.get("/ui/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token is not None, form.text
        answer = client.post("/ui/login", data={"csrf_token": token[1], "api_key": API_KEY})
        assert answer.status_code == 303, answer.text
        yield client, token[1]


@pytest.mark.req("CONSOLE-SECURITY")
def test_a_browser_without_a_session_is_sent_to_sign_in_and_an_api_client_gets_json(
    server: ServeProcess,
) -> None:
    """GET /ui/executions: a browser gets 303 to /ui/login?next=...; a JSON client gets 401 JSON
    with the request id; the API key header opens it."""
    browser = httpx.get(f"{server.url}/ui/executions?status=FAILED", headers=BROWSER)
    assert browser.status_code == 303
    assert browser.headers["location"] == "/ui/login?next=/ui/executions%3Fstatus%3DFAILED"
    client = httpx.get(f"{server.url}/ui/executions")
    assert client.status_code == 401
    assert client.json()["request_id"] == client.headers["x-request-id"]
    keyed = httpx.get(f"{server.url}/ui/executions", headers={"X-API-Key": API_KEY})
    assert keyed.status_code == 200
    assert "<h1>Executions</h1>" in keyed.text


@pytest.mark.req("CONSOLE-SECURITY")
def test_a_wrong_key_signs_nobody_in_and_next_never_leaves_the_console(
    server: ServeProcess,
) -> None:
    """The form refuses a wrong key (401, no session cookie); a `next` naming another site
    sends the browser to /ui instead."""
    with httpx.Client(base_url=server.url, headers=BROWSER) as client:
        token = re.search(r'value="([^"]+)"', client.get("/ui/login").text)
        assert token is not None
        wrong = client.post("/ui/login", data={"csrf_token": token[1], "api_key": "nope"})
        assert wrong.status_code == 401
        assert "not the API key" in wrong.text
        assert "lg_deploy_session" not in client.cookies
        right = client.post(
            "/ui/login?next=//evil.example/x",
            data={"csrf_token": token[1], "api_key": API_KEY},
        )
        assert (right.status_code, right.headers["location"]) == (303, "/ui")
        assert "lg_deploy_session" in client.cookies


@pytest.mark.req("CONSOLE-SECURITY")
def test_a_form_without_its_csrf_token_or_from_another_origin_changes_nothing(
    server: ServeProcess, sql: SqlConn
) -> None:
    """Cancel without the token, with another browser's token, or from another origin: 403
    JSON naming the request id; the row stays QUEUED as psql reads it. All right: cancelled."""
    execution_id = insert_row(sql, graph_id="held")
    with signed_in(server) as (client, token):
        refuse_then_cancel(client, token, server.url, sql, execution_id)


def refuse_then_cancel(
    client: httpx.Client, token: str, origin: str, sql: SqlConn, execution_id: str
) -> None:
    """The three refused cancels, the row still QUEUED, then the accepted one."""
    path = f"/ui/executions/{execution_id}/cancel"
    attempts = [
        ({}, {}),
        ({"csrf_token": "x" * 43}, {}),
        ({"csrf_token": token}, {"Origin": "http://evil.example"}),
    ]
    for form, headers in attempts:
        refused = client.post(path, data=form, headers={**headers, "Accept": "application/json"})
        assert refused.status_code == 403, refused.text
        assert refused.json()["request_id"] == refused.headers["x-request-id"]
    status = sql.execute(
        "SELECT status FROM lg_deploy.executions WHERE execution_id = %s", (execution_id,)
    ).fetchone()
    assert status == ("QUEUED",)
    done = client.post(path, data={"csrf_token": token}, headers={"Origin": origin})
    assert done.status_code == 303
    status = sql.execute(
        "SELECT status, error FROM lg_deploy.executions WHERE execution_id = %s", (execution_id,)
    ).fetchone()
    assert status == ("FAILED", "cancelled")


@pytest.mark.req("CONSOLE-SECURITY")
def test_errors_are_a_page_with_the_request_id_for_browsers_and_json_for_others(
    server: ServeProcess,
) -> None:
    """An unknown execution: a browser gets a 404 page naming the request id, a JSON client the
    API's JSON error; neither holds a traceback; a path that is not a UUID is a 404 too."""
    with signed_in(server) as (client, _):
        answer_missing(client)


def answer_missing(client: httpx.Client) -> None:
    """The page and the JSON error of an unknown execution."""
    missing = str(uuid.uuid4())
    page = client.get(f"/ui/executions/{missing}")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["x-request-id"] in page.text
    assert "Traceback" not in page.text
    assert "content-security-policy" in page.headers
    answer = client.get(f"/ui/executions/{missing}", headers={"Accept": "application/json"})
    assert answer.status_code == 404
    assert answer.json()["message"] == f"execution {missing} not found"
    assert client.get("/ui/executions/not-a-uuid").status_code == 404


@pytest.mark.req("CONSOLE-SECURITY")
def test_a_session_token_holds_for_its_key_and_its_lifetime_only() -> None:
    """A token verifies with its key until SESSION_SECONDS pass; another key, a tampered
    signature or a token from the future do not."""
    now = 1_800_000_000.0
    token = session_token("key", now)
    assert session_valid("key", token, now + SESSION_SECONDS - 1)
    assert not session_valid("key", token, now + SESSION_SECONDS)
    assert not session_valid("other", token, now)
    assert not session_valid("key", token[:-1] + ("0" if token[-1] != "0" else "1"), now)
    assert not session_valid("key", token, now - 60)
    assert not session_valid("key", "garbage", now)
