"""The console's pages: overview, executions, one execution, threads, one thread, graphs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from lg_deploy.console.charts import throughput_svg, timeline_svg
from lg_deploy.console.drawings import graph_drawing
from lg_deploy.console.filters import STATUSES, decode_keyset, encode_keyset, parse_filters
from lg_deploy.console.reads import THROUGHPUT_MINUTES, ConsoleReads, ExecutionFilter
from lg_deploy.console.render import render, svg_markup
from lg_deploy.console.story import attempts_of, timeline_events
from lg_deploy.http.errors import ApiError
from lg_deploy.http.requests import runtime_of
from lg_deploy.models import ExecutionState
from lg_deploy.threads.state import read_history

RECENT_RUNS = 10
THREAD_RUNS = 50
STATE_HISTORY = 20


def reads_of(request: Request) -> ConsoleReads:
    """The console's queries (503 when this process runs on the in-memory backend)."""
    pool = runtime_of(request).pool
    if pool is None:
        raise ApiError(503, "the console reads PostgreSQL; this process runs in memory")
    return ConsoleReads(pool)


def _layout(request: Request) -> str:
    """The page's frame: the whole page, or only its live part for a refresh."""
    return "fragment.html" if request.query_params.get("fragment") == "1" else "base.html"


def path_uuid(request: Request, name: str) -> str:
    """The UUID in the path (404 for anything else: no such page)."""
    raw = request.path_params[name]
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise ApiError(404, f"{name.replace('_', ' ')} must be a UUID, not {raw[:64]!r}") from None


async def overview(request: Request) -> Response:
    """GET /ui: queue depth, the last hour's throughput, oldest waiting, workers, unserved."""
    reads = reads_of(request)
    now = datetime.now(UTC)
    minutes = await reads.finished_per_minute(THROUGHPUT_MINUTES)
    return render(
        request,
        "overview.html",
        layout=_layout(request),
        depth=await reads.queue_depth(),
        throughput=svg_markup(throughput_svg(minutes, now=now, minutes=THROUGHPUT_MINUTES)),
        completed=sum(m.completed for m in minutes),
        failed=sum(m.failed for m in minutes),
        oldest=await reads.oldest_waiting(),
        workers=await reads.live_workers(),
        unserved=await runtime_of(request).unserved_graphs(),
        now=now,
    )


async def executions(request: Request) -> Response:
    """GET /ui/executions: filtered, newest first, keyset pages; bulk cancel and retry."""
    reads = reads_of(request)
    form = parse_filters(dict(request.query_params))
    items = await reads.search(form.wanted, form.cursor, form.limit + 1)
    more = len(items) > form.limit
    items = items[: form.limit]
    last = items[-1] if more and items else None
    next_query = None
    if last is not None:
        next_query = form.query_string(cursor=encode_keyset(last.created_at, last.execution_id))
    return render(
        request,
        "executions.html",
        layout=_layout(request),
        form=form,
        items=items,
        next_query=next_query,
        first_query=form.query_string() if form.cursor else None,
        statuses=STATUSES,
        graphs=await reads.graph_names(),
    )


async def execution(request: Request) -> Response:
    """GET /ui/executions/{id}: its fields, input, output, error, timeline, attempts, stream."""
    execution_id = path_uuid(request, "execution_id")
    runtime = runtime_of(request)
    state = await runtime.store.get(execution_id)
    if state is None:
        raise ApiError(404, f"execution {execution_id} not found")
    events = await runtime.store.events(execution_id)
    now = datetime.now(UTC)
    return render(
        request,
        "execution.html",
        layout=_layout(request),
        run=state,
        events=events,
        attempts=attempts_of(events),
        timeline=svg_markup(timeline_svg(timeline_events(events), now=now)),
        retry_of=_retry_of(state),
        final=state.is_final,
        now=now,
    )


def _retry_of(state: ExecutionState) -> str | None:
    value = state.metadata.get("retry_of")
    try:
        return str(uuid.UUID(str(value))) if value is not None else None
    except ValueError:
        return None


async def threads(request: Request) -> Response:
    """GET /ui/threads: threads newest first, with their status and how many runs."""
    reads = reads_of(request)
    status = request.query_params.get("status") or None
    cursor = request.query_params.get("cursor")
    try:
        before = decode_keyset(cursor) if cursor else None
    except ValueError as error:
        raise ApiError(422, str(error)) from None
    limit = 25
    rows = await reads.threads(status, before, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if more and rows else None
    next_cursor = encode_keyset(last["created_at"], str(last["thread_id"])) if last else None
    return render(
        request,
        "threads.html",
        layout=_layout(request),
        rows=rows,
        chosen=status or "",
        next_cursor=next_cursor,
        statuses=("idle", "busy", "interrupted", "error"),
    )


async def thread(request: Request) -> Response:
    """GET /ui/threads/{id}: a conversation's runs, its state now and its state history."""
    thread_id = path_uuid(request, "thread_id")
    runtime = runtime_of(request)
    found = await runtime.threads.get(thread_id)
    if found is None:
        raise ApiError(404, f"thread {thread_id} not found")
    runs = await runtime.store.list_thread_runs(thread_id, limit=THREAD_RUNS)
    graph_id = found.metadata.get("graph_id")
    history: list[dict[str, Any]] | None = None
    if isinstance(graph_id, str) and graph_id in runtime.graphs.names():
        graph = await runtime.graphs.thread_graph(graph_id)
        history = await read_history(graph, thread_id, limit=STATE_HISTORY)
    return render(
        request,
        "thread.html",
        layout=_layout(request),
        thread=found,
        runs=runs,
        graph_id=graph_id if isinstance(graph_id, str) else None,
        history=history,
    )


async def graphs(request: Request) -> Response:
    """GET /ui/graphs: every graph known, who serves it, its last day's outcomes."""
    reads = reads_of(request)
    runtime = runtime_of(request)
    here = set(runtime.graphs.names())
    names = sorted(set(await reads.graph_names()) | here)
    served: set[str] = set()
    for worker in await reads.live_workers():
        served.update(worker["graph_ids"])
    return render(
        request,
        "graphs.html",
        layout=_layout(request),
        names=names,
        here=here,
        served=served,
        stats=await reads.graph_stats(),
        unserved={g.graph_id: g for g in await runtime.unserved_graphs()},
    )


async def graph(request: Request) -> Response:
    """GET /ui/graphs/{graph_id}: its drawing, Mermaid text, recent runs and failure rate."""
    graph_id = request.path_params["graph_id"]
    reads = reads_of(request)
    runtime = runtime_of(request)
    known = set(await reads.graph_names()) | set(runtime.graphs.names())
    if graph_id not in known:
        raise ApiError(404, f"graph {graph_id[:200]!r} is not known to this database")
    recent = await reads.search(ExecutionFilter(graph_id=graph_id), None, RECENT_RUNS)
    stats = (await reads.graph_stats()).get(graph_id)
    drawn = await graph_drawing(runtime.graphs, graph_id)
    return render(
        request,
        "graph.html",
        layout=_layout(request),
        graph_id=graph_id,
        drawn=drawn,
        recent=recent,
        stats=stats,
    )
