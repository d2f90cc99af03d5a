"""The LangGraph Platform routes the langgraph-sdk client uses, over the same executions.

Assistants are served by langgraph_assistants: the stored ones, and one system assistant per
registered graph (id: the graph name or uuid5 of it, as the platform does). A run takes its
assistant's graph, and its config and context under the run's own. Runs are executions, shown
as the platform's runs by langgraph_runs. The platform's other routes answer `not_supported`
(langgraph_unsupported), and so do run keys lg-deploy does not honour yet (langgraph_run_body).
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from lg_deploy.errors import ExecutionNotFound, InvalidTransition, ThreadBusy, ThreadNotFound
from lg_deploy.http.errors import ApiError
from lg_deploy.http.langgraph_assistant_graphs import assistant_graph_routes
from lg_deploy.http.langgraph_assistants import assistant_routes
from lg_deploy.http.langgraph_crons import cron_routes
from lg_deploy.http.langgraph_new_run import new_run, run_body
from lg_deploy.http.langgraph_run_body import (
    RunBody,
    RunCreate,
    RunStream,
    RunWait,
    ThreadRunCreate,
    ThreadRunStream,
    ThreadRunWait,
)
from lg_deploy.http.langgraph_runs import (
    outcome_of,
    run_assistant_id,
    run_of,
    run_status,
    thread_of,
)
from lg_deploy.http.langgraph_state import state_routes
from lg_deploy.http.langgraph_store import store_routes
from lg_deploy.http.langgraph_streams import (
    event_log,
    last_event_id,
    mode_filter,
    run_stream_response,
    thread_events,
)
from lg_deploy.http.langgraph_threads import canonical_thread_id, thread_routes
from lg_deploy.http.langgraph_unsupported import unsupported_routes
from lg_deploy.http.requests import runtime_of
from lg_deploy.http.sse import MEDIA_TYPE, SSE_HEADERS
from lg_deploy.http.waiting import FinishWaiter
from lg_deploy.models import CancelAction, ExecutionState
from lg_deploy.settings import Settings
from lg_deploy.threads.models import RunAdmission

BUSY_MESSAGE = (
    "Thread is already running a task. Wait for it to finish or choose a different multitask"
    " strategy."
)
# The multitask strategies that stop the runs in flight first, and how they stop them.
CANCEL_ACTIONS: dict[str, CancelAction] = {"interrupt": "interrupt", "rollback": "rollback"}
# How long a wait or join holds its answer back hoping to send the outcome in one piece
# (headers come with it, so this stays well under any client's read timeout).
QUICK_ANSWER_SECONDS = 0.5


async def _create_run(request: Request, model: type[RunBody]) -> tuple[ExecutionState, RunBody]:
    """A thread-less run; a resume needs a thread (400, as the platform answers)."""
    body = await run_body(request, model)
    if body.command is not None:
        raise ApiError(400, "You must provide a thread_id when resuming.")
    state = await new_run(request, body, None)
    runtime = runtime_of(request)
    stored = await runtime.store.create(state, delay_seconds=body.after_seconds or 0.0)
    runtime.announce(stored)
    return stored, body


async def _create_thread_run(
    request: Request, model: type[RunBody]
) -> tuple[ExecutionState, RunBody]:
    """A run on the path's thread, by its multitask strategy: `reject` refuses one while a run
    is in flight (409), `interrupt` cancels those first, `rollback` cancels and forgets them,
    `enqueue` (the default) queues it behind them."""
    thread_id = canonical_thread_id(request.path_params["thread_id"])
    body = await run_body(request, model)
    state = await new_run(request, body, thread_id)
    runtime = runtime_of(request)
    wanted = state.config.get("configurable", {}).get("checkpoint_id")
    if wanted and not await runtime.graphs.has_checkpoint(thread_id, str(wanted)):
        raise ApiError(404, f"checkpoint {wanted} not found in thread {thread_id}")
    strategy = body.multitask_strategy or "enqueue"
    admission = RunAdmission(
        create_thread=body.if_not_exists == "create",
        reject_if_busy=strategy == "reject",
        cancel_in_flight=CANCEL_ACTIONS.get(strategy),
        assistant_id=run_assistant_id(state),
        delay_seconds=body.after_seconds or 0.0,
    )
    try:
        stored = await runtime.threads.submit_run(state, admission)
    except ThreadNotFound:
        raise ApiError(404, "Thread or assistant not found.", thread_id=thread_id) from None
    except ThreadBusy:
        raise ApiError(409, BUSY_MESSAGE, thread_id=thread_id) from None
    if admission.cancel_in_flight is not None:
        await runtime.stop_cancelled(thread_id)
    runtime.announce(stored)
    return stored, body


def _run_headers(state: ExecutionState) -> dict[str, str]:
    return {"Content-Location": f"/threads/{thread_of(state)}/runs/{state.execution_id}"}


def _wait_headers(state: ExecutionState) -> dict[str, str]:
    join = f"/threads/{thread_of(state)}/runs/{state.execution_id}/join"
    return {**_run_headers(state), "Location": join}


async def create_run(request: Request) -> Response:
    """POST /runs: a background run (an execution); answers the Run."""
    stored, body = await _create_run(request, RunCreate)
    return JSONResponse(run_of(stored, body.multitask_strategy), headers=_run_headers(stored))


async def create_thread_run(request: Request) -> Response:
    """POST /threads/{thread_id}/runs: a background run on the thread; answers the Run."""
    stored, _ = await _create_thread_run(request, ThreadRunCreate)
    return JSONResponse(run_of(stored), headers=_run_headers(stored))


async def wait_run(request: Request) -> Response:
    """POST /runs/wait: create a run and answer its output once final, spaces meanwhile."""
    stored, _ = await _create_run(request, RunWait)
    return await _outcome_response(request, stored, _wait_headers(stored))


async def wait_thread_run(request: Request) -> Response:
    """POST /threads/{thread_id}/runs/wait: a run on the thread, answered once final."""
    stored, _ = await _create_thread_run(request, ThreadRunWait)
    return await _outcome_response(request, stored, _wait_headers(stored))


async def _outcome_response(
    request: Request, state: ExecutionState, headers: dict[str, str] | None = None
) -> Response:
    """The outcome as one plain answer when the run is final within `QUICK_ANSWER_SECONDS`
    (most are: no stream, no task group); else streamed, a space every keepalive."""
    waiter: FinishWaiter = request.state.waiter
    keepalive = _keepalive(request)
    known = None if state.is_final else state
    current = await waiter.wait(
        state.execution_id, min(keepalive, QUICK_ANSWER_SECONDS), known=known
    )
    if current is None or current.is_final:
        return Response(_outcome_bytes(current), media_type="application/json", headers=headers)
    stream = _outcome_stream(waiter, state.execution_id, keepalive)
    return StreamingResponse(stream, media_type="application/json", headers=headers)


def _keepalive(request: Request) -> float:
    settings: Settings = request.state.settings
    return settings.keepalive_seconds


def _outcome_bytes(state: ExecutionState | None) -> bytes:
    """The JSON of a final run's outcome, or of the error a vanished run answers."""
    if state is None:
        return json.dumps({"__error__": {"error": "NotFound", "message": "run vanished"}}).encode()
    return json.dumps(outcome_of(state)).encode()


