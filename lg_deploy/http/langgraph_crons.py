"""The platform's cron routes over lg_deploy.crons: create (thread-less or on a thread), read,
update, delete, search and count. Each tick's run is the run the body describes, made by the
same code as POST /runs (its assistant's graph, config and context under the cron's own)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, field_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lg_deploy.crons.models import Cron, CronChanges, CronQuery, NewCron
from lg_deploy.crons.schedule import ScheduleError, check
from lg_deploy.crons.store import PostgresCronStore
from lg_deploy.http.errors import ApiError
from lg_deploy.http.langgraph_new_run import new_run, run_body
from lg_deploy.http.langgraph_run_body import Breakpoints, RunBody, stored_breakpoints
from lg_deploy.http.langgraph_threads import canonical_thread_id
from lg_deploy.http.requests import body_as, runtime_of
from lg_deploy.http.schemas import WebhookUrl, json_number
from lg_deploy.http.webhooks import checked_webhook
from lg_deploy.models import StreamMode

SortKey = Literal[
    "cron_id", "assistant_id", "thread_id", "created_at", "updated_at", "next_run_date", "end_time"
]
CronField = Literal[
    "cron_id",
    "assistant_id",
    "graph_id",
    "thread_id",
    "schedule",
    "timezone",
    "on_run_completed",
    "end_time",
    "enabled",
    "next_run_date",
    "last_tick_at",
    "error",
    "payload",
    "metadata",
    "user_id",
    "created_at",
    "updated_at",
]
_SCHEDULE = Field(min_length=1, max_length=200, description="5 fields, or 6 with seconds first")
_ZONE = Field(default=None, max_length=100, description="IANA time zone; null: UTC")


class CronCreate(RunBody):
    """Body of POST /runs/crons and POST /threads/{thread_id}/runs/crons: a run body, when."""

    command: None = Field(default=None, description="a cron starts runs; it resumes none")
    schedule: str = _SCHEDULE
    timezone: str | None = _ZONE
    end_time: AwareDatetime | None = Field(default=None, description="no tick after it")
    enabled: StrictBool | None = None
    on_run_completed: Literal["delete", "keep"] | None = Field(
        default=None, description="thread-less crons: accepted (lg-deploy makes no thread)"
    )


class CronPatch(BaseModel):
    """Body of PATCH /runs/crons/{cron_id}: the fields to change (end_time: null clears it)."""

    model_config = ConfigDict(extra="ignore")

    schedule: str | None = Field(default=None, min_length=1, max_length=200)
    timezone: str | None = _ZONE
    end_time: AwareDatetime | None = None
    input: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    webhook: WebhookUrl | None = Field(default=None, max_length=2048)
    interrupt_before: Breakpoints = None
    interrupt_after: Breakpoints = None
    on_run_completed: Literal["delete", "keep"] | None = None
    enabled: StrictBool | None = None
    stream_mode: StreamMode | list[StreamMode] | None = None
    stream_subgraphs: StrictBool | None = None
    stream_resumable: StrictBool | None = None
    durability: Literal["sync", "async", "exit"] | None = None


class CronFilter(BaseModel):
    """Body of POST /runs/crons/count (and the filters of a search)."""

    model_config = ConfigDict(extra="ignore")

    assistant_id: str | None = Field(default=None, max_length=200)
    thread_id: uuid.UUID | None = None
    enabled: StrictBool | None = None
    metadata: dict[str, Any] | None = None


class CronSearch(CronFilter):
    """Body of POST /runs/crons/search: filters, one page, an order, the fields to answer."""

    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)
    sort_by: SortKey | None = None
    sort_order: Literal["asc", "desc"] | None = None
    select: list[CronField] | None = None

    @field_validator("limit", "offset", mode="before")
    @classmethod
    def _number_only(cls, value: Any) -> Any:
        return json_number(value)


def _store(request: Request) -> PostgresCronStore:
    crons = runtime_of(request).crons
    if crons is None:
        raise ApiError(503, "crons need PostgreSQL; this process runs in memory")
    return crons


def _cron_id(request: Request) -> str:
    try:
        return str(uuid.UUID(request.path_params["cron_id"]))
    except ValueError:
        raise ApiError(404, "cron not found") from None


def _checked(schedule: str, timezone: str) -> None:
    try:
        check(schedule, timezone)
    except ScheduleError as error:
        raise ApiError(422, str(error)) from None


def _answer(cron: Cron) -> JSONResponse:
    return JSONResponse(cron.model_dump(mode="json"))


async def _create(request: Request, thread_id: str | None) -> Response:
    store = _store(request)
    body = await run_body(request, CronCreate)
    assert isinstance(body, CronCreate)
    timezone = body.timezone or "UTC"
    _checked(body.schedule, timezone)
    if thread_id is not None and await runtime_of(request).threads.get(thread_id) is None:
        raise ApiError(404, f"thread {thread_id} not found")
    run = await new_run(request, body, thread_id)
    payload = body.model_dump(mode="json", exclude_unset=True)
    cron = NewCron(
        graph_id=run.graph_id,
        schedule=body.schedule,
        timezone=timezone,
        assistant_id=run.assistant_id,
        thread_id=thread_id,
        input=run.input or {},
        config=run.config,
        context=run.context,
        metadata=run.metadata,
        interrupt_before=run.interrupt_before,
        interrupt_after=run.interrupt_after,
        multitask_strategy=run.multitask_strategy,
        stream_mode=list(run.stream_mode or []),
        stream_subgraphs=run.stream_subgraphs,
        webhook=run.webhook,
        on_run_completed=body.on_run_completed or "delete",
        payload=payload,
        enabled=body.enabled is not False,
        end_time=body.end_time,
    )
    return _answer(await store.create(cron))


async def create_cron(request: Request) -> Response:
    """POST /runs/crons: a cron whose ticks make thread-less runs; the cron."""
    return await _create(request, None)


async def create_thread_cron(request: Request) -> Response:
    """POST /threads/{thread_id}/runs/crons: a cron whose ticks make runs on the thread."""
    return await _create(request, canonical_thread_id(request.path_params["thread_id"]))


async def get_cron(request: Request) -> Response:
    """GET /runs/crons/{cron_id}: the cron, or 404."""
    found = await _store(request).get(_cron_id(request))
    if found is None:
        raise ApiError(404, "cron not found")
    return _answer(found)


def _changes(patch: CronPatch) -> CronChanges:
    given = patch.model_fields_set
    modes = patch.stream_mode
    return CronChanges(
        schedule=patch.schedule,
        timezone=patch.timezone,
        input=patch.input,
        config=patch.config,
        context=patch.context,
        metadata=patch.metadata,
        interrupt_before=stored_breakpoints(patch.interrupt_before),
        interrupt_after=stored_breakpoints(patch.interrupt_after),
        stream_mode=None if modes is None else [modes] if isinstance(modes, str) else list(modes),
        stream_subgraphs=patch.stream_subgraphs,
        webhook=patch.webhook,
        on_run_completed=patch.on_run_completed,
        enabled=patch.enabled,
        set_end_time="end_time" in given,
        end_time=patch.end_time,
        payload=patch.model_dump(mode="json", exclude_unset=True),
    )


async def update_cron(request: Request) -> Response:
    """PATCH /runs/crons/{cron_id}: change the given fields; the next tick follows them."""
    store = _store(request)
    cron_id = _cron_id(request)
    patch = await body_as(request, CronPatch)
    current = await store.get(cron_id)
    if current is None:
        raise ApiError(404, "cron not found")
    _checked(patch.schedule or current.schedule, patch.timezone or current.timezone)
    checked_webhook(runtime_of(request), patch.webhook)
    updated = await store.update(cron_id, _changes(patch))
    if updated is None:
        raise ApiError(404, "cron not found")
    return _answer(updated)


async def delete_cron(request: Request) -> Response:
    """DELETE /runs/crons/{cron_id}: no more ticks (its executions stay); 204, or 404."""
    if not await _store(request).delete(_cron_id(request)):
        raise ApiError(404, "cron not found")
    return Response(status_code=204)


async def one_cron(request: Request) -> Response:
    """/runs/crons/{cron_id}: GET reads, PATCH changes, DELETE deletes (one route, so a 405
    names all three)."""
    if request.method == "PATCH":
        return await update_cron(request)
    if request.method == "DELETE":
        return await delete_cron(request)
    return await get_cron(request)


def _query(body: CronFilter) -> CronQuery:
    return CronQuery(
        graph_id=body.assistant_id,
        thread_id=None if body.thread_id is None else str(body.thread_id),
        enabled=body.enabled,
        metadata=body.metadata or {},
    )


def _sort_value(cron: dict[str, Any], key: str) -> tuple[bool, str]:
    value = cron.get(key)
    return (value is None, value.isoformat() if isinstance(value, datetime) else str(value))


async def search_crons(request: Request) -> Response:
    """POST /runs/crons/search: matching crons in order, one page (only `select` fields)."""
    body = await body_as(request, CronSearch)
    found = [c.model_dump() for c in await _store(request).search(_query(body))]
    if body.sort_by is not None:
        found.sort(
            key=lambda cron: _sort_value(cron, body.sort_by or "created_at"),
            reverse=body.sort_order != "asc",
        )
    page = found[body.offset : body.offset + body.limit]
    shown = [Cron.model_validate(c).model_dump(mode="json") for c in page]
    if body.select:
        shown = [{k: v for k, v in c.items() if k in body.select} for c in shown]
    return JSONResponse(shown)


async def count_crons(request: Request) -> Response:
    """POST /runs/crons/count: how many crons match."""
    body = await body_as(request, CronFilter)
    return JSONResponse(await _store(request).count(_query(body)))


def cron_routes() -> list[Route]:
    """The cron routes (before the platform's unserved ones)."""
    one = "/runs/crons/{cron_id}"
    return [
        Route("/runs/crons", create_cron, methods=["POST"]),
        Route("/threads/{thread_id}/runs/crons", create_thread_cron, methods=["POST"]),
        Route("/runs/crons/search", search_crons, methods=["POST"]),
        Route("/runs/crons/count", count_crons, methods=["POST"]),
        Route(one, one_cron, methods=["GET", "PATCH", "DELETE"]),
    ]
