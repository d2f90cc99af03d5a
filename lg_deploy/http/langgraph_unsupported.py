"""The LangGraph Platform routes lg-deploy does not serve yet: JSON `not_supported` naming them.

A path lg-deploy does not serve answers 501. A platform method on a path it serves with other
methods (PATCH of a thread's state) answers 405 with the same body and an Allow header: the
resource exists, that method is not allowed on it here, as its OpenAPI document says.
Starlette takes a full match (path and method) over a partial one, so these routes sit after
the served ones; a method the platform lacks too answers a plain 405, and paths outside these
families keep their 404.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from starlette.routing import BaseRoute, Match, NoMatchFound, Route
from starlette.types import Receive, Scope, Send

from lg_deploy.http.errors import ApiError, error_response

NOT_SUPPORTED = "not_supported"
FEATURES = {
    "threads": "protocol v2 (thread event streams and commands) is",
    "thread-state-metadata": "changing a checkpoint's metadata is",
    "run-batches": "batches of runs are",
    "run-bulk-cancel": "cancelling many runs at once is",
    "mcp": "MCP is",
    "a2a": "A2A is",
    "info": "the server info route is",
}
_THREAD = "/threads/{thread_id}"
# (path, methods, feature): the platform's routes (Agent Server 0.16, both SDKs) not served here.
UNSUPPORTED_ROUTES: list[tuple[str, tuple[str, ...], str]] = [
    (_THREAD + "/state", ("PATCH",), "thread-state-metadata"),
    (_THREAD + "/stream/events", ("POST",), "threads"),
    (_THREAD + "/commands", ("POST",), "threads"),
    ("/runs/batch", ("POST",), "run-batches"),
    ("/runs/cancel", ("POST",), "run-bulk-cancel"),
    ("/mcp", ("GET", "POST", "DELETE"), "mcp"),
    ("/a2a/{assistant_id}", ("GET", "POST"), "a2a"),
    ("/.well-known/agent-card.json", ("GET",), "a2a"),
    ("/info", ("GET",), "info"),
]


class NotSupported(BaseRoute):
    """A platform route lg-deploy does not serve yet; matches like a Route, answers 501 JSON."""

    def __init__(
        self, path: str, methods: Collection[str], feature: str, served: Collection[str] = ()
    ) -> None:
        self.path = path
        self.methods = _with_head(methods)
        self.feature = feature
        self.served = _with_head(served)  # methods lg-deploy serves on this path: then a 405
        self._matcher = Route(path, self.handle, methods=list(methods))  # Starlette's matching

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """FULL on path and method, PARTIAL on the path alone (a 405), else NONE: as a Route."""
        return self._matcher.matches(scope)

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        """These routes have no name to build a URL from."""
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer the refusal for this request's method."""
        await error_response(scope, self._refusal(scope["method"]))(scope, receive, send)

    def _refusal(self, method: str) -> ApiError:
        """`not_supported` naming the feature: 501, or 405 on a path served with other methods."""
        if method not in self.methods:
            return ApiError(405, "Method Not Allowed", headers=_allow(self.methods))
        message = f"{FEATURES[self.feature]} not supported by lg-deploy yet"
        if self.served:
            headers = _allow(self.served)
            return ApiError(405, message, code=NOT_SUPPORTED, headers=headers, feature=self.feature)
        return ApiError(501, message, code=NOT_SUPPORTED, feature=self.feature)


def _allow(methods: Collection[str]) -> dict[str, str]:
    return {"Allow": ", ".join(sorted(methods))}


def _with_head(methods: Collection[str]) -> set[str]:
    return {*methods, *(("HEAD",) if "GET" in methods else ())}


def unsupported_routes(served: Sequence[Route]) -> list[BaseRoute]:
    """One NotSupported route per entry of UNSUPPORTED_ROUTES, knowing the `served` routes."""
    served_methods: dict[str, set[str]] = {}
    for route in served:
        served_methods.setdefault(route.path, set()).update(route.methods or ())
    return [
        NotSupported(path, methods, feature, served_methods.get(path, ()))
        for path, methods, feature in UNSUPPORTED_ROUTES
    ]
