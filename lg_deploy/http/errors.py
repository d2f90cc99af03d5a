"""Every HTTP error is JSON with a code, a message and the request id; never a traceback."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import psycopg
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Scope

from lg_deploy.errors import ExecutionNotFound, InvalidTransition

logger = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    500: "internal_error",
    503: "unavailable",
}


class ApiError(Exception):
    """An error answer: HTTP status, machine code, readable message, optional extra fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ):
        super().__init__(message)
        self.status = status
        self.headers = dict(headers or {})
        self.code = code or _HTTP_CODES.get(status, "error")
        self.message = message
        self.extra = extra


def request_id_of(scope: Scope) -> str:
    """The request id the middleware put on this request."""
    state = scope.get("state") or {}
    return str(state.get("request_id", ""))


def error_response(scope: Scope, error: ApiError) -> JSONResponse:
    """The JSON response for `error`, carrying the request id in body and header."""
    request_id = request_id_of(scope)
    body = {"error": error.code, "message": error.message, "request_id": request_id}
    body.update({k: v for k, v in error.extra.items() if v is not None})
    headers = {**error.headers, **({"X-Request-ID": request_id} if request_id else {})}
    return JSONResponse(body, status_code=error.status, headers=headers)


def validation_details(error: ValidationError) -> list[dict[str, Any]]:
    """Each problem as {field, problem}, field in dotted form."""
    return [
        {
            "field": ".".join(str(part) for part in item["loc"]) or "body",
            "problem": item["msg"].removeprefix("Value error, "),
        }
        for item in error.errors(include_url=False, include_input=False)
    ]


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(request.scope, exc)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ValidationError)
    details = validation_details(exc)
    first = details[0]
    message = f"{first['field']}: {first['problem']}"
    return error_response(request.scope, ApiError(422, message, details=details))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error = ApiError(exc.status_code, str(exc.detail), headers=exc.headers)
    return error_response(request.scope, error)


async def _not_found(request: Request, exc: Exception) -> Response:
    return error_response(request.scope, ApiError(404, str(exc)))


async def _conflict(request: Request, exc: Exception) -> Response:
    return error_response(request.scope, ApiError(409, str(exc)))


async def _database_down(request: Request, exc: Exception) -> Response:
    logger.warning("database unavailable: %s", type(exc).__name__)
    message = "the database is unavailable; try again shortly"
    return error_response(request.scope, ApiError(503, message, code="database_unavailable"))


EXCEPTION_HANDLERS = {
    ApiError: _api_error,
    ValidationError: _validation_error,
    HTTPException: _http_error,
    ExecutionNotFound: _not_found,
    InvalidTransition: _conflict,
    psycopg.OperationalError: _database_down,
}
