"""Durable webhooks with real processes and a real receiver on 127.0.0.1: retries, signatures,
a sender SIGKILLed mid-delivery, a receiver that hangs, the allow-list, the default URL, and what
psql and GET /executions/{id}/webhooks show (docs/webhooks.md)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from tests.support.processes import Workers
from tests.support.receiver import (
    SECRET,
    always_ok,
    fail_twice,
    hang,
    hang_first,
    receiving,
)
from tests.support.servers import StartServer
from tests.support.sql import insert_row, scalar, status_of
from tests.support.waiting import wait_until

SqlConn = psycopg.Connection[Any]
DELIVERY_SECONDS = 30.0
WEBHOOK_ENV = {
    "LG_DEPLOY_WEBHOOK_SECRET": SECRET,
    "LG_DEPLOY_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
    "LG_DEPLOY_WEBHOOK_BACKOFF_SECONDS": "0.05",
    "LG_DEPLOY_WEBHOOK_BACKOFF_MAX_SECONDS": "0.2",
}
FINAL = ("COMPLETED", "FAILED", "INTERRUPTED")


def delivery_of(sql: SqlConn, execution_id: str) -> dict[str, Any] | None:
    """The execution's row of lg_deploy.webhook_deliveries, as psql reads it."""
    with sql.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT delivery_id::text, url, status, attempts, max_attempts, delivered_at,"
            " last_status_code, last_error FROM lg_deploy.webhook_deliveries"
            " WHERE execution_id = %s",
            (execution_id,),
        )
        return cur.fetchone()


def tries_of(sql: SqlConn, delivery_id: str) -> list[dict[str, Any]]:
    """The delivery's rows of lg_deploy.webhook_attempts, in order."""
    with sql.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT attempt, worker_id, started_at, finished_at, status_code, error, duration_ms"
            " FROM lg_deploy.webhook_attempts WHERE delivery_id = %s ORDER BY attempt",
            (delivery_id,),
        )
        return cur.fetchall()


def settled(sql: SqlConn, ids: list[str], status: str = "delivered") -> bool:
    """True once every execution of `ids` has a delivery in `status`."""
    found = scalar(
        sql,
        "SELECT count(*) FROM lg_deploy.webhook_deliveries"
        " WHERE execution_id = ANY(%s::uuid[]) AND status = %s",
        ids,
        status,
    )
    return int(found) == len(ids)


def submit(client: httpx.Client, body: dict[str, Any]) -> str:
    """POST /executions; the new execution's id."""
    answer = client.post("/executions", json=body)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["execution_id"])


def run_id(answer: httpx.Response) -> str:
    """The run id of a LangGraph run-creating answer."""
    assert answer.status_code == 200, answer.text
    return str(answer.json()["run_id"])


def make_every_kind_of_final(client: httpx.Client, sql: SqlConn, hook: str) -> dict[str, str]:
    """Executions ending each way, from each door, all naming `hook`: {kind: execution id}."""
    made = {
        "completed": submit(client, {"graph_id": "echo", "input": {"n": 1}, "webhook": hook}),
        "failed": submit(client, {"graph_id": "fail", "input": {}, "webhook": hook}),
        "sql": insert_row(sql, input=Jsonb({"from": "psql"}), webhook=hook),
        "run": run_id(
            client.post("/runs", json={"assistant_id": "echo", "input": {"r": 1}, "webhook": hook})
        ),
    }
    later = submit(client, {"graph_id": "echo", "delay_seconds": 3600, "webhook": hook})
    assert client.post(f"/executions/{later}/cancel").status_code == 200
    made["cancelled"] = later
    sleeping = submit(client, {"graph_id": "sleep", "input": {"seconds": 60}, "webhook": hook})
    wait_until(lambda: status_of(sql, sleeping) == "RUNNING")
    assert client.post(f"/executions/{sleeping}/cancel").status_code == 202
    made["stopped"] = sleeping
    thread = client.post("/threads", json={}).json()["thread_id"]
    body = {"assistant_id": "approval", "input": {"request": "leave"}, "webhook": hook}
    made["interrupted"] = run_id(client.post(f"/threads/{thread}/runs", json=body))
    return made


