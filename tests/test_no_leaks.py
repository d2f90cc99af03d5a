"""No internals leak: no traceback, SQL text or connection string in any answer, and no secret or
SQL text in INFO log lines, for every error path we can provoke; no request turns debug on."""

from __future__ import annotations

import logging
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql as pgsql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from starlette.testclient import TestClient

from lg_deploy.http import create_app
from lg_deploy.logs import ContextFilter
from lg_deploy.settings import load_settings
from lg_deploy.store.memory import InMemoryExecutionStore
from lg_deploy.store.protocol import ExecutionStore
from tests.support.processes import LG_DEPLOY_COMMAND
from tests.support.servers import free_port, running_server
from tests.support.waiting import wait_until

PASSWORD = "s3cr3t-canary-pw"
SQL_TEXT = "SELECT * FROM lg_deploy.executions"
LEAK = f"could not reach postgresql://user:{PASSWORD}@host/db while running {SQL_TEXT}"
# Text no answer may carry: the secret, SQL, connection strings, Python internals.
FORBIDDEN = (PASSWORD, "SELECT", "lg_deploy.executions", "postgresql://", "Traceback",
             'File "', "RuntimeError", "OperationalError", "site-packages")  # fmt: skip
API_KEY = "the-configured-key-0123456789"
UNKNOWN = str(uuid.UUID(int=7))


class FailingStore(InMemoryExecutionStore):
    """Every protocol method raises `error(LEAK)`: a crash or an unreachable database."""

    error: type[Exception] = RuntimeError

    def __getattribute__(self, name: str) -> Any:
        """Protocol methods raise; everything else is the memory store's."""
        if not name.startswith("_") and callable(getattr(ExecutionStore, name, None)):
            error = type(self).error

            async def failing(*args: Any, **kwargs: Any) -> Any:
                raise error(LEAK)

            return failing
        return super().__getattribute__(name)


class DownStore(FailingStore):
    """Behaves as PostgresExecutionStore does when the database cannot be reached."""

    error = psycopg.OperationalError


STORES: dict[str, type[InMemoryExecutionStore]] = {
    "memory": InMemoryExecutionStore,
    "crash": FailingStore,
    "down": DownStore,
}
JSON = {"content-type": "application/json"}
# Requests that reach the store on every route that has one (500 with "crash", 503 with "down").
STORE_ROUTES = [
    ("POST", "/executions", {"json": {"graph_id": "echo"}}),
    ("GET", "/executions", {}),
    ("GET", f"/executions/{UNKNOWN}", {}),
    ("GET", f"/executions/{UNKNOWN}/wait?timeout=1", {}),
    ("POST", f"/executions/{UNKNOWN}/cancel", {}),
    ("GET", f"/executions/{UNKNOWN}/events", {}),
    ("GET", "/metrics", {}),
    ("POST", "/runs", {"json": {"assistant_id": "echo"}}),
    ("POST", "/runs/wait", {"json": {"assistant_id": "echo"}}),
    ("GET", f"/threads/{UNKNOWN}/runs", {}),
    ("GET", f"/threads/{UNKNOWN}/runs/{UNKNOWN}", {}),
    ("GET", f"/threads/{UNKNOWN}/runs/{UNKNOWN}/join", {}),
    ("POST", f"/threads/{UNKNOWN}/runs/{UNKNOWN}/cancel", {}),
]
CLIENT_ERRORS = [
    ("POST", "/executions", {"content": b'{"graph_id": "echo",', "headers": JSON}, 400),
    ("POST", "/executions", {"content": b'{"input": {"x": NaN}}', "headers": JSON}, 400),
    ("POST", "/executions", {"content": b"[" * 100_000, "headers": JSON}, 400),
    ("POST", "/executions", {"content": b"{}" + b" " * 2_000_000, "headers": JSON}, 413),
    ("POST", "/executions", {"content": b"graph_id=echo", "headers": {"content-type": "x"}}, 415),
    ("POST", "/executions", {"json": {"graph_id": "echo", "colour": 1}}, 422),
    ("POST", "/executions", {"json": {"graph_id": "echo", "input": {"t": "\u0000"}}}, 422),
    ("POST", "/executions", {"json": {"graph_id": "no-such-graph"}}, 422),
    ("GET", "/executions?limit=0", {}, 422),
    ("GET", "/executions?cursor=bm90LWEtY3Vyc29y", {}, 422),
    ("GET", "/executions/not-a-uuid", {}, 422),
    ("GET", f"/executions/{UNKNOWN}", {}, 404),
    ("GET", "/no/such/route", {}, 404),
    ("DELETE", "/executions", {}, 405),
    ("POST", "/runs", {"json": {"assistant_id": "nope"}}, 404),
    ("POST", "/assistants/search", {"json": {"limit": -1}}, 422),
]


