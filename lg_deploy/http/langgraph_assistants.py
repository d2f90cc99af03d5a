"""The LangGraph assistant routes: create, get, update, delete, search, count, versions, latest.

A stored assistant is a row of lg_deploy.assistants, each change a new version; every served
graph also has a system assistant (lg_deploy.assistants.catalog) that can be read, searched and
run but not changed (409). Its graph's drawing, schemas and subgraphs: langgraph_assistant_graphs.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lg_deploy.assistants.catalog import AssistantCatalog, is_system
from lg_deploy.assistants.models import (
    DEFAULT_NAME,
    Assistant,
    AssistantChange,
    AssistantVersion,
    NewAssistant,
)
from lg_deploy.db.jsonb import contains
from lg_deploy.http.errors import ApiError
from lg_deploy.http.langgraph_assistant_bodies import (
    AssistantCreate,
    AssistantField,
    AssistantFilter,
    AssistantPatch,
    AssistantSearch,
    LatestVersion,
    VersionSearch,
)
from lg_deploy.http.requests import body_as, flag_param, page_response, runtime_of
from lg_deploy.runtime import Runtime
from lg_deploy.threads.models import ThreadQuery

THREAD_PAGE = 1_000  # threads deleted per round with `delete_threads`


def shown(assistant: Assistant, select: list[AssistantField] | None = None) -> dict[str, Any]:
    """An assistant as the API shows it (only the `select` fields, if given)."""
    fields = assistant.model_dump(mode="json")
    return {name: fields[name] for name in select} if select else fields


def shown_version(version: AssistantVersion) -> dict[str, Any]:
    """A version as the API shows it (an assistant shown as a version has no updated_at)."""
    shown_: dict[str, Any] = version.model_dump(mode="json", exclude={"updated_at"})
    return shown_


def catalog_of(runtime: Runtime) -> AssistantCatalog:
    """The stored assistants and this process's system assistants."""
    return AssistantCatalog(runtime.assistants, runtime.graphs.names())


async def find_assistant(request: Request) -> Assistant:
    """The assistant the path names (a graph name, a system uuid5 or a stored id); 404 if none."""
    assistant_id = request.path_params["assistant_id"]
    found = await catalog_of(runtime_of(request)).find(assistant_id)
    if found is None:
        raise ApiError(404, f"assistant {assistant_id} not found")
    return found


async def _stored_assistant(request: Request) -> Assistant:
    """The stored assistant the path names: 404 if none, 409 for a system assistant."""
    found = await find_assistant(request)
    if is_system(found):
        message = (
            f"system assistants cannot be changed: {found.assistant_id} is the default"
            f" assistant of graph {found.graph_id!r}; create an assistant of your own instead"
        )
        raise ApiError(409, message, code="system_assistant")
    return found


def _check_graph(request: Request, graph_id: str | None) -> None:
    """422 unless `graph_id` (when given) is a graph this process serves."""
    known = runtime_of(request).graphs.names()
    if graph_id is not None and graph_id not in known:
        message = f"graph {graph_id!r} is not served here"
        raise ApiError(422, message, code="unknown_graph", known_graphs=known)


async def create_assistant(request: Request) -> Response:
    """POST /assistants: 409 for a taken id (a system assistant's too) unless `if_exists` is
    "do_nothing" (then the assistant holding it)."""
    body = await body_as(request, AssistantCreate)
    _check_graph(request, body.graph_id)
    catalog = catalog_of(runtime_of(request))
    if body.assistant_id is None:
        created = await catalog.store.create(_new(body, None))
        assert created is not None  # a fresh id is never taken
        return JSONResponse(shown(created))
    wanted = str(body.assistant_id)
    taken = catalog.system(wanted)
    if taken is None:
        created = await catalog.store.create(_new(body, wanted))
        if created is not None:
            return JSONResponse(shown(created))
        taken = await catalog.store.get(wanted)
    if body.if_exists == "do_nothing" and taken is not None:
        return JSONResponse(shown(taken))
    raise ApiError(409, f"Assistant with ID {wanted} already exists", code="assistant_exists")


def _new(body: AssistantCreate, assistant_id: str | None) -> NewAssistant:
    return NewAssistant(
        graph_id=body.graph_id,
        assistant_id=assistant_id,
        name=body.name or DEFAULT_NAME,
        description=body.description,
        config=body.config or {},
        context=body.context or {},
        metadata=body.metadata or {},
    )


