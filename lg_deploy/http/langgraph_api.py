"""The LangGraph Platform routes the langgraph-sdk client uses, over the same executions.

Assistants are the registered graphs (id: the graph name or uuid5 of it, as the platform does).
Runs are executions: a thread-less run's thread id is its run id. A cancelled run is
`interrupted`, as on the platform. The platform's other routes answer `not_supported`
(langgraph_unsupported), and so do run keys lg-deploy does not honour yet (langgraph_run_body).
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from lg_deploy.errors import ExecutionNotFound, InvalidTransition
from lg_deploy.http.errors import ApiError, request_id_of, validation_details
from lg_deploy.http.langgraph_run_body import NOT_SUPPORTED, RunBody, RunCreate, RunWait
from lg_deploy.http.langgraph_threads import thread_routes
from lg_deploy.http.langgraph_unsupported import unsupported_routes
from lg_deploy.http.requests import body_as, runtime_of
from lg_deploy.http.schemas import json_number
from lg_deploy.http.waiting import FinishWaiter
from lg_deploy.models import ExecutionState, ExecutionStatus
from lg_deploy.runtime import Runtime
from lg_deploy.settings import Settings

# The platform's namespace for default assistant ids: uuid5(NAMESPACE_GRAPH, graph_id).
NAMESPACE_GRAPH = uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")
RUN_STATUS = {
    ExecutionStatus.QUEUED: "pending",
    ExecutionStatus.RUNNING: "running",
    ExecutionStatus.COMPLETED: "success",
    ExecutionStatus.FAILED: "error",
}
CANCELLED_ERROR = "cancelled"  # the error the worker and the SQL write on a cancelled execution
INTERRUPTED = "interrupted"
_ERROR_TYPE = re.compile(r"^(?P<type>[A-Za-z_][A-Za-z0-9_.]*): (?P<message>.*)$", re.DOTALL)
_STARTED = datetime.now(UTC).isoformat()


class AssistantSearch(BaseModel):
    """Body of POST /assistants/search."""

    model_config = ConfigDict(extra="ignore")

    graph_id: str | None = None
    name: str | None = None
    metadata: dict[str, Any] | None = None
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)

    @field_validator("limit", "offset", mode="before")
    @classmethod
    def _numbers_only(cls, value: Any) -> Any:
        return json_number(value)


class Assistant(BaseModel):
    """The platform's Assistant: here, one per registered graph."""

    assistant_id: str
    graph_id: str
    name: str
    description: str | None = None
    config: dict[str, Any]
    context: dict[str, Any]
    metadata: dict[str, Any]
    version: int
    created_at: str
    updated_at: str


class Run(BaseModel):
    """The platform's Run: here, an execution."""

    run_id: str
    thread_id: str
    assistant_id: str
    status: str = Field(description="pending, running, success, error or interrupted (cancelled)")
    created_at: str
    updated_at: str
    metadata: dict[str, Any]
    kwargs: dict[str, Any]
    multitask_strategy: str


def assistant_id_of(graph_id: str) -> str:
    """The platform's default assistant id for a graph."""
    return str(uuid.uuid5(NAMESPACE_GRAPH, graph_id))


def _assistant(graph_id: str) -> dict[str, Any]:
    return Assistant(
        assistant_id=assistant_id_of(graph_id),
        graph_id=graph_id,
        name=graph_id,
        config={},
        context={},
        metadata={"created_by": "system"},
        version=1,
        created_at=_STARTED,
        updated_at=_STARTED,
    ).model_dump()


def _graph_for(runtime: Runtime, assistant_id: str) -> str:
    """The graph an assistant id (a graph name, or uuid5 of one) names; 404 otherwise."""
    for name in runtime.graphs.names():
        if assistant_id in (name, assistant_id_of(name)):
            return name
    raise ApiError(
        404, f"assistant {assistant_id!r} not found", known_graphs=runtime.graphs.names()
    )


def is_cancelled(state: ExecutionState) -> bool:
    """True for an execution stopped on purpose (FAILED "cancelled")."""
    return state.status == ExecutionStatus.FAILED and state.error == CANCELLED_ERROR