async def _outcome_stream(
    waiter: FinishWaiter, execution_id: str, keepalive_seconds: float
) -> AsyncIterator[bytes]:
    """A space at once and every `keepalive_seconds` (JSON allows leading whitespace), then the
    outcome."""
    yield b" "
    while True:
        state = await waiter.wait(execution_id, keepalive_seconds)
        if state is None or state.is_final:
            yield _outcome_bytes(state)
            return
        yield b" "


async def stream_run(request: Request) -> Response:
    """POST /runs/stream: create a run and stream its events from the first."""
    stored, body = await _create_run(request, RunStream)
    cancel = body.on_disconnect == "cancel"
    return run_stream_response(request, stored, after=0, cancel_on_disconnect=cancel)


async def stream_thread_run(request: Request) -> Response:
    """POST /threads/{thread_id}/runs/stream: a run on the thread, streamed from its first event."""
    stored, body = await _create_thread_run(request, ThreadRunStream)
    cancel = body.on_disconnect == "cancel"
    return run_stream_response(request, stored, after=0, cancel_on_disconnect=cancel)


async def join_run_stream(request: Request) -> Response:
    """GET /threads/{thread_id}/runs/{run_id}/stream (and /runs/{run_id}/stream): the run's
    events after Last-Event-ID (-1: all of them; none: from now on)."""
    if "thread_id" in request.path_params:
        state = await _thread_run(request)
    else:
        state = await _run_by_id(request.path_params["run_id"], request)
    after = last_event_id(request)
    if after is None:  # live only: from the newest event on
        after = await event_log(runtime_of(request)).last_run_event(state.execution_id)
    cancel = request.query_params.get("cancel_on_disconnect") in ("1", "true")
    return run_stream_response(
        request,
        state,
        after=after,
        keep=mode_filter(request),
        cancel_on_disconnect=cancel,
        location=request.url.path,
    )


