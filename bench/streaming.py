"""The streaming group (issue 17): runs streamed through PostgreSQL across processes.

Every row runs one `lg-deploy serve` that runs no graph (`LG_DEPLOY_RUN_GRAPHS=false`) and one
separate `lg-deploy worker`, both on a fresh database of the bench's PostgreSQL, serving the
graphs of `bench.graphs.STREAM_SPECS`; the client is this process (httpx, POST /runs/stream).
The in-process baseline runs in a child: `python -m bench.streaming WORDS ROUNDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench import procs
from bench.graphs import STREAM_SPECS, speak
from bench.measure import WORKER, Result
from bench.server import Server

EMIT_RATE = 100.0  # custom events per second the latency row's graph writes
CLIENT_EVENTS = 20  # custom events each run of the clients row writes (at EMIT_RATE)
READ_TIMEOUT_SECONDS = 120.0
SLOTS = 4  # the worker's slots for the one-run rows (the default)
IN_PROCESS_ROUNDS = 3  # in-process runs (after a warm-up) before and after the served ones
SERVED_ROUNDS = 3  # served runs (after a warm-up) per repetition of the token row


@dataclass(frozen=True)
class StreamSizes:
    """How big each streaming row is (`--quick` shrinks them)."""

    latency_seconds: float = 5.0
    words: int = 1_000  # the reply's words: 2 * words - 1 chunks, each a token event
    clients: int = 200
    client_slots: int = 200  # worker slots, so that every client's run streams at once


QUICK = StreamSizes(latency_seconds=0.5, words=100, clients=10, client_slots=10)


@dataclass
class Stack:
    """The API process, the worker and the database of one repetition."""

    db_url: str
    base_url: str
    api: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes]


@contextlib.contextmanager
def stack(server: Server, slots: int, worker: list[str] = WORKER) -> Iterator[Stack]:
    """A fresh database, an API-only `serve` and one worker of `slots` slots (`worker`: the
    command, for A/B trials of a patched worker), stopped after."""
    url = server.create_database("stream")
    try:
        graphs = json.dumps(STREAM_SPECS)
        port = procs.free_port()
        api_env = procs.lgd_env(url, graphs=graphs, run_graphs="false", host="127.0.0.1", port=port)
        worker_env = procs.lgd_env(url, graphs=graphs, worker_concurrency=slots)
        with (
            procs.running(["-m", "lg_deploy", "serve"], api_env) as api,
            procs.running(worker, worker_env) as child,
        ):
            base = f"http://127.0.0.1:{port}"
            procs.wait_http(api, f"{base}/readyz")
            yield Stack(url, base, api, child)
            procs.check_alive(api)
            procs.check_alive(child)
    finally:
        server.drop_database(url)


@dataclass
class Received:
    """One run's stream as the client read it: each event with its id and arrival time."""

    run_id: str = ""
    events: list[tuple[int, str, Any, float]] = field(default_factory=list)

    def data(self, event: str) -> list[tuple[Any, float]]:
        """(decoded data, time.time() on arrival) of every event of one name, in order."""
        return [(data, at) for _, name, data, at in self.events if name == event]


async def stream_run(http: httpx.AsyncClient, body: dict[str, Any]) -> Received:
    """POST /runs/stream and read the SSE body to its end, timing each event's arrival."""
    got = Received()
    fields: dict[str, str] = {}
    async with http.stream("POST", "/runs/stream", json=body) as answer:
        if answer.status_code != 200:
            raise RuntimeError(
                f"/runs/stream answered {answer.status_code}: {await answer.aread()!r}"
            )
        got.run_id = answer.headers["content-location"].rsplit("/", 1)[-1]
        async for line in answer.aiter_lines():
            if line:
                if not line.startswith(":"):
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")
                continue
            if "event" in fields:
                at = time.time()
                data = json.loads(fields.get("data", "null"))
                got.events.append((int(fields.get("id", -1)), fields["event"], data, at))
            fields = {}
    return got


async def stream_runs(base_url: str, bodies: list[dict[str, Any]]) -> list[Received]:
    """Every body's run streamed at once, each on its own connection, read to its end."""
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=len(bodies))
    timeout = httpx.Timeout(READ_TIMEOUT_SECONDS, connect=30.0)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout) as http:
        return list(await asyncio.gather(*(stream_run(http, body) for body in bodies)))


def emit_body(count: int) -> dict[str, Any]:
    """A run of the `emit` graph writing `count` custom events at EMIT_RATE, streaming them."""
    return {
        "assistant_id": "emit",
        "input": {"count": count, "rate": EMIT_RATE},
        "stream_mode": ["custom"],
    }


