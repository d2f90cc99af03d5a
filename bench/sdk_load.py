"""What a LangGraph user's code does, timed: the official Python SDK (`langgraph_sdk`) calling
any Agent Server (lg-deploy, `langgraph dev`, Aegra) at a base URL. Each function is one
measurement's client side; `bench.platform` starts the servers and runs these against each."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any

from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

Result = dict[str, float]
TIMEOUT_SECONDS = 300.0


def client(url: str) -> LangGraphClient:
    """An SDK client with no API key and a long read timeout (joins wait for whole drains)."""
    return get_client(url=url, api_key=None, timeout=TIMEOUT_SECONDS)


def quantile(values: list[float], q: float) -> float:
    """The nearest-rank-below quantile `q` (0..100) of `values`, as the other bench rows."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))]


async def bounded(calls: Iterable[Callable[[], Awaitable[Any]]], limit: int) -> list[Any]:
    """Await every call, at most `limit` at a time; the answers in order."""
    gate = asyncio.Semaphore(limit)

    async def one(call: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await call()

    return list(await asyncio.gather(*(one(call) for call in calls)))


async def make_threads(url: str, count: int, callers: int = 16) -> list[str]:
    """`count` new threads (untimed setup); their ids."""
    sdk = client(url)
    threads = await bounded([sdk.threads.create for _ in range(count)], callers)
    return [str(thread["thread_id"]) for thread in threads]


async def wait_loops(url: str, callers: int, seconds: float, graph: str = "noop") -> Result:
    """`callers` closed loops of stateless `runs.wait` for `seconds` after a warm-up: round
    trips per second and their latency."""
    sdk = client(url)
    latencies: list[float] = []
    errors = 0
    stop_at = 0.0
    measuring = False

    async def loop() -> None:
        nonlocal errors
        while not stop_at or time.monotonic() < stop_at:
            began = time.monotonic()
            answer = await sdk.runs.wait(None, graph, input={})
            if measuring:
                if isinstance(answer, dict) and "__error__" in answer:
                    errors += 1
                latencies.append(time.monotonic() - began)

    tasks = [asyncio.create_task(loop()) for _ in range(callers)]
    await asyncio.sleep(min(1.0, seconds / 4))  # warm-up: connections, pools, first runs
    measuring = True
    started = time.monotonic()
    stop_at = started + seconds
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - started
    if errors:
        raise RuntimeError(f"{errors} of {len(latencies)} runs.wait calls answered an error")
    return {
        "runs/s": len(latencies) / elapsed,
        "p50 ms": 1000 * quantile(latencies, 50),
        "p99 ms": 1000 * quantile(latencies, 99),
    }


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


async def background(url: str, count: int, graph: str, submitters: int = 16) -> Result:
    """`count` background runs (`runs.create`, one per new thread) from `submitters` loops, then
    every one joined: time to drain, submit-to-done percentiles (done: the run's `updated_at`
    once successful, same host clock)."""
    sdk = client(url)
    threads = await make_threads(url, count)
    submitted: dict[str, tuple[str, float]] = {}

    async def submit(thread_id: str) -> None:
        sent = time.time()
        run = await sdk.runs.create(thread_id, graph, input={})
        submitted[str(run["run_id"])] = (thread_id, sent)

    began = time.time()
    await bounded([lambda t=t: submit(t) for t in threads], submitters)
    submit_seconds = time.time() - began
    await bounded([lambda r=r, t=t: sdk.runs.join(t, r) for r, (t, _) in submitted.items()], 64)
    runs = await bounded(
        [lambda r=r, t=t: sdk.runs.get(t, r) for r, (t, _) in submitted.items()], 64
    )
    if failed := [run for run in runs if run["status"] != "success"]:
        raise RuntimeError(f"{len(failed)} of {count} runs ended {failed[0]['status']}")
    waits = [_epoch(run["updated_at"]) - submitted[str(run["run_id"])][1] for run in runs]
    drained = max(_epoch(run["updated_at"]) for run in runs) - began
    return {
        "runs/s": count / drained,
        "drain s": drained,
        "submits/s": count / submit_seconds,
        "p50 ms": 1000 * quantile(waits, 50),
        "p99 ms": 1000 * quantile(waits, 99),
    }


async def stream_tokens(url: str, words: int, rounds: int) -> Result:
    """`speak` streamed statelessly with `messages-tuple`, `rounds` times after a warm-up: time
    to the first event and to the first token, and tokens per second from first to last."""
    sdk = client(url)
    firsts: list[float] = []
    first_tokens: list[float] = []
    rates: list[float] = []
    for round_number in range(rounds + 1):
        began = time.monotonic()
        first = 0.0
        tokens: list[float] = []
        async for part in sdk.runs.stream(
            None, "speak", input={"words": words}, stream_mode="messages-tuple"
        ):
            now = time.monotonic()
            first = first or now
            if part.event == "messages":
                tokens.append(now)
            elif part.event == "error":
                raise RuntimeError(f"stream error: {part.data}")
        if len(tokens) < 2 * words - 1:
            raise RuntimeError(f"{len(tokens)} token events, {2 * words - 1} written")
        if round_number:  # the first round warms up
            firsts.append(first - began)
            first_tokens.append(tokens[0] - began)
            rates.append((len(tokens) - 1) / max(tokens[-1] - tokens[0], 1e-9))
    return {
        "first event ms": 1000 * statistics.median(firsts),
        "first token ms": 1000 * statistics.median(first_tokens),
        "tokens/s": statistics.median(rates),
    }


async def submit_runs(url: str, count: int, seconds: float) -> tuple[list[tuple[str, str]], float]:
    """`count` background `pause` runs of `seconds` on new threads; their (thread, run) ids and
    the time.time() when the last was accepted."""
    sdk = client(url)
    threads = await make_threads(url, count)
    runs = await bounded(
        [lambda t=t: sdk.runs.create(t, "pause", input={"seconds": seconds}) for t in threads],
        16,
    )
    return [(str(run["thread_id"]), str(run["run_id"])) for run in runs], time.time()


async def outcomes(url: str, runs: list[tuple[str, str]], since: float, patience: float) -> Result:
    """Poll `runs` until each succeeded or `patience` seconds passed: how many finished after
    `since` (a kill), how many before, and the seconds from `since` to the last to finish."""
    sdk = client(url)
    done: dict[str, float] = {}
    deadline = time.monotonic() + patience
    while len(done) < len(runs) and time.monotonic() < deadline:
        pending = [(t, r) for t, r in runs if r not in done]

        async def look(thread_id: str, run_id: str) -> dict[str, Any] | None:
            try:
                return dict(await sdk.runs.get(thread_id, run_id))
            except Exception:  # a peer that lost the run answers 404: keep counting it lost
                return None

        looked = await bounded([lambda t=t, r=r: look(t, r) for t, r in pending], 16)
        if all(run is None for run in looked):
            break  # the server forgot every run left: none can finish any more
        for run in looked:
            if run is not None and run["status"] == "success":
                done[str(run["run_id"])] = _epoch(run["updated_at"])
        if len(done) < len(runs):
            await asyncio.sleep(0.2)
    after = [at - since for at in done.values() if at >= since]
    return {
        "finished": float(len(done)),
        "finished before kill": float(len(done) - len(after)),
        "lost": float(len(runs) - len(done)),
        "s to last after kill": max(after) if after else float("nan"),
    }


async def idle_threads(url: str, count: int) -> None:
    """`count` threads, each holding the state of one finished no-op run."""
    sdk = client(url)
    threads = await make_threads(url, count)
    await bounded([lambda t=t: sdk.runs.wait(t, "noop", input={}) for t in threads], 16)


async def sustained(url: str, callers: int, seconds: float, sample: Callable[[], None]) -> None:
    """`callers` loops of stateless `runs.wait` of the 50 ms graph for `seconds`, calling
    `sample` (an RSS reading) every 0.1 s meanwhile."""
    stop_at = time.monotonic() + seconds
    sdk = client(url)

    async def loop() -> None:
        while time.monotonic() < stop_at:
            await sdk.runs.wait(None, "sleep50", input={})

    async def sampler() -> None:
        while time.monotonic() < stop_at:
            sample()
            await asyncio.sleep(0.1)

    await asyncio.gather(sampler(), *(loop() for _ in range(callers)))