async def join_thread_stream(request: Request) -> Response:
    """GET /threads/{thread_id}/stream: every run's events on the thread, from Last-Event-ID
    (-1: all kept; none: from now on), until the client goes."""
    thread_id = canonical_thread_id(request.path_params["thread_id"])
    runtime = runtime_of(request)
    if await runtime.threads.get(thread_id) is None:
        raise ApiError(404, f"thread {thread_id} not found")
    after = last_event_id(request)
    if after is None:  # live only: from the newest event on
        after = await event_log(runtime).last_thread_event(thread_id)
    settings: Settings = request.state.settings
    body = thread_events(runtime, thread_id, after, settings)
    return StreamingResponse(body, media_type=MEDIA_TYPE, headers=SSE_HEADERS)


async def _run_by_id(run_id: str, request: Request) -> ExecutionState:
    """A run named by its id alone (404 when there is none)."""
    state = await _find_run(request, run_id)
    if state is None:
        raise ApiError(404, f"run {run_id} not found")
    return state


async def _find_run(request: Request, run_id: str) -> ExecutionState | None:
    """The execution a run id names; None for an unknown or malformed id."""
    with contextlib.suppress(ValueError):
        return await runtime_of(request).store.get(str(uuid.UUID(run_id)))
    return None


async def _thread_run(request: Request) -> ExecutionState:
    """The run the path names, on the thread it names (a thread-less run's thread is its id)."""
    thread_id, run_id = request.path_params["thread_id"], request.path_params["run_id"]
    state = await _find_run(request, run_id)
    if state is None or not _on_thread(state, thread_id):
        raise ApiError(404, f"run {run_id} not found in thread {thread_id}")
    return state


def _on_thread(state: ExecutionState, thread_id: str) -> bool:
    with contextlib.suppress(ValueError):
        return thread_of(state) == str(uuid.UUID(thread_id))
    return False


async def get_run(request: Request) -> Response:
    """GET /threads/{thread_id}/runs/{run_id}."""
    return JSONResponse(run_of(await _thread_run(request)))


async def delete_run(request: Request) -> Response:
    """DELETE /threads/{thread_id}/runs/{run_id}: a finished run goes (409 while in flight)."""
    state = await _thread_run(request)
    if not await runtime_of(request).store.delete_final(state.execution_id):
        raise ApiError(409, f"run {state.execution_id} is {run_status(state)}: cancel it first")
    return Response(status_code=204)


