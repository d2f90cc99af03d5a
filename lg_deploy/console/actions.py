"""What the console changes: sign in and out, cancel, retry, bulk actions; and a run's live stream.

Every form that changes something carries the browser's CSRF token and comes from this origin.
"""

from __future__ import annotations

import hmac
import uuid
from urllib.parse import parse_qsl, quote

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from lg_deploy.console.pages import path_uuid, reads_of
from lg_deploy.console.render import render
from lg_deploy.console.session import (
    CSRF_FIELD,
    CSRF_HEADER,
    clear_session,
    csrf_ok,
    set_session,
    signed_in,
)
from lg_deploy.errors import ExecutionNotFound, InvalidTransition
from lg_deploy.http.errors import ApiError, request_id_of
from lg_deploy.http.langgraph_streams import run_events
from lg_deploy.http.requests import runtime_of
from lg_deploy.http.sse import MEDIA_TYPE, SSE_HEADERS
from lg_deploy.settings import Settings

MAX_FORM_BYTES = 256 * 1024
FORM_TYPE = "application/x-www-form-urlencoded"
MAX_BULK = 100
BULK_ACTIONS = ("cancel", "retry")


def _settings(request: Request) -> Settings:
    settings: Settings = request.state.settings
    return settings


def _back(path: str, **notice: str) -> RedirectResponse:
    """303 to a console page, a notice in its query string."""
    query = "&".join(f"{key}={quote(value)}" for key, value in notice.items())
    return RedirectResponse(f"{path}?{query}" if query else path, status_code=303)


def _local_next(target: str) -> str:
    """A console path to go back to; anything else (another site, //host) is the overview."""
    if target.startswith("/ui") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ui"


async def checked_form(request: Request) -> FormData:
    """The posted form, once its CSRF token and origin are checked (403 otherwise)."""
    form = await _urlencoded(request)
    submitted = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
    if not csrf_ok(request, submitted if isinstance(submitted, str) else None):
        raise ApiError(403, "the form's CSRF token is missing or wrong: reload the page and retry")
    return form


async def _urlencoded(request: Request) -> FormData:
    """The body as an HTML form sends it (application/x-www-form-urlencoded; none: an empty
    form); 413 past MAX_FORM_BYTES, 415 for another type."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise ApiError(413, f"form is larger than {MAX_FORM_BYTES} bytes")
    if media_type != FORM_TYPE and body:
        raise ApiError(415, f"send the form as {FORM_TYPE}")
    try:
        pairs: list[tuple[str, str | UploadFile]] = list(
            parse_qsl(body.decode(), max_num_fields=MAX_BULK + 10)
        )
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "the form cannot be read") from None
    return FormData(pairs)


async def login(request: Request) -> Response:
    """GET /ui/login: the sign-in form; POST: check the key and set the session cookie."""
    api_key = _settings(request).api_key
    target = _local_next(request.query_params.get("next", "/ui"))
    if api_key is None:  # nothing to sign in to
        return _back(target)
    if request.method == "GET":
        return render(request, "login.html", layout="bare.html", target=target, wrong=False)
    form = await checked_form(request)
    given = form.get("api_key")
    if isinstance(given, str) and hmac.compare_digest(given.encode(), api_key.encode()):
        response = _back(target)
        set_session(response, request, api_key)
        return response
    return render(request, "login.html", 401, layout="bare.html", target=target, wrong=True)


async def logout(request: Request) -> Response:
    """POST /ui/logout: forget the session cookie."""
    await checked_form(request)
    response = _back("/ui/login")
    clear_session(response)
    return response


async def cancel(request: Request) -> Response:
    """POST /ui/executions/{id}/cancel: as the API's cancel; back to its page with the outcome."""
    await checked_form(request)
    execution_id = path_uuid(request, "execution_id")
    try:
        state = await runtime_of(request).cancel(execution_id)
    except ExecutionNotFound:
        raise ApiError(404, f"execution {execution_id} not found") from None
    except InvalidTransition as final:
        return _back(f"/ui/executions/{execution_id}", notice=str(final))
    done = "is being stopped" if state.status == "RUNNING" else "was cancelled"
    return _back(f"/ui/executions/{execution_id}", notice=f"execution {done}")


async def retry(request: Request) -> Response:
    """POST /ui/executions/{id}/retry: a new execution repeating this FAILED one; opens it."""
    await checked_form(request)
    execution_id = path_uuid(request, "execution_id")
    made = await reads_of(request).retry_failed([execution_id], request_id_of(request.scope))
    if not made:
        notice = "only a FAILED execution without a thread can be retried"
        return _back(f"/ui/executions/{execution_id}", notice=notice)
    runtime_of(request).announce()
    return _back(f"/ui/executions/{made[0]}", notice=f"retry of {execution_id}")


def _chosen(form: FormData) -> list[str]:
    ids: list[str] = []
    for value in form.getlist("ids")[:MAX_BULK]:
        try:
            ids.append(str(uuid.UUID(str(value))))
        except ValueError:
            raise ApiError(422, f"not an execution id: {str(value)[:64]!r}") from None
    return ids


async def bulk(request: Request) -> Response:
    """POST /ui/executions/bulk: cancel or retry the chosen executions, after a confirmation."""
    form = await checked_form(request)
    action = form.get("action")
    if action not in BULK_ACTIONS:
        raise ApiError(422, "action must be cancel or retry")
    ids = _chosen(form)
    back = _local_next(str(form.get("back") or "/ui/executions"))
    if not ids:
        return _back(back.split("?")[0], notice="choose executions first")
    if form.get("confirmed") != "yes":
        return render(
            request, "confirm.html", layout="base.html", action=action, ids=ids, back=back
        )
    if action == "retry":
        made = await reads_of(request).retry_failed(ids, request_id_of(request.scope))
        runtime_of(request).announce()
        notice = f"{len(made)} retried, {len(ids) - len(made)} not FAILED (or on a thread)"
    else:
        notice = await _cancel_all(request, ids)
    return _back("/ui/executions", notice=notice)


async def _cancel_all(request: Request, ids: list[str]) -> str:
    runtime = runtime_of(request)
    cancelled = stopping = skipped = 0
    for execution_id in ids:
        try:
            state = await runtime.cancel(execution_id)
        except (ExecutionNotFound, InvalidTransition):
            skipped += 1
            continue
        stopping, cancelled = (
            (stopping + 1, cancelled) if state.status == "RUNNING" else (stopping, cancelled + 1)
        )
    return f"{cancelled} cancelled, {stopping} being stopped, {skipped} already finished"


async def stream(request: Request) -> Response:
    """GET /ui/executions/{id}/stream: the run's recorded events as SSE, after Last-Event-ID."""
    execution_id = path_uuid(request, "execution_id")
    runtime = runtime_of(request)
    if await runtime.store.get(execution_id) is None:
        raise ApiError(404, f"execution {execution_id} not found")
    header = request.headers.get("last-event-id", "0")
    after = int(header) if header.isdigit() else 0
    body = run_events(runtime, execution_id, after, lambda _event: True, _settings(request))
    return StreamingResponse(body, media_type=MEDIA_TYPE, headers=SSE_HEADERS)


def gate_allows(request: Request) -> bool:
    """True when the request may see the console (no key set, or signed in)."""
    return signed_in(request, _settings(request).api_key)
