"""Pure-ASGI request-id middleware: reuse or make an id, log start and end, answer 500 as JSON."""

from __future__ import annotations

import logging
import os
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lg_deploy.http.errors import ApiError, error_response
from lg_deploy.logs import bound
from lg_deploy.metrics import Metrics

logger = logging.getLogger("lg_deploy.http")

REQUEST_ID_HEADER = b"x-request-id"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def pick_request_id(headers: list[tuple[bytes, bytes]]) -> str:
    """The incoming X-Request-ID if safe to reuse (1-128 of A-Za-z0-9._:-), else a new one."""
    for name, value in headers:
        if name.lower() == REQUEST_ID_HEADER:
            candidate = value.decode("latin-1")
            if _VALID_REQUEST_ID.match(candidate):
                return candidate
    return os.urandom(16).hex()  # as random as uuid4().hex, without building a UUID


class RequestIdMiddleware:
    """Gives each HTTP request an id, echoes it, logs it, and turns a crash into a JSON 500."""

    def __init__(self, app: ASGIApp, metrics: Metrics | None = None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call; non-HTTP calls pass through untouched."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = pick_request_id(scope["headers"])
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        response_started = False
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status, response_started = message["status"], True
                headers = [
                    h for h in message.get("headers", []) if h[0].lower() != REQUEST_ID_HEADER
                ]
                message["headers"] = [*headers, (REQUEST_ID_HEADER, request_id.encode())]
            await send(message)

        with bound(request_id=request_id):
            method, path = scope["method"], scope["path"]
            logger.info("request started", extra={"method": method, "path": path})
            try:
                await self.app(scope, receive, send_with_id)
            except Exception:
                logger.exception("request failed", extra={"method": method, "path": path})
                if not response_started:
                    crash = ApiError(500, "internal error; quote the request id when reporting it")
                    await error_response(scope, crash)(scope, receive, send)
            finally:
                duration_ms = round((time.perf_counter() - started) * 1000, 3)
                logger.info(
                    "request completed",
                    extra={
                        "method": method,
                        "path": path,
                        "status": status,
                        "duration_ms": duration_ms,
                    },
                )
                self._count(scope, status)

    def _count(self, scope: Scope, status: int) -> None:
        if self.metrics is None:
            return
        route = getattr(scope.get("route"), "path", "unmatched")
        self.metrics.http_requests.labels(scope["method"], route, str(status)).inc()
