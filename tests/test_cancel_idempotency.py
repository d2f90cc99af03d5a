"""Cancel and idempotency keys over the in-process HTTP API, the store, and plain SQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from starlette.testclient import TestClient

from lg_deploy.errors import IdempotencyKeyUsed
from lg_deploy.http import create_app
from lg_deploy.settings import load_settings
from lg_deploy.store.postgres import PostgresExecutionStore
from tests.support.factories import make_state
from tests.support.waiting import wait_until

LONG_SLEEP = {"graph_id": "sleep", "input": {"seconds": 60}}
CANCEL_SECONDS = 2.0
WAIT_SECONDS = 10.0


@pytest.fixture
def client() -> Iterator[TestClient]:
    """A client of a memory-backend app with its workers running."""
    settings = load_settings(
        {"LG_DEPLOY_BACKEND": "memory", "LG_DEPLOY_SHUTDOWN_GRACE_SECONDS": "0"}
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def post(client: TestClient, status: int = 202, **body: Any) -> dict[str, Any]:
    """POST /executions, expecting `status`."""
    answer = client.post("/executions", json=body)
    assert answer.status_code == status, answer.text
    result: dict[str, Any] = answer.json()
    return result


def get(client: TestClient, execution_id: str) -> dict[str, Any]:
    """GET one execution."""
    state: dict[str, Any] = client.get(f"/executions/{execution_id}").json()
    return state


@pytest.mark.req("DUR-CANCEL")
def test_cancel_of_a_queued_execution_fails_it_at_once(client: TestClient) -> None:
    """Cancelling a QUEUED (delayed) execution answers 200 FAILED "cancelled"; it never runs."""
    execution_id = post(client, graph_id="echo", delay_seconds=60)["execution_id"]
    answer = client.post(f"/executions/{execution_id}/cancel")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["status"], body["error"], body["attempts"]) == ("FAILED", "cancelled", 0)
    assert body["cancel_requested_at"] is not None
    events = client.get(f"/executions/{execution_id}/events").json()["items"]
    assert [(e["from_status"], e["to_status"]) for e in events] == [
        (None, "QUEUED"),
        ("QUEUED", "FAILED"),
    ]
    assert events[-1]["error"] == "cancelled"


@pytest.mark.req("DUR-CANCEL")
def test_cancel_of_a_running_execution_stops_it(client: TestClient) -> None:
    """Cancelling a RUNNING 60 s sleep answers 202, then it is FAILED "cancelled" within 2 s."""
    execution_id = post(client, **LONG_SLEEP)["execution_id"]
    wait_until(lambda: get(client, execution_id)["status"] == "RUNNING")
    answer = client.post(f"/executions/{execution_id}/cancel")
    asked = time.monotonic()
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "RUNNING"
    assert answer.json()["cancel_requested_at"] is not None
    wait_until(lambda: get(client, execution_id)["status"] == "FAILED", CANCEL_SECONDS)
    assert time.monotonic() - asked < CANCEL_SECONDS
    state = get(client, execution_id)
    assert (state["error"], state["attempts"], state["output"]) == ("cancelled", 1, None)


@pytest.mark.req("DUR-CANCEL")
def test_cancel_of_a_final_or_unknown_execution_is_refused(client: TestClient) -> None:
    """Cancelling a COMPLETED execution is 409 (unchanged); an unknown id is 404."""
    execution_id = post(client, graph_id="echo")["execution_id"]
    wait_until(lambda: get(client, execution_id)["status"] == "COMPLETED")
    answer = client.post(f"/executions/{execution_id}/cancel")
    assert answer.status_code == 409, answer.text
    assert get(client, execution_id)["status"] == "COMPLETED"
    unknown = "00000000-0000-4000-8000-000000000000"
    assert client.post(f"/executions/{unknown}/cancel").status_code == 404


@pytest.mark.req("DUR-IDEMPOTENCY")
def test_same_key_in_header_returns_the_first_execution(client: TestClient) -> None:
    """A repeated POST with the same Idempotency-Key and body is 200 with the same execution."""
    body = {"graph_id": "echo", "input": {"n": 1}}
    first = client.post("/executions", json=body, headers={"Idempotency-Key": "order-1"})
    second = client.post("/executions", json=body, headers={"Idempotency-Key": "order-1"})
    assert first.status_code == 202, first.text
    assert "idempotent-replayed" not in first.headers
    assert second.status_code == 200, second.text
    assert second.headers["idempotent-replayed"] == "true"
    execution_id = first.json()["execution_id"]
    assert second.json()["execution_id"] == execution_id
    assert second.headers["location"] == f"/executions/{execution_id}"
    assert first.json()["idempotency_key"] == "order-1"
    listed = client.get("/executions").json()["items"]
    assert [item["execution_id"] for item in listed] == [execution_id]


@pytest.mark.req("DUR-IDEMPOTENCY")
def test_same_key_in_body_returns_the_first_execution(client: TestClient) -> None:
    """The body field idempotency_key dedupes too, also against a key first sent as a header."""
    body = {"graph_id": "echo", "input": {"n": 2}, "idempotency_key": "order-2"}
    first = post(client, **body)
    again = post(client, status=200, **body)
    assert again["execution_id"] == first["execution_id"]
    by_header = {"graph_id": "echo", "input": {"n": 3}}
    third = client.post("/executions", json=by_header, headers={"Idempotency-Key": "order-3"})
    replay = post(client, status=200, **by_header, idempotency_key="order-3")
    assert replay["execution_id"] == third.json()["execution_id"]


@pytest.mark.req("DUR-IDEMPOTENCY")
def test_same_key_with_a_different_input_is_a_conflict(client: TestClient) -> None:
    """Same key, different input: 409 idempotency_conflict naming the existing execution."""
    first = post(client, graph_id="echo", input={"n": 1}, idempotency_key="k")
    answer = client.post(
        "/executions", json={"graph_id": "echo", "input": {"n": 2}, "idempotency_key": "k"}
    )
    assert answer.status_code == 409, answer.text
    body = answer.json()
    assert body["error"] == "idempotency_conflict"
    assert body["execution_id"] == first["execution_id"]
    assert body["request_id"] == answer.headers["x-request-id"]
    other_graph = client.post("/executions", json={"graph_id": "sleep", "idempotency_key": "k"})
    assert other_graph.status_code == 409


@pytest.mark.req("DUR-IDEMPOTENCY")
@pytest.mark.parametrize(
    ("header", "body_key"),
    [("a", "b"), ("x" * 201, None), (None, "x" * 201), ("", None)],
    ids=["header-and-body-differ", "header-too-long", "body-too-long", "header-empty"],
)
def test_bad_idempotency_keys_are_refused(
    client: TestClient, header: str | None, body_key: str | None
) -> None:
    """Header and body keys that differ, or a key over 200 characters (or empty), are 422."""
    body: dict[str, Any] = {"graph_id": "echo"}
    if body_key is not None:
        body["idempotency_key"] = body_key
    headers = {"Idempotency-Key": header} if header is not None else {}
    answer = client.post("/executions", json=body, headers=headers)
    assert answer.status_code == 422, answer.text
    assert client.get("/executions").json()["items"] == []


@pytest.mark.req("DUR-IDEMPOTENCY")
async def test_concurrent_creates_with_one_key_store_one_row(
    pool: AsyncConnectionPool[Any], sql: psycopg.Connection[Any]
) -> None:
    """20 concurrent store.create with one key: one row; the rest get IdempotencyKeyUsed with it."""
    store = PostgresExecutionStore(pool)
    outcomes = await asyncio.gather(
        *(store.create(make_state(idempotency_key="same")) for _ in range(20)),
        return_exceptions=True,
    )
    created = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, IdempotencyKeyUsed)]
    assert len(created) == 1
    assert len(refused) == 19
    assert {r.existing.execution_id for r in refused} == {created[0].execution_id}  # type: ignore[attr-defined]
    rows = sql.execute(
        "SELECT execution_id::text FROM lg_deploy.executions WHERE idempotency_key = 'same'"
    ).fetchall()
    assert rows == [(created[0].execution_id,)]


@pytest.mark.req("DUR-IDEMPOTENCY")
def test_idempotent_insert_from_sql(sql: psycopg.Connection[Any]) -> None:
    """In SQL, ON CONFLICT on the key inserts once; a plain second INSERT violates the index."""
    insert = (
        "INSERT INTO lg_deploy.executions (graph_id, input, idempotency_key)"
        " VALUES ('echo', '{\"n\": 1}', 'from-sql')"
    )
    on_conflict = (
        insert + " ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL"
        " DO NOTHING RETURNING execution_id"
    )
    assert len(sql.execute(on_conflict).fetchall()) == 1
    assert sql.execute(on_conflict).fetchall() == []
    with pytest.raises(psycopg.errors.UniqueViolation) as raised:
        sql.execute(insert)
    assert raised.value.diag.constraint_name == "executions_idempotency_key_idx"
    count = sql.execute(
        "SELECT count(*) FROM lg_deploy.executions WHERE idempotency_key = 'from-sql'"
    ).fetchone()
    assert count == (1,)