def client_over(store: str, **env: str) -> TestClient:
    """A client (not yet entered) of an app over one of STORES, memory queue."""
    settings = load_settings({"LG_DEPLOY_BACKEND": "memory", **env})
    app = create_app(settings, store=STORES[store]())
    return TestClient(app, raise_server_exceptions=False)


def assert_no_internals(answer: httpx.Response) -> None:
    """The answer (body and headers) holds no forbidden text; an error is the plain JSON body."""
    text = answer.text + "".join(f"{k}: {v}\n" for k, v in answer.headers.items())
    assert [word for word in FORBIDDEN if word in text] == [], text[:500]
    if answer.status_code >= 400:
        assert answer.headers["content-type"] == "application/json"
        assert set(answer.json()) <= {"error", "message", "request_id", "details", "known_graphs"}


@pytest.mark.req("SEC-LEAKS", "LLD-9.2")
@pytest.mark.parametrize(("store", "status"), [("crash", 500), ("down", 503)])
def test_store_failures_answer_plain_json_without_internals(store: str, status: int) -> None:
    """A crash (500) or an unreachable database (503) on every store route leaks nothing."""
    with client_over(store) as client:
        for method, path, kwargs in STORE_ROUTES:
            answer = client.request(method, path, **kwargs)
            assert answer.status_code == status, (method, path, answer.text)
            assert_no_internals(answer)


@pytest.mark.req("SEC-LEAKS", "LLD-9.2", "API-LIMITS")
def test_client_errors_answer_plain_json_without_internals() -> None:
    """Malformed, oversized, non-JSON, invalid, unknown and wrong-method requests leak nothing."""
    with client_over("memory") as client:
        for method, path, kwargs, status in CLIENT_ERRORS:
            answer = client.request(method, path, **kwargs)
            assert answer.status_code == status, (method, path, answer.text)
            assert_no_internals(answer)


@pytest.mark.req("SEC-LEAKS", "API-AUTH")
def test_401_never_reveals_the_configured_key() -> None:
    """Missing, wrong and near-miss keys answer 401 JSON that never contains the real key."""
    attempts = [{}, {"X-API-Key": "wrong"}, {"Authorization": f"Bearer {API_KEY[:-1]}"},
                {"Authorization": f"Basic {API_KEY}"}, {"X-API-Key": API_KEY + " "}]  # fmt: skip
    with client_over("memory", LG_DEPLOY_API_KEY=API_KEY) as client:
        for headers in attempts:
            for path in ("/executions", "/openapi.json", "/metrics", "/runs"):
                answer = client.get(path, headers=headers)
                assert answer.status_code == 401, (headers, path)
                assert_no_internals(answer)
                assert API_KEY not in answer.text + str(answer.headers)
        assert client.get("/healthz").status_code == 200


@pytest.mark.req("SEC-LEAKS", "LLD-9.2")
@pytest.mark.parametrize(
    "debug",
    [{"headers": {"X-Debug": "1"}}, {"params": {"debug": "1"}}, {"params": {"debug": "true"}},
     {"headers": {"X-Debug-Mode": "true", "X-Starlette-Debug": "1", "Accept": "text/html"}}],
)  # fmt: skip
def test_no_request_switches_debug_on(debug: dict[str, Any]) -> None:
    """Debug-looking headers or query parameters change nothing: a crash is still plain JSON."""
    with client_over("crash") as client:
        # A route that reaches the store and ignores unknown query parameters.
        answer = client.get(f"/threads/{UNKNOWN}/runs/{UNKNOWN}", **debug)
    assert answer.status_code == 500
    assert_no_internals(answer)
    assert set(answer.json()) == {"error", "message", "request_id"}
    assert answer.json()["error"] == "internal_error"


