"""The LangGraph thread routes: create, get, update, delete, search, count and prune threads.

A thread is a row of lg_deploy.threads. Keys the platform takes that lg-deploy does not honour
yet (`ttl`, `supersteps`, `extract`) are a 422 `not_supported` naming them, never ignored.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, field_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lg_deploy.http.errors import ApiError
from lg_deploy.http.langgraph_run_body import NOT_SUPPORTED
from lg_deploy.http.requests import body_as, page_response, runtime_of
from lg_deploy.http.schemas import check_storable, json_number
from lg_deploy.models import ExecutionStatus
from lg_deploy.threads.models import SortKey, Thread, ThreadQuery, ThreadStatus

ThreadField = Literal[
    "thread_id",
    "status",
    "metadata",
    "config",
    "values",
    "interrupts",
    "error",
    "created_at",
    "updated_at",
    "state_updated_at",
]
# A key taken so that it can be refused by name (422 not_supported); documented as null only.
Unhonoured = Annotated[Any, WithJsonSchema({"type": "null", "description": "not supported yet"})]
# A JSON object PostgreSQL can store (no NUL, no lone surrogate, within the size limits).
StorableObject = Annotated[dict[str, Any], AfterValidator(check_storable)]


def _refuse(name: str, value: Any) -> None:
    """A key this server does not honour yet: 422 `not_supported`, rather than ignoring it."""
    if value is not None:
        raise ApiError(422, f"{name}: not supported by lg-deploy yet", code=NOT_SUPPORTED)


def canonical_thread_id(text: str) -> str:
    """A thread id in canonical form; 404 for one that is not a UUID (no such thread)."""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise ApiError(404, f"thread {text} not found") from None


class ThreadCreate(BaseModel):
    """Body of POST /threads."""

    model_config = ConfigDict(extra="forbid")

    thread_id: uuid.UUID | None = None
    metadata: StorableObject | None = None
    if_exists: Literal["raise", "do_nothing"] = "raise"
    ttl: Unhonoured = None
    supersteps: Unhonoured = None


class ThreadPatch(BaseModel):
    """Body of PATCH /threads/{thread_id}."""

    model_config = ConfigDict(extra="forbid")

    metadata: StorableObject | None = None
    ttl: Unhonoured = None


class ThreadFilter(BaseModel):
    """Body of POST /threads/count; the filters of a search."""

    model_config = ConfigDict(extra="forbid")

    metadata: StorableObject | None = None
    values: StorableObject | None = None
    status: ThreadStatus | None = None

    def query(self, **page: Any) -> ThreadQuery:
        """These filters as a ThreadQuery, with `page` (ids, order, limit, offset)."""
        return ThreadQuery(
            metadata=self.metadata or {}, values=self.values, status=self.status, **page
        )


class ThreadSearch(ThreadFilter):
    """Body of POST /threads/search."""

    ids: list[uuid.UUID] | None = None
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)
    sort_by: SortKey = "created_at"
    sort_order: Literal["asc", "desc"] = "desc"
    select: list[ThreadField] | None = None
    extract: Unhonoured = None

    @field_validator("limit", "offset", mode="before")
    @classmethod
    def _number_only(cls, value: Any) -> Any:
        return json_number(value)


class ThreadPrune(BaseModel):
    """Body of POST /threads/prune."""

    model_config = ConfigDict(extra="forbid")

    thread_ids: list[uuid.UUID] = Field(max_length=10_000)
    # "keep_latest" (pruning checkpoints) is taken so it can be refused by name; not documented.
    strategy: Annotated[
        Literal["delete", "keep_latest"], WithJsonSchema({"enum": ["delete"], "default": "delete"})
    ] = "delete"


class PruneResult(BaseModel):
    """Answer of POST /threads/prune."""

    pruned_count: int


def thread_of(thread: Thread, select: list[ThreadField] | None = None) -> dict[str, Any]:
    """A thread as the API shows it (only the `select` fields, if given)."""
    shown = thread.model_dump(mode="json")
    return {name: shown[name] for name in select} if select else shown


async def create_thread(request: Request) -> Response:
    """POST /threads: 409 for a taken id unless `if_exists` is "do_nothing" (then the thread)."""
    body = await body_as(request, ThreadCreate)
    _refuse("ttl", body.ttl)
    _refuse("supersteps", body.supersteps)
    threads = runtime_of(request).threads
    wanted = None if body.thread_id is None else str(body.thread_id)
    created = await threads.create(wanted, body.metadata or {})
    if created is None:
        assert wanted is not None
        existing = await threads.get(wanted)
        if body.if_exists == "do_nothing" and existing is not None:
            return JSONResponse(thread_of(existing))
        raise ApiError(409, f"Thread with ID {wanted} already exists", code="thread_exists")
    return JSONResponse(thread_of(created))


async def get_thread(request: Request) -> Response:
    """GET /threads/{thread_id}."""
    thread_id = canonical_thread_id(request.path_params["thread_id"])
    thread = await runtime_of(request).threads.get(thread_id)
    if thread is None:
        raise ApiError(404, f"thread {thread_id} not found")
    return JSONResponse(thread_of(thread))


async def patch_thread(request: Request) -> Response:
    """PATCH /threads/{thread_id}: merge metadata; 204 with `Prefer: return=minimal`."""
    thread_id = canonical_thread_id(request.path_params["thread_id"])
    body = await body_as(request, ThreadPatch)
    _refuse("ttl", body.ttl)
    thread = await runtime_of(request).threads.merge_metadata(thread_id, body.metadata or {})
    if thread is None:
        raise ApiError(404, f"thread {thread_id} not found")
    if "return=minimal" in request.headers.get("prefer", ""):
        return Response(status_code=204)
    return JSONResponse(thread_of(thread))


async def delete_thread(request: Request) -> Response:
    """DELETE /threads/{thread_id}: the thread, its runs and checkpoints go (a run in flight
    stops: here at once, elsewhere when its lease renewal finds it gone); 204, or 404."""
    thread_id = canonical_thread_id(request.path_params["thread_id"])
    runtime = runtime_of(request)
    running = await runtime.store.list_thread_runs(thread_id, status=ExecutionStatus.RUNNING)
    if not await runtime.threads.delete(thread_id):
        raise ApiError(404, f"thread {thread_id} not found")
    runtime.worker.request_stop([run.execution_id for run in running])
    return Response(status_code=204)


async def copy_thread(request: Request) -> Response:
    """POST /threads/{thread_id}/copy: a new thread with its metadata, values and checkpoints
    (not its runs); the new thread, or 404."""
    thread_id = canonical_thread_id(request.path_params["thread_id"])
    copied = await runtime_of(request).threads.copy(thread_id)
    if copied is None:
        raise ApiError(404, f"thread {thread_id} not found")
    return JSONResponse(thread_of(copied))


async def search_threads(request: Request) -> Response:
    """POST /threads/search: one page, with X-Pagination-Total (and -Next while more remain)."""
    body = await body_as(request, ThreadSearch)
    _refuse("extract", body.extract)
    query = body.query(
        ids=None if body.ids is None else [str(i) for i in body.ids],
        sort_by=body.sort_by,
        descending=body.sort_order == "desc",
        limit=body.limit,
        offset=body.offset,
    )
    threads = runtime_of(request).threads
    found = [thread_of(t, body.select) for t in await threads.search(query)]
    return page_response(found, body.offset, await threads.count(query))


async def count_threads(request: Request) -> Response:
    """POST /threads/count: how many threads match the filters, as a bare integer."""
    body = await body_as(request, ThreadFilter)
    return JSONResponse(await runtime_of(request).threads.count(body.query()))


async def prune_threads(request: Request) -> Response:
    """POST /threads/prune: "delete" deletes the threads named (absent ones are no error)."""
    body = await body_as(request, ThreadPrune)
    if body.strategy == "keep_latest":
        message = "strategy: keep_latest (pruning checkpoints) is not supported by lg-deploy yet"
        raise ApiError(422, message, code=NOT_SUPPORTED)
    ids = [str(i) for i in body.thread_ids]
    pruned = await runtime_of(request).threads.delete_many(ids)
    return JSONResponse(PruneResult(pruned_count=pruned).model_dump())


def thread_routes() -> list[Route]:
    """The thread routes served (before the platform's unserved ones)."""
    return [
        Route("/threads", create_thread, methods=["POST"]),
        Route("/threads/search", search_threads, methods=["POST"]),
        Route("/threads/count", count_threads, methods=["POST"]),
        Route("/threads/prune", prune_threads, methods=["POST"]),
        Route("/threads/{thread_id}", one_thread, methods=["GET", "PATCH", "DELETE"]),
        Route("/threads/{thread_id}/copy", copy_thread, methods=["POST"]),
    ]


async def one_thread(request: Request) -> Response:
    """GET, PATCH or DELETE /threads/{thread_id}: one route, so a 405 lists all three."""
    methods = {"PATCH": patch_thread, "DELETE": delete_thread}
    return await methods.get(request.method, get_thread)(request)
