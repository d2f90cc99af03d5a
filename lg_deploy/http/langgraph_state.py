"""The LangGraph thread-state routes: a thread's state now or at a checkpoint, its history, and
updating it, read from and written to the checkpoints of the graph its runs use.

A thread's graph is its metadata's `graph_id` (the first run sets it; the JS SDK sends it on
create). A thread with no graph yet has the empty state and no history; updating it is a 409.
"""

from __future__ import annotations

from typing import Any

from langgraph.errors import InvalidUpdateError
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lg_deploy.graphs import CompiledGraph
from lg_deploy.http.errors import ApiError
from lg_deploy.http.langgraph_threads import canonical_thread_id
from lg_deploy.http.requests import body_as, runtime_of
from lg_deploy.http.schemas import check_storable, json_number
from lg_deploy.threads.models import Thread, ThreadStatus
from lg_deploy.threads.state import empty_state, read_history, read_state, write_state

HISTORY_DEFAULT_LIMIT = 10  # what the SDKs send; the platform's own default is 1


class CheckpointRef(BaseModel):
    """A checkpoint of the thread: its id, and its namespace ("" at the root)."""

    model_config = ConfigDict(extra="ignore")

    checkpoint_id: str | None = Field(default=None, max_length=200)
    checkpoint_ns: str = Field(default="", max_length=1000)

    def configurable(self) -> dict[str, Any]:
        """The keys a LangGraph config takes for it."""
        found = {"checkpoint_ns": self.checkpoint_ns}
        return {**found, "checkpoint_id": self.checkpoint_id} if self.checkpoint_id else found


class StateAt(BaseModel):
    """Body of POST /threads/{thread_id}/state/checkpoint."""

    model_config = ConfigDict(extra="ignore")

    checkpoint: CheckpointRef
    subgraphs: bool = False


class StateUpdate(BaseModel):
    """Body of POST /threads/{thread_id}/state."""

    model_config = ConfigDict(extra="forbid")

    values: dict[str, Any] | list[dict[str, Any]] | None = None
    as_node: str | None = Field(default=None, min_length=1, max_length=200)
    checkpoint: CheckpointRef | None = None
    checkpoint_id: str | None = Field(default=None, max_length=200)

    @field_validator("values")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        return check_storable(value)


class HistoryQuery(BaseModel):
    """Body of POST /threads/{thread_id}/history (or the query of GET)."""

    model_config = ConfigDict(extra="ignore")

    limit: int = Field(default=HISTORY_DEFAULT_LIMIT, ge=1, le=1000)
    before: str | CheckpointRef | None = None
    metadata: dict[str, Any] | None = None
    checkpoint: CheckpointRef | None = None

    @field_validator("limit", mode="before")
    @classmethod
    def _number_only(cls, value: Any) -> Any:
        return json_number(value)

    def before_id(self) -> str | None:
        """The checkpoint id the history starts strictly before."""
        if isinstance(self.before, CheckpointRef):
            return self.before.checkpoint_id
        return self.before


async def _thread(request: Request) -> Thread:
    thread_id = canonical_thread_id(request.path_params["thread_id"])
    thread = await runtime_of(request).threads.get(thread_id)
    if thread is None:
        raise ApiError(404, f"thread {thread_id} not found")
    return thread


async def _graph_of(request: Request, thread: Thread) -> CompiledGraph | None:
    """The thread's graph on the thread checkpointer; None when no run has named one yet."""
    graph_id = thread.metadata.get("graph_id")
    if not isinstance(graph_id, str):
        return None
    registry = runtime_of(request).graphs
    if graph_id not in registry.names():
        raise ApiError(409, f"thread {thread.thread_id} uses graph {graph_id!r}, not served here")
    return await registry.thread_graph(graph_id)


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "").lower() in ("1", "true")


async def _state_response(
    request: Request, checkpoint: dict[str, Any] | None, subgraphs: bool
) -> Response:
    thread = await _thread(request)
    graph = await _graph_of(request, thread)
    if graph is None:
        if checkpoint and checkpoint.get("checkpoint_id"):
            raise ApiError(404, f"checkpoint not found in thread {thread.thread_id}")
        return JSONResponse(empty_state(thread.thread_id))
    state = await read_state(graph, thread.thread_id, checkpoint, subgraphs=subgraphs)
    if state is None:
        raise ApiError(404, f"checkpoint not found in thread {thread.thread_id}")
    return JSONResponse(state)


