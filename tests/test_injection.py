"""SQL injection probes in every field and parameter of every route: never 5xx, nothing altered.

Every probe goes into every field, header, query parameter and path id; each answer is the one
documented for that operation (2xx where the field stores text, 4xx where it is refused). Run
on the memory app (breadth, in process) and on a real `lg-deploy serve` over PostgreSQL, where
the stored strings must come back byte for byte, over HTTP and in SQL, and the tables must hold
exactly the executions that were legitimately created.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
import pytest
from starlette.testclient import TestClient

from lg_deploy.http import create_app
from lg_deploy.settings import load_settings
from tests.support.servers import running_server

PROBES = {
    "quote": "'",
    "drop": "'; DROP TABLE lg_deploy.executions; --",
    "or-1": '" OR 1=1 --',
    "or-str": "' OR '1'='1",
    "pyformat": "%(x)s",
    "format": "%s %% %b",
    "backslash": "\\'\\\\ \\x00",
    "dollar": "$1 $$ ; /* */ -- ::jsonb",
    "json": '{"$ne": null} ]}',
    "big": "A'-" * 2731,  # 8 KB
    "unicode": "Ünïcødé ✓ 𝄞 中文 \u202e إ ';--",
}
ASCII = {name for name, value in PROBES.items() if value.isascii()}
VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")  # README: what is echoed
KEY_LIMIT = 200  # idempotency keys and assistant ids: 1-200 characters
NAME_LIMIT = 1_000  # an assistant's name


@dataclass
class Ctx:
    """What an injection needs: a client, one COMPLETED execution, and every id created."""

    client: httpx.Client
    done: str
    created: set[str] = field(default_factory=set)

    @staticmethod
    def tag() -> str:
        """A fresh value, so that no two submissions share graph and input by accident."""
        return uuid.uuid4().hex[:8]

    def assistant(self) -> str:
        """A new stored assistant of the echo graph."""
        answer = self.client.post("/assistants", json={"graph_id": "echo"})
        assert answer.status_code == 200, answer.text
        assistant_id: str = answer.json()["assistant_id"]
        return assistant_id

    def run_later(self) -> str:
        """A new run due in an hour (pending, so it can be cancelled)."""
        answer = self.client.post("/runs", json={"assistant_id": "echo", "after_seconds": 3600})
        assert answer.status_code == 200, answer.text
        run_id: str = answer.json()["run_id"]
        self.created.add(run_id)
        return run_id


Send = Callable[[Ctx, str], httpx.Response]
Expect = Callable[[str], set[int]]
OK, CREATED, REFUSED, MISSING = {200}, {202}, {422}, {404}


def _fits(limit: int, ok: set[int]) -> Expect:
    return lambda probe: ok if len(probe) <= limit else REFUSED


def _submit(ctx: Ctx, headers: dict[str, bytes] | None = None, **body: Any) -> httpx.Response:
    return ctx.client.post("/executions", json={"graph_id": "echo", **body}, headers=headers)


def _run(ctx: Ctx, path: str = "/runs", **body: Any) -> httpx.Response:
    return ctx.client.post(path, json={"assistant_id": "echo", **body})


def _assistant(ctx: Ctx, **body: Any) -> httpx.Response:
    return ctx.client.post("/assistants", json={"graph_id": "echo", **body})


def _seg(probe: str) -> str:
    return quote(probe, safe="")


def _by_id(method: str, path: str) -> Send:
    return lambda c, p: c.client.request(method, path.format(id=_seg(p), done=c.done))


# (name, send, expected statuses), each documented for its operation. A path id holding "/"
# matches no route: 404.
INJECTIONS: list[tuple[str, Send, Expect]] = [
    ("submit-graph_id", lambda c, p: c.client.post("/executions", json={"graph_id": p}),
     lambda p: REFUSED),
    ("submit-input-key", lambda c, p: _submit(c, input={p: c.tag()}), lambda p: CREATED),
    ("submit-input-value", lambda c, p: _submit(c, input={"v": p, "t": c.tag()}),
     lambda p: CREATED),
    ("submit-idempotency-body", lambda c, p: _submit(c, idempotency_key=p, input={"b": 1}),
     _fits(KEY_LIMIT, CREATED)),
    ("submit-idempotency-header",
     lambda c, p: _submit(c, {"Idempotency-Key": f"h{p}".encode()}, input={"h": 1}),
     _fits(KEY_LIMIT - 1, CREATED)),
    ("submit-request-id", lambda c, p: _submit(c, {"X-Request-ID": p.encode()}),
     lambda p: CREATED),
    ("submit-priority", lambda c, p: _submit(c, priority=p), lambda p: REFUSED),
    ("submit-max_attempts", lambda c, p: _submit(c, max_attempts=p), lambda p: REFUSED),
    ("submit-run_at", lambda c, p: _submit(c, run_at=p), lambda p: REFUSED),
    ("submit-delay_seconds", lambda c, p: _submit(c, delay_seconds=p), lambda p: REFUSED),
    ("submit-timeout_seconds", lambda c, p: _submit(c, timeout_seconds=p), lambda p: REFUSED),
    ("submit-unknown-field", lambda c, p: _submit(c, **{p: 1}), lambda p: REFUSED),
    ("submit-content-type", lambda c, p: c.client.post(
        "/executions", content=b'{"graph_id": "echo"}', headers={"content-type": p.encode()}),
     lambda p: {415}),
    ("list-status", lambda c, p: c.client.get("/executions", params={"status": p}),
     lambda p: REFUSED),
    ("list-graph_id", lambda c, p: c.client.get("/executions", params={"graph_id": p}),
     lambda p: REFUSED),
    ("list-cursor", lambda c, p: c.client.get("/executions", params={"cursor": p}),
     lambda p: REFUSED),
    ("list-limit", lambda c, p: c.client.get("/executions", params={"limit": p}),
     lambda p: REFUSED),
    ("list-unknown-param", lambda c, p: c.client.get("/executions", params={p: "1"}),
     lambda p: REFUSED),
    *[(f"by-id-{method}{suffix}", _by_id(method, "/executions/{id}" + suffix),
       lambda p: MISSING if "/" in p else REFUSED)
      for method, suffix in [("GET", ""), ("GET", "/wait"), ("POST", "/cancel"),
                             ("GET", "/events")]],
    ("wait-timeout", lambda c, p: c.client.get(f"/executions/{c.done}/wait",
                                               params={"timeout": p}), lambda p: REFUSED),
    ("search-graph_id", lambda c, p: c.client.post("/assistants/search", json={"graph_id": p}),
     lambda p: OK),
    ("search-name", lambda c, p: c.client.post("/assistants/search", json={"name": p}),
     lambda p: OK),
    ("search-metadata", lambda c, p: c.client.post("/assistants/search",
                                                   json={"metadata": {p: p}}), lambda p: OK),
    ("search-limit", lambda c, p: c.client.post("/assistants/search", json={"limit": p}),
     lambda p: REFUSED),
    ("search-offset", lambda c, p: c.client.post("/assistants/search", json={"offset": p}),
     lambda p: REFUSED),
    ("assistant-id", _by_id("GET", "/assistants/{id}"), lambda p: MISSING),
    *[(f"assistant-id-{method}{suffix}", _by_id(method, "/assistants/{id}" + suffix),
       lambda p: MISSING)
      for method, suffix in [("PATCH", ""), ("DELETE", ""), ("POST", "/versions"),
                             ("GET", "/graph"), ("GET", "/schemas"), ("GET", "/subgraphs")]],
    ("assistant-id-latest", lambda c, p: c.client.post(f"/assistants/{_seg(p)}/latest",
                                                       json={"version": 1}), lambda p: MISSING),
    ("assistant-create-graph_id", lambda c, p: c.client.post("/assistants", json={"graph_id": p}),
     lambda p: REFUSED),
    ("assistant-create-id", lambda c, p: _assistant(c, assistant_id=p), lambda p: REFUSED),
    ("assistant-create-name", lambda c, p: _assistant(c, name=p), _fits(NAME_LIMIT, OK)),
    ("assistant-create-description", lambda c, p: _assistant(c, description=p), lambda p: OK),
    ("assistant-create-metadata", lambda c, p: _assistant(c, metadata={p: p}), lambda p: OK),
    ("assistant-create-config", lambda c, p: _assistant(c, config={"configurable": {p: p}}),
     lambda p: OK),
    ("assistant-patch-graph_id", lambda c, p: c.client.patch(
        f"/assistants/{c.assistant()}", json={"graph_id": p}), lambda p: REFUSED),
    ("assistant-patch-name", lambda c, p: c.client.patch(
        f"/assistants/{c.assistant()}", json={"name": p}), _fits(NAME_LIMIT, OK)),
    ("assistant-search-sort_by", lambda c, p: c.client.post("/assistants/search",
                                                            json={"sort_by": p}),
     lambda p: REFUSED),
    ("assistant-search-select", lambda c, p: c.client.post("/assistants/search",
                                                           json={"select": [p]}),
     lambda p: REFUSED),
    ("assistant-count-name", lambda c, p: c.client.post("/assistants/count", json={"name": p}),
     lambda p: OK),
    ("assistant-versions-metadata", lambda c, p: c.client.post(
        f"/assistants/{c.assistant()}/versions", json={"metadata": {p: p}}), lambda p: OK),
    ("assistant-latest-version", lambda c, p: c.client.post(
        f"/assistants/{c.assistant()}/latest", json={"version": p}), lambda p: REFUSED),
    ("assistant-graph-xray", lambda c, p: c.client.get("/assistants/echo/graph",
                                                       params={"xray": p}), lambda p: REFUSED),
    ("assistant-subgraphs-recurse", lambda c, p: c.client.get(
        "/assistants/echo/subgraphs", params={"recurse": p}), lambda p: REFUSED),
    ("assistant-subgraphs-namespace", _by_id("GET", "/assistants/echo/subgraphs/{id}"),
     lambda p: MISSING if "/" in p else OK),
    ("assistant-delete-threads", lambda c, p: c.client.delete(
        f"/assistants/{c.assistant()}", params={"delete_threads": p}), lambda p: REFUSED),
    ("run-assistant_id", lambda c, p: c.client.post("/runs", json={"assistant_id": p}),
     _fits(KEY_LIMIT, MISSING)),
    ("run-input-key", lambda c, p: _run(c, input={p: c.tag()}), lambda p: OK),
    ("run-input-value", lambda c, p: _run(c, input={"v": p, "t": c.tag()}), lambda p: OK),
    ("run-metadata", lambda c, p: _run(c, metadata={p: p}), lambda p: OK),
    ("run-multitask", lambda c, p: _run(c, multitask_strategy=p), lambda p: REFUSED),
    ("run-after_seconds", lambda c, p: _run(c, after_seconds=p), lambda p: REFUSED),
    ("run-unknown-key", lambda c, p: _run(c, **{p: p}), lambda p: OK),
    ("run-wait-input", lambda c, p: _run(c, "/runs/wait", input={p: p}), lambda p: OK),
    ("thread-id", _by_id("GET", "/threads/{id}/runs"), lambda p: MISSING),
    ("thread-runs-limit", lambda c, p: c.client.get(f"/threads/{c.done}/runs",
                                                    params={"limit": p}), lambda p: REFUSED),
    ("thread-runs-status", lambda c, p: c.client.get(f"/threads/{c.done}/runs",
                                                     params={"status": p}), lambda p: OK),
    *[(f"run-id-{method}{suffix}", _by_id(method, "/threads/{done}/runs/{id}" + suffix),
       lambda p: MISSING) for method, suffix in [("GET", ""), ("GET", "/join"),
                                                 ("POST", "/cancel")]],
    ("cancel-wait-param", lambda c, p: c.client.post(
        f"/threads/{(run := c.run_later())}/runs/{run}/cancel", params={"wait": p}),
     lambda p: {204}),
]  # fmt: skip
CREATING = {"/executions", "/runs", "/runs/wait"}


def probe_everything(client: httpx.Client) -> tuple[set[str], list[str]]:
    """Every probe in every injection; (ids created, every answer other than expected)."""
    first = client.post("/executions", json={"graph_id": "echo"}).json()["execution_id"]
    state = client.get(f"/executions/{first}/wait", params={"timeout": 10}).json()
    assert state["status"] == "COMPLETED"
    ctx, wrong = Ctx(client, first, {first}), []
    for name, send, expect in INJECTIONS:
        for probe_name, probe in PROBES.items():
            answer = send(ctx, probe)
            assert VALID_REQUEST_ID.match(answer.headers["x-request-id"]), name
            if answer.status_code not in expect(probe):
                wrong.append(f"{name}/{probe_name}: {answer.status_code} {answer.text[:200]}")
            elif answer.status_code >= 400:
                assert answer.json()["request_id"] == answer.headers["x-request-id"]
            if answer.request.url.path in CREATING and answer.is_success:
                ctx.created.add(created_id(answer))
    return ctx.created, wrong


def created_id(answer: httpx.Response) -> str:
    """The execution an accepted submission created (a run: from its Content-Location)."""
    if "content-location" in answer.headers:
        return answer.headers["content-location"].rsplit("/", 1)[-1]
    execution_id: str = answer.json()["execution_id"]
    return execution_id


def listed_ids(client: httpx.Client) -> set[str]:
    """Every execution id GET /executions lists, following next_cursor."""
    ids: set[str] = set()
    params: dict[str, Any] = {"limit": 200}
    while True:
        page = client.get("/executions", params=params).json()
        ids |= {item["execution_id"] for item in page["items"]}
        if not page["next_cursor"]:
            return ids
        params["cursor"] = page["next_cursor"]


@contextmanager
def serving(env: dict[str, str], tmp_path: Path) -> Iterator[httpx.Client]:
    """A real `lg-deploy serve` on a free port; yields an HTTP client of it."""
    env = {**env, "LG_DEPLOY_LOG_LEVEL": "WARNING"}
    with running_server(env, tmp_path) as server, server.http() as client:
        yield client


def memory_client() -> TestClient:
    """An in-process client of a memory-backend app."""
    app = create_app(load_settings({"LG_DEPLOY_BACKEND": "memory"}))
    return TestClient(app, raise_server_exceptions=False)


# LangGraph's tables, made by the first start: its checkpointer's and its store's.
CHECKPOINT_TABLES = {
    f"table {name}"
    for name in (
        "checkpoints",
        "checkpoint_blobs",
        "checkpoint_writes",
        "checkpoint_migrations",
        "store",
        "store_migrations",
    )
}
SCHEMA_OBJECTS = """
SELECT 'table ' || tablename FROM pg_tables WHERE schemaname = 'lg_deploy'
UNION ALL SELECT 'view ' || viewname FROM pg_views WHERE schemaname = 'lg_deploy'
UNION ALL SELECT 'trigger ' || tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'lg_deploy'
UNION ALL SELECT 'function ' || proname FROM pg_proc p JOIN pg_namespace n
    ON n.oid = p.pronamespace WHERE n.nspname = 'lg_deploy'