def percentiles(values: list[float]) -> Result:
    """p50/p95/p99 (nearest rank below, as the pickup rows) and the largest value."""
    ordered = sorted(values)
    picked = {
        f"p{q} ms": ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))]
        for q in (50, 95, 99)
    }
    return {**picked, "max ms": ordered[-1]}


def latency(server: Server, sizes: StreamSizes) -> Result:
    """Custom events written at 100/s by the worker's graph: arrival at the client minus the
    time.time() the node wrote into each, in ms; split at the start of the INSERT transaction
    that stored each (its created_at, the same host's clock) into the worker's part and the
    rest (INSERT, commit, NOTIFY, the API process's read, SSE, the client)."""
    count = int(EMIT_RATE * sizes.latency_seconds)
    with stack(server, SLOTS) as running:
        asyncio.run(stream_runs(running.base_url, [emit_body(5)]))  # warm-up
        (got,) = asyncio.run(stream_runs(running.base_url, [emit_body(count)]))
        inserted = _insert_times(running.db_url, got.run_id, "custom")
    # (written by the node, its INSERT began, arrived at the client), epoch seconds
    timed = [
        (data["t"], inserted[event_id], at)
        for event_id, name, data, at in got.events
        if name == "custom"
    ]
    if len(timed) != count:
        raise RuntimeError(f"{len(timed)} of {count} custom events arrived")
    total = percentiles([(at - wrote) * 1000 for wrote, _, at in timed])
    worker = percentiles([(began - wrote) * 1000 for wrote, began, _ in timed])
    rest = percentiles([(at - began) * 1000 for _, began, at in timed])
    return {
        **total,
        "emit -> INSERT p50 ms": worker["p50 ms"],
        "emit -> INSERT p99 ms": worker["p99 ms"],
        "INSERT -> client p50 ms": rest["p50 ms"],
        "INSERT -> client p99 ms": rest["p99 ms"],
    }


