"""create_app(): the Starlette app; its lifespan owns the pool, listener, queue and workers."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lg_deploy.graphs import GraphRegistry
from lg_deploy.http.auth import ApiKeyMiddleware, warn_if_exposed
from lg_deploy.http.errors import EXCEPTION_HANDLERS
from lg_deploy.http.langgraph_api import langgraph_routes
from lg_deploy.http.middleware import RequestIdMiddleware
from lg_deploy.http.openapi import build_openapi
from lg_deploy.http.routes import routes
from lg_deploy.http.startup import StartupErrors
from lg_deploy.http.waiting import FinishWaiter
from lg_deploy.metrics import Metrics
from lg_deploy.runtime import open_runtime, runtime_over
from lg_deploy.settings import Settings, load_settings
from lg_deploy.store.memory import InMemoryExecutionStore

MEMORY_WAIT_POLL_SECONDS = 0.05


def create_app(
    settings: Settings | None = None,
    *,
    store: InMemoryExecutionStore | None = None,
    graphs: GraphRegistry | None = None,
) -> Starlette:
    """The API with workers in its lifespan; pass a memory `store` to run over your own."""
    from lg_deploy.console.app import console_mount  # the console builds on this package

    settings = settings or load_settings(os.environ)
    metrics = Metrics()
    openapi = build_openapi()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        if store is not None:
            opened = runtime_over(settings, store, graphs=graphs, metrics=metrics)
        else:
            opened = open_runtime(settings, graphs=graphs, metrics=metrics)
        warn_if_exposed(settings.host, settings.api_key)
        async with opened as runtime:
            poll = settings.poll_interval_seconds if runtime.pool else MEMORY_WAIT_POLL_SECONDS
            waiter = FinishWaiter(runtime.store, runtime.listener, poll_seconds=poll)
            try:
                yield {
                    "runtime": runtime,
                    "waiter": waiter,
                    "metrics": metrics,
                    "settings": settings,
                }
            finally:
                waiter.close()

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(openapi)

    return Starlette(
        debug=False,
        routes=[
            *routes(),
            *langgraph_routes(),
            Route("/openapi.json", openapi_json, methods=["GET"]),
            console_mount(),
        ],
        middleware=[
            Middleware(StartupErrors),
            Middleware(RequestIdMiddleware, metrics=metrics),
            Middleware(ApiKeyMiddleware, api_key=settings.api_key),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
