"""Who may use the console: a signed session cookie for the API key, a CSRF token per browser."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from lg_deploy.http.auth import presented_key

SESSION_COOKIE = "lg_deploy_session"
CSRF_COOKIE = "lg_deploy_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
COOKIE_PATH = "/ui"
SESSION_SECONDS = 12 * 3600
_SESSION_PURPOSE = b"lg-deploy console session v1:"


def _signature(api_key: str, issued: int) -> str:
    message = _SESSION_PURPOSE + str(issued).encode()
    return hmac.new(api_key.encode(), message, hashlib.sha256).hexdigest()


def session_token(api_key: str, now: float | None = None) -> str:
    """A session cookie value for `api_key`: when it was issued and the key's HMAC of that."""
    issued = int(time.time() if now is None else now)
    return f"{issued}.{_signature(api_key, issued)}"


def session_valid(api_key: str, token: str | None, now: float | None = None) -> bool:
    """True when `token` was signed with `api_key` less than SESSION_SECONDS ago."""
    if not token:
        return False
    issued_text, _, signature = token.partition(".")
    if not issued_text.isdigit():
        return False
    issued = int(issued_text)
    age = (time.time() if now is None else now) - issued
    if not 0 <= age < SESSION_SECONDS:
        return False
    return hmac.compare_digest(signature, _signature(api_key, issued))


def signed_in(request: Request, api_key: str | None) -> bool:
    """True when no key is set, or the request carries the key (header) or a valid session."""
    if api_key is None:
        return True
    given = presented_key(request.scope["headers"])
    if given is not None and hmac.compare_digest(given.encode(), api_key.encode()):
        return True
    return session_valid(api_key, request.cookies.get(SESSION_COOKIE))


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_session(response: Response, request: Request, api_key: str) -> None:
    """Sign the browser in: an HttpOnly, SameSite=Strict cookie scoped to the console."""
    response.set_cookie(
        SESSION_COOKIE,
        session_token(api_key),
        max_age=SESSION_SECONDS,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )


def clear_session(response: Response) -> None:
    """Sign the browser out."""
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")


def csrf_token(request: Request) -> str:
    """The browser's CSRF token: its cookie's, or a new one (set by `keep_csrf`)."""
    known = request.cookies.get(CSRF_COOKIE, "")
    if len(known) == 43 and known.replace("-", "").replace("_", "").isalnum():
        return known
    token: str = request.scope.setdefault("state", {}).setdefault(
        "csrf_token", secrets.token_urlsafe(32)
    )
    return token


def keep_csrf(response: Response, request: Request) -> None:
    """Set the CSRF cookie when this request made a new token."""
    if request.cookies.get(CSRF_COOKIE) != csrf_token(request):
        response.set_cookie(
            CSRF_COOKIE,
            csrf_token(request),
            path=COOKIE_PATH,
            httponly=True,
            samesite="strict",
            secure=_secure(request),
        )


def csrf_ok(request: Request, submitted: str | None) -> bool:
    """True when the submitted token matches the browser's cookie and no other site sent it."""
    cookie = request.cookies.get(CSRF_COOKIE)
    if not cookie or not submitted or not hmac.compare_digest(cookie, submitted):
        return False
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return request.headers.get("sec-fetch-site", "same-origin") == "same-origin"
    return urlsplit(origin).netloc == request.url.netloc
