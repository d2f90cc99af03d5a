"""The LangGraph store routes: put, get and delete an item, search items, list namespaces.

They serve the runtime's item store (lg_deploy.item_store), the same store graphs get from
get_store(): LangGraph's AsyncPostgresStore in schema lg_deploy, or its InMemoryStore on the
memory backend. Answers are the platform's: 204 for put and delete, the item or null for get,
{"items": [...]} for a search and {"namespaces": [...]} for the namespace list.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from langgraph.store.base import NOT_PROVIDED, BaseStore, NotProvided
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lg_deploy.http.errors import ApiError
from lg_deploy.http.langgraph_store_bodies import (
    ItemDelete,
    ItemPut,
    ItemQuery,
    ItemSearch,
    NamespaceSearch,
)
from lg_deploy.http.langgraph_unsupported import NOT_SUPPORTED
from lg_deploy.http.requests import body_as, runtime_of

UNAVAILABLE = (
    "the store's tables are missing and this database role may not create them: start"
    " lg-deploy once as the schema's owner"
)


def item_store_of(request: Request) -> BaseStore:
    """The runtime's item store; 503 when its tables are missing (a role without DDL rights)."""
    store = runtime_of(request).item_store
    if store is None:
        raise ApiError(503, UNAVAILABLE, code="store_unavailable")
    return store


@contextmanager
def _refusals() -> Iterator[None]:
    """What the store itself refuses, as 422: a TTL on the memory backend (InMemoryStore has
    none), a namespace it rejects, a comparison of mismatched types (InMemoryStore)."""
    try:
        yield
    except NotImplementedError:
        message = "ttl: not supported by the memory backend"
        raise ApiError(422, message, code=NOT_SUPPORTED) from None
    except (ValueError, TypeError) as error:
        raise ApiError(422, str(error)) from None


async def put_item(request: Request) -> Response:
    """PUT /store/items: store or replace the item; 204."""
    body = await body_as(request, ItemPut)
    store = item_store_of(request)
    ttl: float | NotProvided = NOT_PROVIDED if body.ttl is None else body.ttl
    with _refusals():
        await store.aput(tuple(body.namespace), body.key, body.value, body.index, ttl=ttl)
    return Response(status_code=204)


async def get_item(request: Request) -> Response:
    """GET /store/items?namespace=a.b&key=k[&refresh_ttl=true|false]: the item, or null."""
    query = ItemQuery.model_validate(dict(request.query_params))
    store = item_store_of(request)
    refresh = None if query.refresh_ttl is None else query.refresh_ttl == "true"
    with _refusals():
        item = await store.aget(tuple(query.namespace.split(".")), query.key, refresh_ttl=refresh)
    return JSONResponse(item.dict() if item is not None else None)


async def delete_item(request: Request) -> Response:
    """DELETE /store/items: the item goes if it exists; 204 either way."""
    body = await body_as(request, ItemDelete)
    store = item_store_of(request)
    if body.namespace:  # no namespace holds no item
        with _refusals():
            await store.adelete(tuple(body.namespace), body.key)
    return Response(status_code=204)


async def item_route(request: Request) -> Response:
    """GET, PUT or DELETE /store/items: one route, so a 405 lists all three."""
    handlers = {"PUT": put_item, "DELETE": delete_item}
    return await handlers.get(request.method, get_item)(request)


async def search_items(request: Request) -> Response:
    """POST /store/items/search: items under the prefix that match the filter, newest first."""
    body = await body_as(request, ItemSearch)
    store = item_store_of(request)
    with _refusals():
        found = await store.asearch(
            tuple(body.namespace_prefix or ()),
            query=body.query,
            filter=body.filters(),
            limit=body.limit,
            offset=body.offset,
            refresh_ttl=body.refresh_ttl,
        )
    return JSONResponse({"items": [item.dict() for item in found]})


async def list_namespaces(request: Request) -> Response:
    """POST /store/namespaces: the namespaces holding items, by prefix, suffix and depth."""
    body = await body_as(request, NamespaceSearch)
    store = item_store_of(request)
    with _refusals():
        found = await store.alist_namespaces(
            prefix=tuple(body.prefix) if body.prefix else None,
            suffix=tuple(body.suffix) if body.suffix else None,
            max_depth=body.max_depth,
            limit=body.limit,
            offset=body.offset,
        )
    return JSONResponse({"namespaces": [list(namespace) for namespace in found]})


def store_routes() -> list[Route]:
    """The store routes lg-deploy serves."""
    return [
        Route("/store/items", item_route, methods=["GET", "PUT", "DELETE"]),
        Route("/store/items/search", search_items, methods=["POST"]),
        Route("/store/namespaces", list_namespaces, methods=["POST"]),
    ]