async def thread_state(request: Request) -> Response:
    """GET or POST /threads/{thread_id}/state: the state now, or POST an update."""
    if request.method == "POST":
        return await update_state(request)
    return await _state_response(request, None, _flag(request, "subgraphs"))


async def state_at(request: Request) -> Response:
    """GET /threads/{thread_id}/state/{checkpoint_id}: the state at that checkpoint."""
    checkpoint = {"checkpoint_ns": "", "checkpoint_id": request.path_params["checkpoint_id"]}
    return await _state_response(request, checkpoint, _flag(request, "subgraphs"))


async def state_at_checkpoint(request: Request) -> Response:
    """POST /threads/{thread_id}/state/checkpoint: the state at the checkpoint in the body."""
    body = await body_as(request, StateAt)
    return await _state_response(request, body.checkpoint.configurable(), body.subgraphs)


async def update_state(request: Request) -> Response:
    """POST /threads/{thread_id}/state: apply values as a node; 409 while a run is in flight."""
    thread = await _thread(request)
    body = await body_as(request, StateUpdate)
    graph = await _graph_of(request, thread)
    if graph is None:
        raise ApiError(409, f"thread {thread.thread_id} has no graph yet: run it first")
    if thread.status == ThreadStatus.BUSY:
        raise ApiError(409, f"thread {thread.thread_id} has a run in flight")
    checkpoint = body.checkpoint.configurable() if body.checkpoint else None
    if body.checkpoint_id:
        checkpoint = {**(checkpoint or {"checkpoint_ns": ""}), "checkpoint_id": body.checkpoint_id}
    wanted = (checkpoint or {}).get("checkpoint_id")
    if wanted and not await runtime_of(request).graphs.has_checkpoint(thread.thread_id, wanted):
        raise ApiError(404, f"checkpoint not found in thread {thread.thread_id}")
    try:
        written = await write_state(
            graph, thread.thread_id, body.values, as_node=body.as_node, checkpoint=checkpoint
        )
    except (InvalidUpdateError, ValueError, KeyError) as error:  # an unknown node, say
        raise ApiError(400, f"cannot update the state: {error}") from None
    state = await read_state(graph, thread.thread_id)
    if state is not None:
        await runtime_of(request).threads.set_state(
            thread.thread_id, state["values"], _interrupts(state), bool(state["next"])
        )
    return JSONResponse(written)


def _interrupts(state: dict[str, Any]) -> dict[str, Any]:
    return {task["id"]: task["interrupts"] for task in state["tasks"] if task["interrupts"]}


async def thread_history(request: Request) -> Response:
    """GET or POST /threads/{thread_id}/history: states newest first."""
    thread = await _thread(request)
    if request.method == "POST":
        query = await body_as(request, HistoryQuery)
    else:
        params = request.query_params
        try:
            limit = int(params.get("limit", HISTORY_DEFAULT_LIMIT))
        except ValueError:
            raise ApiError(422, "limit must be a whole number") from None
        query = HistoryQuery.model_validate({"limit": limit, "before": params.get("before")})
    graph = await _graph_of(request, thread)
    if graph is None:
        return JSONResponse([])
    history = await read_history(
        graph,
        thread.thread_id,
        limit=query.limit,
        before=query.before_id(),
        metadata=query.metadata,
        checkpoint_ns=query.checkpoint.checkpoint_ns if query.checkpoint else None,
    )
    return JSONResponse(history)


def state_routes() -> list[Route]:
    """The thread-state routes served."""
    thread = "/threads/{thread_id}"
    return [
        Route(thread + "/state", thread_state, methods=["GET", "POST"]),
        Route(thread + "/state/checkpoint", state_at_checkpoint, methods=["POST"]),
        Route(thread + "/state/{checkpoint_id}", state_at, methods=["GET"]),
        Route(thread + "/history", thread_history, methods=["GET", "POST"]),
    ]
