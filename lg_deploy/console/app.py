"""The console mounted at /ui: its routes, its sign-in gate, its headers and its error pages."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

import psycopg
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from lg_deploy.console import actions, pages
from lg_deploy.console.render import SecurityHeaders, render
from lg_deploy.http.errors import ApiError, error_response, request_id_of

STATIC = Path(__file__).resolve().parent / "static"
PREFIX = "/ui"
OPEN_PATHS = ("/login", "/static/")
Endpoint = Callable[[Request], Awaitable[Response]]


def wants_html(request: Request) -> bool:
    """True for a browser's request (it accepts text/html); API clients get JSON errors."""
    return "text/html" in request.headers.get("accept", "")


def html_errors(endpoint: Endpoint) -> Endpoint:
    """The endpoint, its errors answered as a page (message and request id) to browsers."""

    @functools.wraps(endpoint)
    async def answer(request: Request) -> Response:
        try:
            return await endpoint(request)
        except psycopg.OperationalError:
            error = ApiError(503, "the database is unavailable; try again shortly")
            return _error_page(request, error)
        except ApiError as error:
            return _error_page(request, error)

    return answer


def _error_page(request: Request, error: ApiError) -> Response:
    if not wants_html(request):
        return error_response(request.scope, error)
    return render(
        request,
        "error.html",
        error.status,
        layout="bare.html",
        message=error.message,
        request_id=request_id_of(request.scope),
    )


class SignInGate:
    """Sends a browser that is not signed in to the sign-in page (401 JSON to other callers)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass signed-in calls and the open paths on; turn the others away."""
        inner = scope["path"][len(scope.get("root_path", "")) :] or "/"
        if scope["type"] != "http" or inner.startswith(OPEN_PATHS):
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        if actions.gate_allows(request):
            await self.app(scope, receive, send)
            return
        response: Response
        if request.method in ("GET", "HEAD") and wants_html(request):
            target = quote(scope["path"] + ("?" + request.url.query if request.url.query else ""))
            response = RedirectResponse(f"{PREFIX}/login?next={target}", status_code=303)
        else:
            refusal = ApiError(401, "sign in at /ui/login, or send the API key")
            response = error_response(scope, refusal)
        await response(scope, receive, send)


def _route(path: str, endpoint: Endpoint, methods: list[str] | None = None) -> Route:
    return Route(path, html_errors(endpoint), methods=methods or ["GET"])


def console_mount() -> Mount:
    """The console's routes under /ui, behind its gate and security headers."""
    one = "/executions/{execution_id}"
    routes = [
        _route("/", pages.overview),
        _route("/executions", pages.executions),
        _route("/executions/bulk", actions.bulk, ["POST"]),
        _route(one, pages.execution),
        _route(one + "/cancel", actions.cancel, ["POST"]),
        _route(one + "/retry", actions.retry, ["POST"]),
        _route(one + "/stream", actions.stream),
        _route("/threads", pages.threads),
        _route("/threads/{thread_id}", pages.thread),
        _route("/graphs", pages.graphs),
        _route("/graphs/{graph_id:path}", pages.graph),
        _route("/login", actions.login, ["GET", "POST"]),
        _route("/logout", actions.logout, ["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Mount(
        PREFIX,
        routes=routes,
        middleware=[Middleware(SecurityHeaders), Middleware(SignInGate)],
    )
