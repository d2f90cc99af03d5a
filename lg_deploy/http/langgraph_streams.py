"""The platform's streams over lg_deploy.run_events: a run's, from any API process, resumable.

A stream reads the run's recorded events after its cursor, woken by this process's one LISTEN
connection (StreamHub) and polling as well, and ends only once the run is final (or gone) and
every event before that is sent: both SDKs re-check a run that ends early and reconnect. Each
event carries its id; a reconnect's Last-Event-ID resumes after it (-1: from the start). A
client that goes away from a stream asked with on_disconnect=cancel cancels its run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from lg_deploy.http.errors import ApiError
from lg_deploy.http.langgraph_runs import thread_of
from lg_deploy.http.requests import runtime_of
from lg_deploy.http.sse import HEARTBEAT, MEDIA_TYPE, SSE_HEADERS, frame, resume_point
from lg_deploy.models import ExecutionState
from lg_deploy.runtime import Runtime
from lg_deploy.settings import Settings
from lg_deploy.streams.protocol import METADATA_EVENT, RUN_DONE_EVENT
from lg_deploy.tasks import wait_for_event

logger = logging.getLogger(__name__)

READ_BATCH = 500
MAX_POLL_SECONDS = 1.0
_cancelling: set[asyncio.Task[object]] = set()

EventFilter = Callable[[str], bool]


def last_event_id(request: Request) -> int | None:
    """The request's Last-Event-ID as a cursor (None: no header); 422 when it is not an id."""
    try:
        return resume_point(request.headers.get("last-event-id"))
    except ValueError:
        header = request.headers.get("last-event-id")
        raise ApiError(422, f"Last-Event-ID must be an event id or -1, not {header!r}") from None


def mode_filter(request: Request) -> EventFilter:
    """Which events a join sends: those of its stream_mode params (repeated, or one JSON-ish
    list), `metadata` and `error` always; no param sends everything."""
    wanted: set[str] = set()
    for value in request.query_params.getlist("stream_mode"):
        for part in value.strip("[]").split(","):
            if mode := part.strip().strip('"'):
                wanted.add("messages" if mode.startswith("messages") else mode)
    if not wanted:
        return lambda _event: True

    def keep(event: str) -> bool:
        base = event.split("|", 1)[0].split("/", 1)[0]
        return base in wanted or base in (METADATA_EVENT, "error")

    return keep


def run_stream_response(
    request: Request,
    state: ExecutionState,
    *,
    after: int,
    keep: EventFilter | None = None,
    cancel_on_disconnect: bool = False,
    location: str | None = None,
) -> Response:
    """The SSE response of one run's events after `after`, with the platform's headers."""
    runtime = runtime_of(request)
    thread = thread_of(state)
    prefix = f"/threads/{thread}" if state.thread_id else ""
    headers = {
        **SSE_HEADERS,
        "Location": location or f"{prefix}/runs/{state.execution_id}/stream",
        "Content-Location": f"{prefix}/runs/{state.execution_id}",
    }
    body = run_events(
        runtime,
        state.execution_id,
        after,
        keep or (lambda _event: True),
        _settings(request),
        cancel_on_disconnect=cancel_on_disconnect,
    )
    return StreamingResponse(body, media_type=MEDIA_TYPE, headers=headers)


async def run_events(
    runtime: Runtime,
    execution_id: str,
    after: int,
    keep: EventFilter,
    settings: Settings,
    *,
    cancel_on_disconnect: bool = False,
) -> AsyncIterator[bytes]:
    """The run's events after `after` until it is final and all are sent; heartbeats between."""
    log = runtime.events
    assert log is not None, "every runtime has an event log"
    loop = asyncio.get_running_loop()
    poll = min(settings.poll_interval_seconds, MAX_POLL_SECONDS)
    next_beat = loop.time() + settings.keepalive_seconds
    ended = False
    try:
        with runtime.hub.watch(execution_id) as woken:
            while True:
                woken.clear()
                read = await log.run_events(execution_id, after, READ_BATCH)
                for event in read.events:
                    after = event.event_id
                    if keep(event.event):
                        yield frame(event.event, event.data, event.event_id)
                if loop.time() >= next_beat:
                    yield HEARTBEAT
                    next_beat = loop.time() + settings.keepalive_seconds
                if len(read.events) == READ_BATCH:
                    continue
                if read.finished:
                    ended = True
                    return
                await wait_for_event(woken, max(0.0, min(poll, next_beat - loop.time())))
    finally:
        if cancel_on_disconnect and not ended:
            _cancel_in_background(runtime, execution_id)


def _cancel_in_background(runtime: Runtime, execution_id: str) -> None:
    """Cancel a run whose streaming client went away (the request's task is ending)."""

    async def cancel() -> object:
        with contextlib.suppress(Exception):
            await runtime.cancel(execution_id)
            logger.info("run cancelled: its streaming client disconnected")
        return None

    task = asyncio.get_running_loop().create_task(cancel())
    _cancelling.add(task)
    task.add_done_callback(_cancelling.discard)


async def thread_events(
    runtime: Runtime, thread_id: str, after: int, settings: Settings
) -> AsyncIterator[bytes]:
    """Every run's events on a thread after `after`, each run ended by a metadata run_done
    event; open until the client goes, heartbeats between."""
    log = runtime.events
    assert log is not None, "every runtime has an event log"
    loop = asyncio.get_running_loop()
    poll = min(settings.poll_interval_seconds, MAX_POLL_SECONDS)
    next_beat = loop.time() + settings.keepalive_seconds
    with runtime.hub.watch(thread_id) as woken:
        while True:
            woken.clear()
            events = await log.thread_events(thread_id, after, READ_BATCH)
            for event in events:
                after = event.event_id
                name = METADATA_EVENT if event.event == RUN_DONE_EVENT else event.event
                yield frame(name, event.data, event.event_id)
            if loop.time() >= next_beat:
                yield HEARTBEAT
                next_beat = loop.time() + settings.keepalive_seconds
            if len(events) < READ_BATCH:
                await wait_for_event(woken, max(0.0, min(poll, next_beat - loop.time())))


def _settings(request: Request) -> Settings:
    settings: Settings = request.state.settings
    return settings
