"""Optional API key: required on every route but liveness when LG_DEPLOY_API_KEY is set.

The console (/ui) checks it itself: by the same headers, or the session its sign-in form sets.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging

from starlette.types import ASGIApp, Receive, Scope, Send

from lg_deploy.http.errors import ApiError, error_response

logger = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/healthz"})
CONSOLE_PREFIX = "/ui"


def presented_key(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The key from `Authorization: Bearer KEY` or `X-API-Key: KEY`, if any."""
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"x-api-key":
            return value.decode("latin-1")
        if lowered == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token:
                return token.strip()
    return None


def is_loopback(host: str) -> bool:
    """True when `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def warn_if_exposed(host: str, api_key: str | None) -> None:
    """Log a warning when the server listens beyond loopback with no API key."""
    if api_key is None and not is_loopback(host):
        logger.warning(
            "listening on %s without LG_DEPLOY_API_KEY: anyone who can reach it can use it", host
        )


def _open(path: str) -> bool:
    """True for liveness and the console (which signs its users in itself)."""
    return path in OPEN_PATHS or path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/")


class ApiKeyMiddleware:
    """Answers 401 JSON unless the request presents the configured key (constant-time compare)."""

    def __init__(self, app: ASGIApp, api_key: str | None) -> None:
        self.app = app
        self.expected = api_key.encode() if api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the key on HTTP requests to protected paths."""
        if self.expected is None or scope["type"] != "http" or _open(scope["path"]):
            await self.app(scope, receive, send)
            return
        given = presented_key(scope["headers"])
        if given is not None and hmac.compare_digest(given.encode(), self.expected):
            await self.app(scope, receive, send)
            return
        refusal = ApiError(
            401, "missing or wrong API key: send Authorization: Bearer KEY or X-API-Key"
        )
        response = error_response(scope, refusal)
        response.headers["WWW-Authenticate"] = "Bearer"
        await response(scope, receive, send)