def run_status(state: ExecutionState) -> str:
    """The platform's run status: a cancelled execution is `interrupted`, as there."""
    return INTERRUPTED if is_cancelled(state) else RUN_STATUS[state.status]


def run_of(state: ExecutionState, multitask_strategy: str | None = None) -> dict[str, Any]:
    """An execution as the platform's Run object."""
    thread = state.execution_id
    return Run(
        run_id=state.execution_id,
        thread_id=thread,
        assistant_id=assistant_id_of(state.graph_id),
        status=run_status(state),
        created_at=state.created_at.isoformat(),
        updated_at=state.updated_at.isoformat(),
        metadata=state.metadata,
        kwargs={"input": state.input, "config": {"configurable": {"thread_id": thread}}},
        multitask_strategy=multitask_strategy or "enqueue",  # the platform's default
    ).model_dump()


def outcome_of(state: ExecutionState) -> dict[str, Any]:
    """What /runs/wait and /join answer: the output, or the platform's __error__ object; a
    cancelled run, like an interrupted one there, answers its values (none reach lg-deploy)."""
    if state.status == ExecutionStatus.COMPLETED:
        return state.output or {}
    if state.status == ExecutionStatus.FAILED and not is_cancelled(state):
        text = state.error or "failed"
        match = _ERROR_TYPE.match(text)
        kind, message = (match["type"], match["message"]) if match else ("Error", text)
        return {"__error__": {"error": kind, "message": message}}
    return {}


async def _run_body(request: Request, model: type[RunBody]) -> RunBody:
    """The run body; a key lg-deploy does not honour yet is a 422 `not_supported` naming it."""
    try:
        body: RunBody = await body_as(request, model)
    except ValidationError as error:
        details = validation_details(error)
        refused = [
            detail
            for detail, item in zip(details, error.errors(), strict=True)
            if item["type"] == NOT_SUPPORTED
        ]
        if not refused:
            raise
        message = f"{refused[0]['field']}: {refused[0]['problem']}"
        raise ApiError(422, message, code=NOT_SUPPORTED, details=details) from None
    return body


async def search_assistants(request: Request) -> Response:
    """POST /assistants/search: one assistant per registered graph."""
    query: AssistantSearch = await body_as(request, AssistantSearch)
    found = [
        _assistant(name)
        for name in runtime_of(request).graphs.names()
        if query.graph_id in (None, name) and query.name in (None, name)
    ]
    return JSONResponse(found[query.offset : query.offset + query.limit])


async def get_assistant(request: Request) -> Response:
    """GET /assistants/{assistant_id}."""
    return JSONResponse(
        _assistant(_graph_for(runtime_of(request), request.path_params["assistant_id"]))
    )


async def _create_run(request: Request, model: type[RunBody]) -> tuple[ExecutionState, RunBody]:
    runtime = runtime_of(request)
    settings: Settings = request.state.settings
    body = await _run_body(request, model)
    graph_id = _graph_for(runtime, body.assistant_id)
    state = ExecutionState(
        graph_id=graph_id,
        input=body.input or {},
        metadata=body.metadata or {},
        max_attempts=settings.max_attempts,
        request_id=request_id_of(request.scope) or None,
    )
    stored = await runtime.store.create(state, delay_seconds=body.after_seconds or 0.0)
    runtime.announce()
    return stored, body


def _run_headers(state: ExecutionState) -> dict[str, str]:
    return {"Content-Location": f"/threads/{state.execution_id}/runs/{state.execution_id}"}


async def create_run(request: Request) -> Response:
    """POST /runs: a background run (an execution); answers the Run."""
    stored, body = await _create_run(request, RunCreate)
    return JSONResponse(run_of(stored, body.multitask_strategy), headers=_run_headers(stored))


async def wait_run(request: Request) -> Response:
    """POST /runs/wait: create a run and answer its output once final, spaces meanwhile."""
    stored, _ = await _create_run(request, RunWait)
    waiter: FinishWaiter = request.state.waiter
    stream = _outcome_stream(waiter, stored.execution_id, _keepalive(request))
    headers = _run_headers(stored)
    return StreamingResponse(stream, media_type="application/json", headers=headers)


