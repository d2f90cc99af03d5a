"""Request helpers both route modules share: the runtime a request serves, its JSON body."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse

from lg_deploy.http.errors import ApiError
from lg_deploy.runtime import Runtime
from lg_deploy.settings import Settings

Model = TypeVar("Model", bound=BaseModel)

JSON_TYPES = ("application/json", "application/merge-patch+json")


def runtime_of(request: Request) -> Runtime:
    """The runtime the app put on the request's state."""
    runtime: Runtime = request.state.runtime
    return runtime


async def read_json(request: Request, max_bytes: int) -> Any:
    """The request body as JSON: 415 unless JSON, 413 past `max_bytes`, 400 when malformed."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in JSON_TYPES:
        raise ApiError(415, "send the body as JSON with Content-Type: application/json")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(413, f"body is larger than {max_bytes} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise ApiError(413, f"body is larger than {max_bytes} bytes")
    try:
        return json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as error:
        raise ApiError(400, f"body is not valid JSON: {error}") from None
    except RecursionError:
        raise ApiError(400, "body is nested too deeply") from None


async def body_as(request: Request, model: type[Model]) -> Model:
    """The JSON body validated by `model`; an empty body counts as {} (the SDKs send none)."""
    settings: Settings = request.state.settings
    empty = request.headers.get("content-length") == "0" or (
        "content-length" not in request.headers and "transfer-encoding" not in request.headers
    )
    raw = {} if empty else await read_json(request, settings.max_body_bytes)
    return model.model_validate(raw)


def flag_param(request: Request, name: str) -> bool:
    """A boolean query parameter as the SDKs send it (true/false, 1/0; absent: false); 422 else."""
    text = request.query_params.get(name, "false").lower()
    if text not in ("true", "1", "false", "0"):
        raise ApiError(422, f"{name} must be true or false, not {text[:64]!r}")
    return text in ("true", "1")


def page_response(items: list[Any], offset: int, total: int) -> JSONResponse:
    """One page of a search, with X-Pagination-Total (and X-Pagination-Next while more remain)."""
    headers = {"X-Pagination-Total": str(total)}
    if offset + len(items) < total:
        headers["X-Pagination-Next"] = str(offset + len(items))
    return JSONResponse(items, headers=headers)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")