def assert_body(kind: str, execution_id: str, body: dict[str, Any]) -> None:
    """The body is the execution (plain) or the platform's run (LangGraph routes), final."""
    if kind in ("run", "interrupted"):
        assert body["run_id"] == execution_id
        assert body["status"] == "success"
        assert body["run_ended_at"]
        assert body["webhook_sent_at"]
        assert body["kwargs"]["webhook"].endswith("/hooks")
        assert body["values"] == ({"r": 1} if kind == "run" else body["values"])
        if kind == "interrupted":
            assert "__interrupt__" in body["values"]
        return
    assert body["execution_id"] == execution_id
    expected = {"completed": "COMPLETED", "sql": "COMPLETED"}.get(kind, "FAILED")
    assert body["status"] == expected
    if kind in ("cancelled", "stopped"):
        assert body["error"] == "cancelled"


@pytest.mark.req("WEBHOOK-OUTBOX", "WEBHOOK-DELIVERY", "WEBHOOK-SIGNED", "WEBHOOK-PAYLOAD")
def test_every_final_execution_arrives_signed_on_the_third_try(
    worker_env: dict[str, str], start_server: StartServer, sql: SqlConn
) -> None:
    """Every kind of final run, from every door, arrives signed on try 3 with one delivery id."""
    with receiving(fail_twice) as receiver:
        server = start_server(worker_env, **WEBHOOK_ENV)
        hook = f"{receiver.url}/hooks"
        with server.http() as client:
            made = make_every_kind_of_final(client, sql, hook)
            ids = list(made.values())
            wait_until(lambda: settled(sql, ids), DELIVERY_SECONDS)
        for kind, execution_id in made.items():
            assert status_of(sql, execution_id) in FINAL
            delivery = delivery_of(sql, execution_id)
            assert delivery is not None
            assert (delivery["status"], delivery["attempts"], delivery["url"]) == (
                "delivered",
                3,
                hook,
            )
            tries = tries_of(sql, delivery["delivery_id"])
            assert [(t["attempt"], t["status_code"]) for t in tries] == [
                (1, 500),
                (2, 500),
                (3, 200),
            ]
            assert [t["error"] for t in tries] == ["HTTP 500", "HTTP 500", None]
            got = receiver.of(delivery["delivery_id"])
            assert [r.attempt for r in got] == [1, 2, 3]
            assert all(r.signed_with(SECRET) and r.execution_id == execution_id for r in got)
            assert not any(r.signed_with("another-secret-0123456789") for r in got)
            assert all(r.path == "/hooks" for r in got)
            assert_body(kind, execution_id, got[-1].json())


@pytest.mark.req("WEBHOOK-DELIVERY", "WEBHOOK-SIGNED")
def test_a_sender_killed_mid_delivery_loses_no_webhook(workers: Workers, sql: SqlConn) -> None:
    """A worker SIGKILLed mid-try: another sends all after the lease; the cut try is logged lost."""
    with receiving(hang) as receiver:
        hook = f"{receiver.url}/hooks"
        first = workers.start(
            **WEBHOOK_ENV,
            LG_DEPLOY_WEBHOOK_CONCURRENCY="1",
            LG_DEPLOY_WEBHOOK_TIMEOUT_SECONDS="5",
            LG_DEPLOY_LEASE_SECONDS="1",
        )
        graphs = ["echo", "fail", "echo", "fail", "echo"]
        ids = [insert_row(sql, graph_id=graph, webhook=hook) for graph in graphs]

        def final_and_one_in_flight() -> bool:
            ended = scalar(
                sql,
                "SELECT count(*) FROM lg_deploy.executions WHERE status IN ('COMPLETED', 'FAILED')",
            )
            return int(ended) == len(ids) and len(receiver.got()) >= 1

        wait_until(final_and_one_in_flight)
        first.process.kill()
        first.process.wait(10)
        killed_at = time.time()
        cut = receiver.got()
        assert len(cut) == 1
        receiver.rule = always_ok
        receiver.released.set()
        workers.start(**WEBHOOK_ENV)
        wait_until(lambda: settled(sql, ids), DELIVERY_SECONDS)
    for execution_id in ids:
        answered = [
            r for r in receiver.got() if r.execution_id == execution_id and r.at > killed_at
        ]
        assert answered
        assert all(r.signed_with(SECRET) for r in answered)
    lost = delivery_of(sql, cut[0].execution_id)
    assert lost is not None
    assert lost["attempts"] == 2
    tries = tries_of(sql, lost["delivery_id"])
    assert tries[0]["error"].startswith("lease expired: sender ")
    assert "recorded no outcome of attempt 1 of 10" in tries[0]["error"]
    assert tries[1]["status_code"] == 200
    assert tries[1]["worker_id"] != tries[0]["worker_id"]
    assert [r.attempt for r in receiver.of(lost["delivery_id"])] == [1, 2]


