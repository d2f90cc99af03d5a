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
from collections.abc import AsyncIterator, Awaitable, Callable

import psycopg
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from lg_deploy.http.errors import ApiError
from lg_deploy.http.langgraph_runs import thread_of
from lg_deploy.http.requests import runtime_of
from lg_deploy.http.sse import HEARTBEAT, MEDIA_TYPE, SSE_HEADERS, frame, resume_point
from lg_deploy.models import ExecutionState
from lg_deploy.runtime import Runtime
from lg_deploy.settings import Settings
from lg_deploy.streams.protocol import METADATA_EVENT, RUN_DONE_EVENT, EventLog
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


# One read of a stream: the frames to send, whether the read was a full batch (read again at
# once), and whether the stream is over.
Read = Callable[[], Awaitable[tuple[list[bytes], bool, bool]]]


async def follow(
    runtime: Runtime, key: str, settings: Settings, read: Read
) -> AsyncIterator[bytes]:
    """Send what each `read` finds until it says the stream is over; between reads, wait for
    `key`'s notification or the poll interval, and send a heartbeat each keepalive interval.

    A read the database fails (a restart, a terminated backend, no pooled connection in time)
    is tried again at the next poll, heartbeats going on meanwhile: the stream is not cut.
    """
    loop = asyncio.get_running_loop()
    poll = min(settings.poll_interval_seconds, MAX_POLL_SECONDS)
    next_beat = loop.time() + settings.keepalive_seconds
    with runtime.hub.watch(key) as woken:
        while True:
            woken.clear()
            try:
                frames, full, over = await read()
            except psycopg.OperationalError as error:
                logger.warning("stream read failed (%s); trying again", type(error).__name__)
                frames, full, over = [], False, False
            for chunk in frames:
                yield chunk
            if loop.time() >= next_beat:
                yield HEARTBEAT
                next_beat = loop.time() + settings.keepalive_seconds
            if over:
                return
            if not full:
                await wait_for_event(woken, max(0.0, min(poll, next_beat - loop.time())))


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
    log = event_log(runtime)
    ended = False

    async def read() -> tuple[list[bytes], bool, bool]:
        nonlocal after, ended
        found = await log.run_events(execution_id, after, READ_BATCH)
        after = found.events[-1].event_id if found.events else after
        frames = [frame(e.event, e.data, e.event_id) for e in found.events if keep(e.event)]
        full = len(found.events) == READ_BATCH
        ended = not full and found.finished
        return frames, full, ended

    try:
        async for chunk in follow(runtime, execution_id, settings, read):
            yield chunk
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
    log = event_log(runtime)

    async def read() -> tuple[list[bytes], bool, bool]:
        nonlocal after
        events = await log.thread_events(thread_id, after, READ_BATCH)
        after = events[-1].event_id if events else after
        frames = [
            frame(METADATA_EVENT if e.event == RUN_DONE_EVENT else e.event, e.data, e.event_id)
            for e in events
        ]
        return frames, len(events) == READ_BATCH, False

    async for chunk in follow(runtime, thread_id, settings, read):
        yield chunk


def event_log(runtime: Runtime) -> EventLog:
    """The runtime's event log (every runtime opened by open_runtime has one)."""
    log = runtime.events
    assert log is not None, "every runtime serving streams has an event log"
    return log


def _settings(request: Request) -> Settings:
    settings: Settings = request.state.settings
    return settings