def info_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every INFO (and DEBUG) record, as its message, extra fields and any exception text."""
    return [
        f"{record.getMessage()} {vars(record)} {record.exc_text or ''}"
        for record in caplog.records
        if record.levelno <= logging.INFO
    ]


@pytest.mark.req("SEC-LEAKS", "LLD-7.3")
def test_info_logs_hold_no_secret_or_sql_while_failing(caplog: pytest.LogCaptureFixture) -> None:
    """While answering 500s and 503s, INFO lines hold neither the password nor the SQL text; the
    503 warning names only the exception type; the 500 is logged with its request id."""
    caplog.set_level(logging.DEBUG)
    caplog.handler.addFilter(ContextFilter())  # the request id onto records, as in production
    for store in ("crash", "down"):
        with client_over(store) as client:
            for method, path, kwargs in STORE_ROUTES:
                client.request(method, path, headers={"X-Request-ID": f"leak-{store}"}, **kwargs)
    lines = info_lines(caplog)
    assert any("request completed" in line for line in lines)
    assert [line for line in lines if PASSWORD in line or SQL_TEXT in line] == []
    down = [
        r for r in caplog.records if r.name.startswith("lg_deploy.http") and "database" in r.msg
    ]
    assert down, "no log line for the 503s"
    assert {r.getMessage() for r in down} == {"database unavailable: OperationalError"}
    failed = [r for r in caplog.records if r.getMessage() == "request failed"]
    assert failed
    assert all(r.levelno == logging.ERROR for r in failed)
    assert {getattr(r, "request_id", None) for r in failed} == {"leak-crash"}


@contextmanager
def refusing_connections(db_url: str) -> Iterator[None]:
    """The test database refuses new connections and lg-deploy's are cut, until the block ends."""
    dbname = conninfo_to_dict(db_url)["dbname"]
    database = pgsql.Identifier(str(dbname))
    with psycopg.connect(make_conninfo(db_url, dbname="postgres"), autocommit=True) as admin:
        admin.execute(pgsql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(database))
        try:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND application_name LIKE 'lg-deploy%%'",
                (dbname,),
            )
            yield
        finally:
            admin.execute(pgsql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(database))


@pytest.mark.req("SEC-LEAKS", "SERVE-E2E")
def test_real_outage_keeps_the_password_out_of_answers_and_logs(
    worker_env: dict[str, str], db_url: str, tmp_path: Path
) -> None:
    """A served database URL carrying a password: during an outage the 503s and every log line
    (any level) are free of it, and INFO lines hold no SQL text or connection string."""
    env = {**worker_env, "LG_DEPLOY_POOL_TIMEOUT_SECONDS": "1"}
    env["LG_DEPLOY_DATABASE_URL"] = make_conninfo(db_url, password=PASSWORD)  # trust: ignored
    with running_server(env, tmp_path) as server, server.http() as client:
        assert client.post("/executions", json={"graph_id": "echo"}).status_code == 202
        with refusing_connections(db_url):
            probe = f"/executions/{UNKNOWN}"
            wait_until(lambda: client.get(probe).status_code == 503, 10.0)
            for method, path, kwargs in STORE_ROUTES:
                answer = client.request(method, path, **kwargs)
                assert answer.status_code == 503, (method, path, answer.text)
                assert_no_internals(answer)
        wait_until(lambda: client.get("/readyz").status_code == 200, 20.0)
    output = server.log_path.read_text(encoding="utf-8", errors="replace")
    assert "database unavailable" in output
    assert PASSWORD not in output
    info = [line for line in server.log_lines() if line.get("level") in ("DEBUG", "INFO")]
    assert any(line["message"] == "request completed" for line in info)
    assert [line for line in info if "SELECT" in str(line) or "password" in str(line)] == []


@pytest.mark.req("SEC-LEAKS", "LLD-8.1")
@pytest.mark.parametrize(
    "url",
    [
        f"postgresq://app:{PASSWORD}@127.0.0.1:1/db",
        f"postgresql://app:{PASSWORD}%zz@127.0.0.1:1/db",
    ],
    ids=["bad-scheme", "bad-escape"],
)
def test_malformed_database_url_stops_without_printing_its_password(
    worker_env: dict[str, str], tmp_path: Path, url: str
) -> None:
    """serve with an unparsable LG_DEPLOY_DATABASE_URL exits non-zero and never prints it."""
    env = {**worker_env, "LG_DEPLOY_DATABASE_URL": url, "LG_DEPLOY_PORT": str(free_port())}
    done = subprocess.run(
        [*LG_DEPLOY_COMMAND, "serve"], env=env, cwd=tmp_path, capture_output=True, timeout=60
    )
    output = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode != 0
    assert "LG_DEPLOY_DATABASE_URL" in output
    assert PASSWORD not in output, output[-600:]