"""


def schema_objects(sql: psycopg.Connection[Any]) -> set[str]:
    """Names of the tables, views, triggers and functions in schema lg_deploy."""
    return {row[0] for row in sql.execute(SCHEMA_OBJECTS).fetchall()}


@pytest.mark.req("SEC-INJECTION", "API-LIMITS")
def test_probes_in_every_field_answer_as_documented_on_the_memory_app() -> None:
    """Each probe in each field/parameter/path id answers its documented 2xx or 4xx, never 5xx."""
    with memory_client() as client:
        created, wrong = probe_everything(client)
        assert wrong == []
        assert listed_ids(client) == created


@pytest.mark.req("SEC-INJECTION", "API-LIMITS")
def test_probes_on_postgres_leave_tables_and_rows_intact(
    worker_env: dict[str, str], tmp_path: Path, sql: psycopg.Connection[Any]
) -> None:
    """Over a real server: documented answers only; every table, trigger and function remains
    (LangGraph's checkpoint and store tables are added at the first start), and the tables
    hold exactly the executions (with history) that were legitimately created."""
    before = schema_objects(sql)
    assert {"table executions", "table execution_events"} <= before
    with serving(worker_env, tmp_path) as client:
        created, wrong = probe_everything(client)
        assert wrong == []
        assert listed_ids(client) == created
    assert schema_objects(sql) == before | CHECKPOINT_TABLES  # the first start creates these
    rows = sql.execute("SELECT execution_id::text FROM lg_deploy.executions").fetchall()
    assert {row[0] for row in rows} == created
    assert len(rows) == len(created)
    with_history = sql.execute(
        "SELECT count(DISTINCT execution_id) FROM lg_deploy.execution_events"
        " WHERE from_status IS NULL"
    ).fetchone()
    assert with_history == (len(created),)


REQUEST_ID = "sql--comment::cast.x"  # as suspicious as a valid X-Request-ID can be


def submit_probe(client: httpx.Client, name: str, probe: str) -> dict[str, Any]:
    """Submit echo with the probe in input keys and values, idempotency key and request id."""
    headers = {"X-Request-ID": REQUEST_ID}
    body: dict[str, Any] = {"graph_id": "echo", "input": {probe: probe, "v": [probe, {"n": name}]}}
    if len(probe) <= KEY_LIMIT and name in ASCII:
        headers["Idempotency-Key"] = probe  # a header carries ASCII only
    elif len(probe) <= KEY_LIMIT:
        body["idempotency_key"] = probe
    answer = client.post("/executions", json=body, headers=headers)
    assert answer.status_code == 202, answer.text
    sent = {**body, "idempotency_key": headers.get("Idempotency-Key", body.get("idempotency_key"))}
    return {**sent, "execution_id": answer.json()["execution_id"]}


@pytest.mark.req("SEC-INJECTION", "API-EXECUTIONS", "SDK-COMPAT")
def test_stored_probes_come_back_byte_for_byte_over_http_sql_and_the_worker(
    worker_env: dict[str, str], tmp_path: Path, sql: psycopg.Connection[Any]
) -> None:
    """Probes stored in input, metadata, idempotency key and request id read back identical
    from GET, from the LangGraph run, from SQL, and as the echo graph's output."""
    with serving(worker_env, tmp_path) as client:
        submitted = [submit_probe(client, name, probe) for name, probe in PROBES.items()]
        runs = []
        for probe in PROBES.values():
            body = {"assistant_id": "echo", "input": {"v": probe}, "metadata": {probe: probe}}
            answer = client.post("/runs", json=body)
            assert answer.status_code == 200, answer.text
            runs.append((answer.json()["run_id"], body))
        for sent in submitted:
            state = client.get(f"/executions/{sent['execution_id']}/wait", params={"timeout": 15})
            got = state.json()
            assert (got["status"], got["output"]) == ("COMPLETED", sent["input"])
            assert (got["input"], got["idempotency_key"]) == (
                sent["input"],
                sent["idempotency_key"],
            )
            assert got["request_id"] == REQUEST_ID
            row = sql.execute(
                "SELECT input, output, idempotency_key, request_id FROM lg_deploy.executions"
                " WHERE execution_id = %s",
                (sent["execution_id"],),
            ).fetchone()
            assert row == (sent["input"], sent["input"], sent["idempotency_key"], REQUEST_ID)
        for run_id, body in runs:
            run = client.get(f"/threads/{run_id}/runs/{run_id}").json()
            assert (run["kwargs"]["input"], run["metadata"]) == (body["input"], body["metadata"])
            row = sql.execute(
                "SELECT input->>'v', metadata FROM lg_deploy.executions WHERE execution_id = %s",
                (run_id,),
            ).fetchone()
            assert row is not None
            assert row[0].encode() == body["input"]["v"].encode()
            assert row[1] == body["metadata"]


@pytest.mark.req("SEC-INJECTION", "ASSISTANTS")
def test_stored_assistant_probes_come_back_byte_for_byte_over_http_and_sql(
    worker_env: dict[str, str], tmp_path: Path, sql: psycopg.Connection[Any]
) -> None:
    """Probes stored in an assistant's name, description, metadata, config and context, and in
    an update's metadata, read back identical from GET, versions, search and SQL."""
    with serving(worker_env, tmp_path) as client:
        for name, probe in PROBES.items():
            body = {
                "graph_id": "echo",
                "name": probe if len(probe) <= NAME_LIMIT else name,
                "description": probe,
                "metadata": {probe: probe},
                "config": {"configurable": {"p": probe}},
                "context": {"p": probe},
            }
            made = client.post("/assistants", json=body)
            assert made.status_code == 200, made.text
            assistant_id = made.json()["assistant_id"]
            path = f"/assistants/{assistant_id}"
            changed = client.patch(path, json={"metadata": {"v": probe}}).json()
            got = client.get(path).json()
            assert got == changed
            assert {key: got[key] for key in body} == {
                **body,
                "metadata": {probe: probe, "v": probe},
            }
            versions = client.post(f"{path}/versions", json={"metadata": {probe: probe}}).json()
            assert [v["version"] for v in versions] == [2, 1]
            found = client.post("/assistants/search", json={"metadata": {probe: probe}}).json()
            assert [a["assistant_id"] for a in found] == [assistant_id]
            row = sql.execute(
                "SELECT name, description, metadata, config, context FROM lg_deploy.assistants"
                " WHERE assistant_id = %s",
                (assistant_id,),
            ).fetchone()
            assert row is not None
            assert (row[0].encode(), row[1].encode()) == (body["name"].encode(), probe.encode())
            assert row[2:] == ({probe: probe, "v": probe}, body["config"], body["context"])


@pytest.mark.req("API-LIMITS")
def test_unknown_query_parameters_are_refused_on_every_execution_and_graph_route() -> None:
    """A misspelt query parameter is 422 on every /executions and /graphs route, as documented
    (typos must not pass silently), whether or not the route takes parameters."""
    with memory_client() as client:
        done = client.post("/executions", json={"graph_id": "echo"}).json()["execution_id"]
        client.get(f"/executions/{done}/wait", params={"timeout": 10})
        routes = [("GET", "/executions"), ("GET", f"/executions/{done}"),
                  ("GET", f"/executions/{done}/wait"), ("POST", f"/executions/{done}/cancel"),
                  ("GET", f"/executions/{done}/events"), ("GET", "/graphs")]  # fmt: skip
        answers = {
            f"{method} {path}": client.request(method, path, params={"colour": "red"}).status_code
            for method, path in routes
        }
    assert answers == {route: 422 for route in answers}