def _keepalive(request: Request) -> float:
    settings: Settings = request.state.settings
    return settings.keepalive_seconds


async def _outcome_stream(
    waiter: FinishWaiter, execution_id: str, keepalive_seconds: float
) -> AsyncIterator[bytes]:
    """A space every `keepalive_seconds` (JSON allows leading whitespace), then the outcome."""
    while True:
        state = await waiter.wait(execution_id, keepalive_seconds)
        if state is None:
            yield json.dumps(
                {"__error__": {"error": "NotFound", "message": "run vanished"}}
            ).encode()
            return
        if state.is_final:
            yield json.dumps(outcome_of(state)).encode()
            return
        yield b" "


async def _thread_run(request: Request) -> ExecutionState:
    thread_id, run_id = request.path_params["thread_id"], request.path_params["run_id"]
    state = None
    with contextlib.suppress(ValueError):
        if uuid.UUID(thread_id) == uuid.UUID(run_id):
            state = await runtime_of(request).store.get(str(uuid.UUID(run_id)))
    if state is None:
        raise ApiError(404, f"run {run_id} not found in thread {thread_id}")
    return state


async def get_run(request: Request) -> Response:
    """GET /threads/{thread_id}/runs/{run_id}."""
    return JSONResponse(run_of(await _thread_run(request)))


async def list_runs(request: Request) -> Response:
    """GET /threads/{thread_id}/runs: a thread-less run's thread holds that one run."""
    thread_id = request.path_params["thread_id"]
    state = None
    with contextlib.suppress(ValueError):
        state = await runtime_of(request).store.get(str(uuid.UUID(thread_id)))
    if state is None:
        raise ApiError(404, f"thread {thread_id} not found")
    params = request.query_params
    try:
        limit, offset = int(params.get("limit", 10)), int(params.get("offset", 0))
    except ValueError:
        raise ApiError(422, "limit and offset must be whole numbers") from None
    runs = [run_of(state)]
    if params.get("status") not in (None, run_status(state)):
        runs = []
    return JSONResponse(runs[offset : offset + limit])


async def join_run(request: Request) -> Response:
    """GET /threads/{thread_id}/runs/{run_id}/join: the output once final, spaces meanwhile."""
    state = await _thread_run(request)
    waiter: FinishWaiter = request.state.waiter
    stream = _outcome_stream(waiter, state.execution_id, _keepalive(request))
    return StreamingResponse(stream, media_type="application/json")


async def cancel_run(request: Request) -> Response:
    """POST /threads/{thread_id}/runs/{run_id}/cancel[?wait=1]: cancel; 204 (or once final)."""
    state = await _thread_run(request)
    try:
        await runtime_of(request).cancel(state.execution_id)
    except (ExecutionNotFound, InvalidTransition) as error:
        raise ApiError(409, str(error)) from None
    if request.query_params.get("wait") in ("1", "true"):
        waiter: FinishWaiter = request.state.waiter
        while True:
            current = await waiter.wait(state.execution_id, _keepalive(request))
            if current is None or current.is_final:
                break
    return Response(status_code=204)


def langgraph_routes() -> list[BaseRoute]:
    """The LangGraph Platform routes lg-deploy serves, then the others it refuses (after them)."""
    runs = "/threads/{thread_id}/runs"
    served = [
        Route("/assistants/search", search_assistants, methods=["POST"]),
        Route("/assistants/{assistant_id}", get_assistant, methods=["GET"]),
        Route("/runs", create_run, methods=["POST"]),
        Route("/runs/wait", wait_run, methods=["POST"]),
        Route(runs, list_runs, methods=["GET"]),
        Route(runs + "/{run_id}", get_run, methods=["GET"]),
        Route(runs + "/{run_id}/join", join_run, methods=["GET"]),
        Route(runs + "/{run_id}/cancel", cancel_run, methods=["POST"]),
        *thread_routes(),
    ]
    return [*served, *unsupported_routes(served)]