@pytest.mark.req("WEBHOOK-TIMEOUT")
def test_a_hanging_receiver_holds_no_execution_slot(workers: Workers, sql: SqlConn) -> None:
    """With one graph slot, runs finish while a try hangs; it times out after 5 s, then retried."""
    with receiving(hang_first) as receiver:
        workers.start(
            **WEBHOOK_ENV,
            LG_DEPLOY_WORKER_CONCURRENCY="1",
            LG_DEPLOY_WEBHOOK_TIMEOUT_SECONDS="5",
        )
        hooked = insert_row(sql, webhook=f"{receiver.url}/hooks")
        wait_until(lambda: len(receiver.got()) == 1)
        others = [insert_row(sql, input=Jsonb({"i": i})) for i in range(3)]
        wait_until(lambda: all(status_of(sql, other) == "COMPLETED" for other in others))
        assert len(receiver.got()) == 1, "the hanging try had already ended"
        wait_until(lambda: settled(sql, [hooked]), DELIVERY_SECONDS)
    delivery = delivery_of(sql, hooked)
    assert delivery is not None
    hung, sent = tries_of(sql, delivery["delivery_id"])
    assert hung["error"] == "timed out after 5 s"
    assert hung["status_code"] is None
    assert 4_500 <= hung["duration_ms"] < 10_000
    assert sent["status_code"] == 200
    finished = sql.execute(
        "SELECT finished_at FROM lg_deploy.executions WHERE execution_id = ANY(%s::uuid[])",
        (others,),
    ).fetchall()
    assert all(hung["started_at"] < at < hung["finished_at"] for (at,) in finished)


REFUSED = {
    "http://169.254.169.254/latest/meta-data/": "169.254.169.254 is a link-local address",
    "http://metadata.google.internal/computeMetadata/v1/": "names this machine or a cloud metadata",
    "http://[fe80::1]/hook": "fe80::1 is a link-local address",
    "http://10.0.0.5/hook": "10.0.0.5 is a private address",
}


def assert_refused(answer: httpx.Response, reason: str) -> None:
    """A 422 `webhook_refused` naming the field and the reason."""
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["error"] == "webhook_refused"
    assert body["message"].startswith("webhook: ")
    assert reason in body["message"]
    assert body["details"][0]["field"] == "webhook"


@pytest.mark.req("WEBHOOK-ALLOWLIST")
def test_the_allow_list_refuses_metadata_link_local_and_loopback_by_default(
    worker_env: dict[str, str], start_server: StartServer, sql: SqlConn
) -> None:
    """Default allow-list: the API refuses internal URLs (422); from SQL they fail once, unsent."""
    with receiving(always_ok) as receiver:
        refused = {**REFUSED, f"{receiver.url}/hooks": "127.0.0.1 is a loopback address"}
        server = start_server(worker_env, LG_DEPLOY_WEBHOOK_SECRET=SECRET)
        with server.http() as client:
            thread = client.post("/threads", json={}).json()["thread_id"]
            for url, reason in refused.items():
                body = {"graph_id": "echo", "webhook": url}
                assert_refused(client.post("/executions", json=body), reason)
                run = {"assistant_id": "echo", "webhook": url}
                assert_refused(client.post("/runs", json=run), reason)
                assert_refused(client.post(f"/threads/{thread}/runs", json=run), reason)
            for bad in ("ftp://example.com/x", "http://user:pw@example.com/", "no url"):
                answer = client.post("/executions", json={"graph_id": "echo", "webhook": bad})
                assert (answer.status_code, answer.json()["error"]) == (422, "invalid_request")
            assert scalar(sql, "SELECT count(*) FROM lg_deploy.executions") == 0
            by_sql = [*refused, f"http://localhost:{receiver.url.rsplit(':', 1)[1]}/hooks"]
            ids = [insert_row(sql, webhook=url) for url in by_sql]
            wait_until(lambda: settled(sql, ids, "failed"), DELIVERY_SECONDS)
    for execution_id, url in zip(ids, by_sql, strict=True):
        delivery = delivery_of(sql, execution_id)
        assert delivery is not None
        assert delivery["attempts"] == 1
        assert delivery["last_error"].startswith("refused: "), delivery
        reason = refused.get(url, "localhost names this machine")
        assert reason in delivery["last_error"]
        [only] = tries_of(sql, delivery["delivery_id"])
        assert only["error"] == delivery["last_error"]
        assert only["status_code"] is None
    assert receiver.got() == []