async def get_assistant(request: Request) -> Response:
    """GET /assistants/{assistant_id}."""
    return JSONResponse(shown(await find_assistant(request)))


async def patch_assistant(request: Request) -> Response:
    """PATCH /assistants/{assistant_id}: a new version with the changes, made current."""
    body = await body_as(request, AssistantPatch)
    current = await _stored_assistant(request)
    _check_graph(request, body.graph_id)
    change = AssistantChange(
        graph_id=body.graph_id,
        name=body.name,
        description=body.description,
        config=body.config,
        context=body.context,
        metadata=body.metadata or {},
    )
    updated = await runtime_of(request).assistants.update(current.assistant_id, change)
    if updated is None:
        raise ApiError(404, f"assistant {current.assistant_id} not found")
    return JSONResponse(shown(updated))


async def delete_assistant(request: Request) -> Response:
    """DELETE /assistants/{assistant_id}: 204; with delete_threads=true, the threads its runs
    labelled (metadata.assistant_id) go too. Its runs stay."""
    delete_threads = flag_param(request, "delete_threads")
    current = await _stored_assistant(request)
    runtime = runtime_of(request)
    if not await runtime.assistants.delete(current.assistant_id):
        raise ApiError(404, f"assistant {current.assistant_id} not found")
    while delete_threads:
        labelled = ThreadQuery(metadata={"assistant_id": current.assistant_id}, limit=THREAD_PAGE)
        found = [thread.thread_id for thread in await runtime.threads.search(labelled)]
        delete_threads = bool(found) and await runtime.threads.delete_many(found) > 0
    return Response(status_code=204)


async def search_assistants(request: Request) -> Response:
    """POST /assistants/search: system and stored assistants, one page, with
    X-Pagination-Total (and X-Pagination-Next while more remain)."""
    body = await body_as(request, AssistantSearch)
    query = body.query(
        sort_by=body.sort_by,
        descending=body.sort_order == "desc",
        limit=body.limit,
        offset=body.offset,
    )
    catalog = catalog_of(runtime_of(request))
    found = [shown(a, body.select) for a in await catalog.search(query)]
    return page_response(found, body.offset, await catalog.count(query))


async def count_assistants(request: Request) -> Response:
    """POST /assistants/count: how many system and stored assistants match, a bare integer."""
    body = await body_as(request, AssistantFilter)
    return JSONResponse(await catalog_of(runtime_of(request)).count(body.query()))


async def list_versions(request: Request) -> Response:
    """POST /assistants/{assistant_id}/versions: newest first (a system assistant has one)."""
    body = await body_as(request, VersionSearch)
    found = await find_assistant(request)
    metadata = body.metadata or {}
    if is_system(found):
        versions: list[AssistantVersion] = [found] if contains(found.metadata, metadata) else []
        versions = versions[body.offset : body.offset + body.limit]
    else:
        store = runtime_of(request).assistants
        versions = await store.versions(found.assistant_id, metadata, body.limit, body.offset)
    return JSONResponse([shown_version(v) for v in versions])


async def set_latest(request: Request) -> Response:
    """POST /assistants/{assistant_id}/latest: make one of its versions current (404: no such)."""
    body = await body_as(request, LatestVersion)
    current = await _stored_assistant(request)
    latest = await runtime_of(request).assistants.set_latest(current.assistant_id, body.version)
    if latest is None:
        raise ApiError(404, f"assistant {current.assistant_id} has no version {body.version}")
    return JSONResponse(shown(latest))


async def one_assistant(request: Request) -> Response:
    """GET, PATCH or DELETE /assistants/{assistant_id}: one route, so a 405 lists all three."""
    methods = {"PATCH": patch_assistant, "DELETE": delete_assistant}
    return await methods.get(request.method, get_assistant)(request)


def assistant_routes() -> list[Route]:
    """The assistant routes served (before the platform's unserved ones)."""
    one = "/assistants/{assistant_id}"
    return [
        Route("/assistants", create_assistant, methods=["POST"]),
        Route("/assistants/search", search_assistants, methods=["POST"]),
        Route("/assistants/count", count_assistants, methods=["POST"]),
        Route(one, one_assistant, methods=["GET", "PATCH", "DELETE"]),
        Route(one + "/versions", list_versions, methods=["POST"]),
        Route(one + "/latest", set_latest, methods=["POST"]),
    ]
