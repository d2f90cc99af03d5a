"""The HTTP endpoints: thin adapters from JSON to the store, queue, waiter and registry."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, TypeVar

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lg_deploy.errors import ExecutionNotFound, IdempotencyKeyUsed, InvalidTransition
from lg_deploy.http.errors import ApiError, request_id_of
from lg_deploy.http.requests import read_json, runtime_of
from lg_deploy.http.schemas import (
    EventList,
    ExecutionPage,
    GraphInfo,
    GraphList,
    Health,
    ListQuery,
    NoQuery,
    SubmitExecution,
    WaitQuery,
    decode_cursor,
    encode_cursor,
)
from lg_deploy.http.waiting import FinishWaiter
from lg_deploy.http.webhooks import checked_webhook
from lg_deploy.models import ExecutionState, ExecutionStatus
from lg_deploy.runtime import Runtime
from lg_deploy.settings import Settings
from lg_deploy.webhooks.models import WebhookDeliveryList

Model = TypeVar("Model", bound=BaseModel)
READY_CHECK_SECONDS = 2.0
IDEMPOTENCY_HEADER = "idempotency-key"
MAX_IDEMPOTENCY_KEY_LENGTH = 200


def _json(model: BaseModel, status_code: int = 200, **headers: str) -> Response:
    """The model as a JSON response, serialised by pydantic in one step."""
    return Response(
        model.model_dump_json(), status_code, headers=headers, media_type="application/json"
    )


def _query(request: Request, model: type[Model]) -> Model:
    """Query parameters validated strictly: unknown names and repeated names are refused."""
    params = request.query_params
    repeated = sorted({key for key in params if len(params.getlist(key)) > 1})
    if repeated:
        raise ApiError(422, f"query parameter given more than once: {', '.join(repeated)}")
    return model.model_validate(dict(params))


def _execution_id(request: Request) -> str:
    raw = request.path_params["execution_id"]
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise ApiError(422, f"execution id must be a UUID, not {raw[:64]!r}") from None


async def submit_execution(request: Request) -> Response:
    """POST /executions: store a QUEUED execution, wake a worker, answer 202 with Location.

    With an idempotency key already used: 200 with the first execution when the graph and input
    are the same, 409 when they differ.
    """
    runtime = runtime_of(request)
    settings: Settings = request.state.settings
    payload = SubmitExecution.model_validate(await read_json(request, settings.max_body_bytes))
    payload = _with_header_key(payload, request.headers.get(IDEMPOTENCY_HEADER))
    known = runtime.graphs.names()
    if payload.graph_id not in known:
        message = f"unknown graph {payload.graph_id!r}"
        raise ApiError(422, message, code="unknown_graph", known_graphs=known)
    webhook = checked_webhook(runtime, payload.webhook)
    state = _new_state(payload, settings, request_id_of(request.scope) or None, webhook)
    try:
        stored = await runtime.store.create(state, delay_seconds=payload.delay_seconds or 0.0)
    except IdempotencyKeyUsed as used:
        return _replay(used, payload)
    runtime.announce(stored)
    return _json(stored, 202, Location=f"/executions/{stored.execution_id}")


def _with_header_key(payload: SubmitExecution, header: str | None) -> SubmitExecution:
    """The body with the Idempotency-Key header's key, which must agree with the body's."""
    if header is None:
        return payload
    if not 1 <= len(header) <= MAX_IDEMPOTENCY_KEY_LENGTH:
        raise ApiError(422, "Idempotency-Key header must be 1 to 200 characters")
    if payload.idempotency_key not in (None, header):
        raise ApiError(422, "Idempotency-Key header and body idempotency_key differ")
    return payload.model_copy(update={"idempotency_key": header})


def _new_state(
    payload: SubmitExecution, settings: Settings, request_id: str | None, webhook: str | None
) -> ExecutionState:
    fields: dict[str, Any] = {
        "webhook": webhook,
        "graph_id": payload.graph_id,
        "input": payload.input,
        "priority": payload.priority,
        "max_attempts": payload.max_attempts or settings.max_attempts,
        "timeout_seconds": payload.timeout_seconds,
        "idempotency_key": payload.idempotency_key,
        "request_id": request_id,
    }
    if payload.run_at is not None:
        fields["run_at"] = payload.run_at
    return ExecutionState(**fields)


def _replay(used: IdempotencyKeyUsed, payload: SubmitExecution) -> Response:
    existing = used.existing
    assert isinstance(existing, ExecutionState)
    if (existing.graph_id, existing.input) != (payload.graph_id, payload.input):
        raise ApiError(
            409,
            f"idempotency key {used.key!r} was used for a different graph or input",
            code="idempotency_conflict",
            execution_id=existing.execution_id,
        )
    location = f"/executions/{existing.execution_id}"
    return _json(existing, 200, Location=location, **{"Idempotent-Replayed": "true"})


async def executions(request: Request) -> Response:
    """/executions: POST submits, GET lists (one route, so a 405 names both methods)."""
    if request.method == "POST":
        return await submit_execution(request)
    return await list_executions(request)


async def get_execution(request: Request) -> Response:
    """GET /executions/{id}."""
    _query(request, NoQuery)
    execution_id = _execution_id(request)
    state = await runtime_of(request).store.get(execution_id)
    if state is None:
        raise ApiError(404, f"execution {execution_id} not found")
    return _json(state)


async def list_executions(request: Request) -> Response:
    """GET /executions: newest first, by status and graph, keyset pages."""
    query = _query(request, ListQuery)
    try:
        before = decode_cursor(query.cursor) if query.cursor else None
    except ValueError as error:
        raise ApiError(422, str(error)) from None
    items = await runtime_of(request).store.list_executions(
        status=query.status, graph_id=query.graph_id, limit=query.limit + 1, before=before
    )
    more = len(items) > query.limit
    items = items[: query.limit]
    cursor = encode_cursor(items[-1]) if more and items else None
    return _json(ExecutionPage(items=items, next_cursor=cursor))


async def wait_execution(request: Request) -> Response:
    """GET /executions/{id}/wait: the execution once final, or as it is when the timeout ends."""
    execution_id = _execution_id(request)
    query = _query(request, WaitQuery)
    waiter: FinishWaiter = request.state.waiter
    state = await waiter.wait(execution_id, query.timeout)
    if state is None:
        raise ApiError(404, f"execution {execution_id} not found")
    return _json(state)


async def cancel_execution(request: Request) -> Response:
    """POST /executions/{id}/cancel: QUEUED fails now (200); RUNNING is being stopped (202)."""
    _query(request, NoQuery)
    execution_id = _execution_id(request)
    try:
        state = await runtime_of(request).cancel(execution_id)
    except ExecutionNotFound:
        raise ApiError(404, f"execution {execution_id} not found") from None
    except InvalidTransition as final:
        raise ApiError(409, str(final)) from None
    return _json(state, 202 if state.status == ExecutionStatus.RUNNING else 200)


async def execution_events(request: Request) -> Response:
    """GET /executions/{id}/events: its history, oldest first."""
    _query(request, NoQuery)
    execution_id = _execution_id(request)
    store = runtime_of(request).store
    events = await store.events(execution_id)
    if not events and await store.get(execution_id) is None:
        raise ApiError(404, f"execution {execution_id} not found")
    return _json(EventList(items=events))


async def execution_webhooks(request: Request) -> Response:
    """GET /executions/{id}/webhooks: its webhook deliveries, each with its tries."""
    _query(request, NoQuery)
    execution_id = _execution_id(request)
    runtime = runtime_of(request)
    if await runtime.store.get(execution_id) is None:
        raise ApiError(404, f"execution {execution_id} not found")
    hooks = runtime.webhooks
    items = await hooks.outbox.deliveries(execution_id) if hooks is not None else []
    return _json(WebhookDeliveryList(items=items))


async def list_graphs(request: Request) -> Response:
    """GET /graphs: the graphs this process serves, and the graphs no live worker serves."""
    _query(request, NoQuery)
    runtime = runtime_of(request)
    items = [GraphInfo(graph_id=name) for name in runtime.graphs.names()]
    unserved = await runtime.unserved_graphs()
    return _json(GraphList(items=items, worker_id=runtime.worker.worker_id, unserved=unserved))


async def healthz(request: Request) -> Response:
    """GET /healthz: the process is alive."""
    return _json(Health(status="ok"))


async def readyz(request: Request) -> Response:
    """GET /readyz: 200 when the database answers and the listener is up, else 503."""
    runtime = runtime_of(request)
    checks = {"database": await _database_ok(runtime)}
    if runtime.listener is not None:
        checks["listener"] = runtime.listener.connected
    ready = all(checks.values())
    health = Health(
        status="ready" if ready else "unavailable",
        checks=checks,
        graphs=runtime.graphs.names(),
        worker_id=runtime.worker.worker_id,
    )
    return _json(health, 200 if ready else 503)


async def _database_ok(runtime: Runtime) -> bool:
    if runtime.pool is None:
        return True
    try:
        async with asyncio.timeout(READY_CHECK_SECONDS), runtime.pool.connection() as conn:
            await conn.execute("SELECT 1")
    except Exception:
        return False
    return True


async def metrics(request: Request) -> Response:
    """GET /metrics: Prometheus text; queue depth is read from the store at scrape time."""
    recorder = request.state.metrics
    runtime = runtime_of(request)
    recorder.set_queue_depth(await runtime.store.count_active())
    recorder.set_unserved(await runtime.unserved_graphs())
    if runtime.listener is not None:
        recorder.listener_connected.set(1 if runtime.listener.connected else 0)
        recorder.listener_connects.set(runtime.listener.connects)
    return Response(recorder.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


def routes() -> list[Route]:
    """Every API route."""
    return [
        Route("/executions", executions, methods=["GET", "POST"]),
        Route("/executions/{execution_id}", get_execution, methods=["GET"]),
        Route("/executions/{execution_id}/wait", wait_execution, methods=["GET"]),
        Route("/executions/{execution_id}/cancel", cancel_execution, methods=["POST"]),
        Route("/executions/{execution_id}/events", execution_events, methods=["GET"]),
        Route("/executions/{execution_id}/webhooks", execution_webhooks, methods=["GET"]),
        Route("/graphs", list_graphs, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