@pytest.mark.req("WEBHOOK-READABLE")
def test_deliveries_and_tries_read_in_psql_and_from_the_endpoint(
    worker_env: dict[str, str], start_server: StartServer, sql: SqlConn
) -> None:
    """psql and GET /executions/{id}/webhooks show deliveries and tries; none: [], unknown: 404."""
    with receiving(fail_twice) as receiver:
        server = start_server(worker_env, **WEBHOOK_ENV)
        with server.http() as client:
            hooked = submit(client, {"graph_id": "echo", "webhook": f"{receiver.url}/a"})
            plain = submit(client, {"graph_id": "echo"})
            wait_until(lambda: settled(sql, [hooked]), DELIVERY_SECONDS)
            wait_until(lambda: status_of(sql, plain) == "COMPLETED")
            shown = client.get(f"/executions/{hooked}/webhooks")
            assert shown.status_code == 200, shown.text
            none = client.get(f"/executions/{plain}/webhooks").json()
            missing = client.get("/executions/00000000-0000-4000-8000-000000000000/webhooks")
    [item] = shown.json()["items"]
    assert (item["execution_id"], item["status"], item["attempts"]) == (hooked, "delivered", 3)
    assert [t["status_code"] for t in item["attempt_log"]] == [500, 500, 200]
    assert none == {"items": []}
    assert missing.status_code == 404
    per_status = sql.execute(
        "SELECT status, count(*) FROM lg_deploy.webhook_deliveries GROUP BY status"
    ).fetchall()
    assert per_status == [("delivered", 1)]
    tries = sql.execute(
        "SELECT d.execution_id::text, a.attempt, a.status_code, a.error"
        " FROM lg_deploy.webhook_attempts a JOIN lg_deploy.webhook_deliveries d USING (delivery_id)"
        " ORDER BY a.attempt"
    ).fetchall()
    assert tries == [
        (hooked, 1, 500, "HTTP 500"),
        (hooked, 2, 500, "HTTP 500"),
        (hooked, 3, 200, None),
    ]


def default_url(sql: SqlConn) -> str | None:
    """lg_deploy.webhook_defaults.url."""
    value = scalar(sql, "SELECT url FROM lg_deploy.webhook_defaults")
    return None if value is None else str(value)


@pytest.mark.req("WEBHOOK-DEFAULT")
def test_the_default_webhook_applies_to_executions_naming_none_sql_included(
    workers: Workers, sql: SqlConn
) -> None:
    """LG_DEPLOY_WEBHOOK_URL serves SQL rows naming none; unset keeps it, empty clears it."""
    with receiving(always_ok) as receiver:
        default = f"{receiver.url}/default"
        first = workers.start(**WEBHOOK_ENV, LG_DEPLOY_WEBHOOK_URL=default)
        wait_until(lambda: default_url(sql) == default)
        plain = insert_row(sql)
        own = insert_row(sql, webhook=f"{receiver.url}/own")
        wait_until(lambda: settled(sql, [plain, own]))
        first.process.kill()
        first.process.wait(10)
        second = workers.start(**WEBHOOK_ENV)
        assert default_url(sql) == default
        kept = insert_row(sql)
        wait_until(lambda: settled(sql, [kept]))
        second.process.kill()
        second.process.wait(10)
        workers.start(**WEBHOOK_ENV, LG_DEPLOY_WEBHOOK_URL="")
        wait_until(lambda: default_url(sql) is None)
        after = insert_row(sql)
        wait_until(lambda: status_of(sql, after) == "COMPLETED")
        paths = {r.execution_id: r.path for r in receiver.got()}
    assert paths == {plain: "/default", own: "/own", kept: "/default"}
    assert delivery_of(sql, after) is None