async def list_runs(request: Request) -> Response:
    """GET /threads/{thread_id}/runs: a thread's runs newest first; a thread-less run's thread
    holds that one run."""
    thread_id = request.path_params["thread_id"]
    params = request.query_params
    try:
        limit, offset = int(params.get("limit", 10)), int(params.get("offset", 0))
    except ValueError:
        raise ApiError(422, "limit and offset must be whole numbers") from None
    if limit < 1 or offset < 0:
        raise ApiError(422, "limit must be at least 1 and offset at least 0")
    runtime = runtime_of(request)
    wanted = params.get("status")
    canonical = canonical_thread_id(thread_id)
    if await runtime.threads.get(canonical) is not None:
        runs = await runtime.store.list_thread_runs(canonical, limit=10_000)
        found = [run_of(r) for r in runs if wanted in (None, run_status(r))]
        return JSONResponse(found[offset : offset + limit])
    state = await runtime.store.get(canonical)
    if state is None or state.thread_id is not None:
        raise ApiError(404, f"thread {thread_id} not found")
    runs_ = [run_of(state)] if wanted in (None, run_status(state)) else []
    return JSONResponse(runs_[offset : offset + limit])


async def join_run(request: Request) -> Response:
    """GET /threads/{thread_id}/runs/{run_id}/join: the output once final, spaces meanwhile."""
    return await _outcome_response(request, await _thread_run(request))


async def cancel_run(request: Request) -> Response:
    """POST /threads/{thread_id}/runs/{run_id}/cancel[?wait=1][&action=interrupt|rollback]:
    stop it (a rollback is then forgotten, with its checkpoints); 204 (or once final or gone)."""
    state = await _thread_run(request)
    action = request.query_params.get("action", "interrupt")
    if action not in CANCEL_ACTIONS:
        raise ApiError(422, f"action: must be interrupt or rollback, not {action!r}")
    try:
        await runtime_of(request).cancel(state.execution_id, CANCEL_ACTIONS[action])
    except (ExecutionNotFound, InvalidTransition) as error:
        raise ApiError(409, str(error)) from None
    if request.query_params.get("wait") in ("1", "true"):
        waiter: FinishWaiter = request.state.waiter
        while True:
            current = await waiter.wait(state.execution_id, _keepalive(request))
            if current is None or current.is_final:
                break
    return Response(status_code=204)


async def thread_runs(request: Request) -> Response:
    """GET or POST /threads/{thread_id}/runs: one route, so a 405 lists both."""
    return await (create_thread_run if request.method == "POST" else list_runs)(request)


async def one_run(request: Request) -> Response:
    """GET or DELETE /threads/{thread_id}/runs/{run_id}: one route, so a 405 lists both."""
    return await (delete_run if request.method == "DELETE" else get_run)(request)


def langgraph_routes() -> list[BaseRoute]:
    """The LangGraph Platform routes lg-deploy serves, then the others it refuses (after them)."""
    runs = "/threads/{thread_id}/runs"
    served = [
        *cron_routes(),  # before the run routes: /threads/{id}/runs/crons is no run's id
        *assistant_routes(),
        *assistant_graph_routes(),
        Route("/runs", create_run, methods=["POST"]),
        Route("/runs/wait", wait_run, methods=["POST"]),
        Route("/runs/stream", stream_run, methods=["POST"]),
        Route("/runs/{run_id}/stream", join_run_stream, methods=["GET"]),
        Route("/threads/{thread_id}/stream", join_thread_stream, methods=["GET"]),
        Route(runs + "/stream", stream_thread_run, methods=["POST"]),
        Route(runs + "/{run_id}/stream", join_run_stream, methods=["GET"]),
        Route(runs, thread_runs, methods=["GET", "POST"]),
        Route(runs + "/wait", wait_thread_run, methods=["POST"]),
        Route(runs + "/{run_id}", one_run, methods=["GET", "DELETE"]),
        Route(runs + "/{run_id}/join", join_run, methods=["GET"]),
        Route(runs + "/{run_id}/cancel", cancel_run, methods=["POST"]),
        *thread_routes(),
        *state_routes(),
        *store_routes(),
        *cron_routes(),
    ]
    return [*served, *unsupported_routes(served)]