def _insert_times(url: str, run_id: str, event: str) -> dict[int, float]:
    """{event_id: epoch seconds its INSERT transaction began} of one run's events of a name."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT event_id, extract(epoch FROM created_at) FROM lg_deploy.run_events"
            " WHERE execution_id = %s AND event = %s",
            (run_id, event),
        ).fetchall()
    return {int(event_id): float(began) for event_id, began in rows}


def token_rate(arrivals: list[float]) -> float:
    """Tokens per second from the first token to the last: (n - 1) / (last - first)."""
    if len(arrivals) < 2 or arrivals[-1] <= arrivals[0]:
        raise RuntimeError(f"{len(arrivals)} tokens: no span to time")
    return (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])


async def in_process_rates(words: int, rounds: int) -> list[float]:
    """Tokens/s of `speak` through `astream(stream_mode="messages")` in this process, no server
    and no database, in `rounds` runs after a warm-up."""
    rates: list[float] = []
    for number in range(rounds + 1):
        arrivals: list[float] = []
        async for _chunk in speak.astream({"words": words}, stream_mode="messages"):
            arrivals.append(time.perf_counter())
        if number:
            rates.append(token_rate(arrivals))
    return rates


def in_process(words: int, rounds: int = IN_PROCESS_ROUNDS) -> float:
    """The median of `in_process_rates` in a fresh process (Python's default collector, as
    the graph-only loops), so that nothing of this process's heap weighs on it."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.streaming", str(words), str(rounds)],
        cwd=procs.ROOT,
        env={**os.environ, "PYTHONPATH": str(procs.ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    rates: list[float] = json.loads(done.stdout.strip().splitlines()[-1])
    return statistics.median(rates)


def throughput(server: Server, sizes: StreamSizes, worker: list[str] = WORKER) -> Result:
    """A reply streamed as messages-tuple through the worker, the database and the API process
    (median of SERVED_ROUNDS runs), against the same graph's in-process astream just before and
    just after; and the CPU each process spent per token while the reply was served."""
    tokens = 2 * sizes.words - 1
    before = in_process(sizes.words)
    with stack(server, SLOTS, worker) as running:
        asyncio.run(stream_runs(running.base_url, [speak_body(10)]))  # warm-up
        started = cpu_seconds(server, running)
        got = [
            asyncio.run(stream_runs(running.base_url, [speak_body(sizes.words)]))[0]
            for _ in range(SERVED_ROUNDS)
        ]
        spent = cpu_seconds(server, running)
        batches = [
            len(set(_insert_times(running.db_url, run.run_id, "messages").values())) for run in got
        ]
    beside = (before + in_process(sizes.words)) / 2
    rates = []
    for run in got:
        arrivals = [at for _, at in run.data("messages")]
        if len(arrivals) != tokens:
            raise RuntimeError(f"{len(arrivals)} of {tokens} tokens arrived")
        rates.append(token_rate(arrivals))
    served = statistics.median(rates)
    per_token = {
        name: (spent[name] - started.get(name, 0.0)) * 1e6 / (tokens * len(got)) for name in spent
    }
    postgres = sum(used for name, used in per_token.items() if name.isdigit())
    return {
        "served tokens/s": served,
        "in-process tokens/s": beside,
        "ratio %": 100 * served / beside,
        "INSERT batches": float(statistics.median(batches)),
        "in-process CPU us/token": 1e6 / beside,
        "worker CPU us/token": per_token["worker"],
        "API CPU us/token": per_token["API"],
        "PostgreSQL CPU us/token": postgres,
        "client CPU us/token": per_token["client"],
    }


def cpu_seconds(server: Server, running: Stack) -> dict[str, float]:
    """CPU seconds used so far by the worker, the API process, this client, and each process
    of the bench's PostgreSQL (keyed by its pid)."""
    used = {
        "worker": procs.cpu_seconds(running.worker.pid),
        "API": procs.cpu_seconds(running.api.pid),
        "client": time.process_time(),
    }
    for pid in _postgres_pids(server):
        with contextlib.suppress(OSError):  # a backend that has just exited
            used[str(pid)] = procs.cpu_seconds(pid)
    return used


def _postgres_pids(server: Server) -> list[int]:
    """The bench PostgreSQL's postmaster and its children (backends, walwriter, ...)."""
    postmaster = int((server.folder / "data" / "postmaster.pid").read_text().split()[0])
    pids = [postmaster]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                pids.append(int(stat.parent.name))
    return pids


def speak_body(words: int) -> dict[str, Any]:
    """A run of the `speak` graph, its reply of `words` words streamed as messages-tuple."""
    return {"assistant_id": "speak", "input": {"words": words}, "stream_mode": ["messages-tuple"]}


def clients(server: Server, sizes: StreamSizes) -> Result:
    """`clients` runs created at once by POST /runs/stream, each client reading to the end:
    what arrived against lg_deploy.run_events, wall time, and the API process's memory."""
    with stack(server, sizes.client_slots) as running:
        asyncio.run(stream_runs(running.base_url, [emit_body(2)]))  # warm-up
        at_rest = _rss_mb(running.api.pid)
        started = time.monotonic()
        bodies = [emit_body(CLIENT_EVENTS)] * sizes.clients
        got = asyncio.run(stream_runs(running.base_url, bodies))
        wall = time.monotonic() - started
        peak = procs.peak_rss_mb(running.api.pid)
        stored = _stored_ids(running.db_url, [run.run_id for run in got])
    delivered = sum(len(run.events) for run in got)
    lost = duplicated = extra = 0
    for run in got:
        ids = [event_id for event_id, _, _, _ in run.events]
        duplicated += len(ids) - len(set(ids))
        lost += len(stored[run.run_id] - set(ids))
        extra += len(set(ids) - stored[run.run_id])
    if extra:
        raise RuntimeError(f"{extra} events arrived that run_events does not hold")
    return {
        "events stored": float(sum(len(ids) for ids in stored.values())),
        "events delivered": float(delivered),
        "lost": float(lost),
        "duplicated": float(duplicated),
        "wall s": wall,
        "API RSS at rest MB": at_rest,
        "API peak RSS MB": peak,
    }


def _stored_ids(url: str, run_ids: list[str]) -> dict[str, set[int]]:
    """Each run's event ids in lg_deploy.run_events (thread rows excluded: these runs have none)."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT execution_id::text, event_id FROM lg_deploy.run_events"
            " WHERE execution_id = ANY(%s::uuid[]) AND event <> 'run_done'",
            (run_ids,),
        ).fetchall()
        statuses = conn.execute(
            "SELECT status, count(*) FROM lg_deploy.executions"
            " WHERE execution_id = ANY(%s::uuid[]) GROUP BY status",
            (run_ids,),
        ).fetchall()
    if dict(statuses) != {"COMPLETED": len(run_ids)}:
        raise RuntimeError(f"runs not all COMPLETED: {dict(statuses)}")
    found: dict[str, set[int]] = {run_id: set() for run_id in run_ids}
    for run_id, event_id in rows:
        found[run_id].add(int(event_id))
    return found


def _rss_mb(pid: int) -> float:
    """VmRSS (resident set now) of a live process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def main(argv: list[str]) -> None:
    """Child entry: WORDS ROUNDS; prints the in-process rates as a JSON list."""
    print(json.dumps(asyncio.run(in_process_rates(int(argv[0]), int(argv[1])))))


if __name__ == "__main__":
    main(sys.argv[1:])
