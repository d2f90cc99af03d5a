"""The platform group (issue 20): lg-deploy against the servers a LangGraph user would pick
instead, `langgraph dev` (the platform's own server, in-memory runtime) and Aegra (PostgreSQL +
Redis), on the same graphs (`bench.graphs.PLATFORM_SPECS`), through the route a user calls:
the official Python SDK (`bench.sdk_load`), from this process.

Every server gets the same number of run slots. lg-deploy runs as the README's first command
does: one `lg-deploy serve` that answers the API and runs the graphs, on a fresh database of the
bench's PostgreSQL. The peers are installed into their own venvs by `bench.platform_peers`;
`--quick` (and so the CI smoke test) measures lg-deploy alone unless `--peers` asks for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bench import measure, procs, sdk_load
from bench.graphs import PLATFORM_SPECS
from bench.measure import Result
from bench.server import Server

LG_DEPLOY = "lg-deploy"


@dataclass(frozen=True)
class PlatformSizes:
    """How big each platform row is (`--quick` shrinks them)."""

    slots: int = 16  # run slots of every server (the figures used 16)
    callers: tuple[int, ...] = (1, 16, 64)
    wait_seconds: float = 5.0
    background: int = 5_000
    drain: int = 5_000  # the one-process drain beside the runs.wait rows
    stream_words: int = 1_000
    stream_rounds: int = 3
    crash_runs: int = 100
    crash_pause: float = 2.0  # seconds each crash run's node waits: all in flight at the kill
    crash_timeout: float = 120.0
    crash_lease: float | None = None  # lg-deploy's LG_DEPLOY_LEASE_SECONDS (None: its default)
    idle_threads: int = 1_000
    busy_callers: int = 100
    busy_seconds: float = 5.0


QUICK = PlatformSizes(
    callers=(1, 4),
    wait_seconds=0.5,
    background=30,
    drain=200,
    stream_words=50,
    stream_rounds=1,
    crash_runs=5,
    crash_pause=1.0,
    crash_timeout=60.0,
    crash_lease=1.0,  # the smoke run proves the row works; it need not wait out 10 s leases
    idle_threads=20,
    busy_callers=5,
    busy_seconds=0.5,
)


class Target(Protocol):
    """A running Agent Server: its base URL, processes, and a crash and restart."""

    name: str
    url: str

    def pids(self) -> list[int]:
        """The server's processes (for memory)."""
        ...

    def kill(self) -> None:
        """SIGKILL every process of the server."""
        ...

    def restart(self) -> None:
        """Start it again after a kill, same port and database; return when it answers."""
        ...


class LgDeployServe:
    """`lg-deploy serve` running the platform graphs with `slots` slots, on `db_url`."""

    name = LG_DEPLOY

    def __init__(self, db_url: str, slots: int, **settings: object) -> None:
        port = procs.free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.env = procs.lgd_env(
            db_url,
            graphs=json.dumps(PLATFORM_SPECS),
            worker_concurrency=slots,
            host="127.0.0.1",
            port=port,
            **settings,
        )
        self.child = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        child = procs.start(["-m", "lg_deploy", "serve"], self.env)
        procs.wait_http(child, f"{self.url}/readyz")
        return child

    def pids(self) -> list[int]:
        """The one serve process."""
        return [self.child.pid]

    def kill(self) -> None:
        """SIGKILL serve."""
        self.child.send_signal(signal.SIGKILL)
        self.child.wait()
        procs.stop(self.child)

    def restart(self) -> None:
        """A new serve on the same port and database."""
        self.child = self._start()

    def stop(self) -> None:
        """SIGTERM serve."""
        procs.stop(self.child)


@contextlib.contextmanager
def running(name: str, server: Server, slots: int, **settings: object) -> Iterator[Target]:
    """A fresh database (for the servers that keep one) and `name` serving it (`settings`:
    lg-deploy's own, ignored by the peers)."""
    url = server.create_database("platform")
    try:
        if name == LG_DEPLOY:
            target = LgDeployServe(url, slots, **settings)
            try:
                yield target
            finally:
                target.stop()
        else:
            from bench import platform_peers

            with platform_peers.running(name, url, slots) as peer:
                yield peer
    finally:
        server.drop_database(url)


def rss_mb(pids: list[int]) -> float:
    """The summed resident set (VmRSS) of live processes, in MB."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


def wait_rates(name: str, server: Server, sizes: PlatformSizes) -> Result:
    """`runs.wait` round trips with each number of callers (no-op graph); for lg-deploy also
    the one-process drain of the same graph at the same slots, and the ratio."""
    result: Result = {}
    with running(name, server, sizes.slots) as target:
        for callers in sizes.callers:
            got = asyncio.run(sdk_load.wait_loops(target.url, callers, sizes.wait_seconds))
            result.update({f"{callers} callers {metric}": v for metric, v in got.items()})
    if name == LG_DEPLOY:
        rate, _cpu = measure.timed_drain(server, sizes.drain, sizes.slots, 1)
        result["drain 1 process/s"] = rate
        for callers in sizes.callers:
            result[f"{callers} callers % of drain"] = (
                100 * result[f"{callers} callers runs/s"] / rate
            )
    return result


def background(name: str, server: Server, sizes: PlatformSizes, graph: str) -> Result:
    """`sizes.background` runs.create on as many threads, then all joined."""
    with running(name, server, sizes.slots) as target:
        return asyncio.run(sdk_load.background(target.url, sizes.background, graph))


def streaming(name: str, server: Server, sizes: PlatformSizes) -> Result:
    """First-event latency and messages-tuple tokens per second of one streamed run."""
    with running(name, server, sizes.slots) as target:
        return asyncio.run(
            sdk_load.stream_tokens(target.url, sizes.stream_words, sizes.stream_rounds)
        )


def crash(name: str, server: Server, sizes: PlatformSizes) -> Result:
    """SIGKILL the server with `crash_runs` runs in flight, start it again: how many finish,
    and how long after the kill the last one does."""
    lease = {} if sizes.crash_lease is None else {"lease_seconds": sizes.crash_lease}
    with running(name, server, sizes.crash_runs, **lease) as target:
        runs, _ = asyncio.run(sdk_load.submit_runs(target.url, sizes.crash_runs, sizes.crash_pause))
        killed_at = time.time()
        target.kill()
        target.restart()
        return asyncio.run(sdk_load.outcomes(target.url, runs, killed_at, sizes.crash_timeout))


def memory(name: str, server: Server, sizes: PlatformSizes) -> Result:
    """The server's resident memory: started, holding `idle_threads` threads, and at its peak
    while `busy_callers` callers keep 50 ms runs going (slots: as many)."""
    with running(name, server, sizes.busy_callers) as target:
        started = rss_mb(target.pids())
        asyncio.run(sdk_load.idle_threads(target.url, sizes.idle_threads))
        idle = rss_mb(target.pids())
        peak = [idle]

        def sample() -> None:
            peak.append(rss_mb(target.pids()))

        asyncio.run(sdk_load.sustained(target.url, sizes.busy_callers, sizes.busy_seconds, sample))
        return {
            "started RSS MB": started,
            f"{sizes.idle_threads:,} threads RSS MB": idle,
            f"{sizes.busy_callers} running RSS MB": max(peak),
        }


def steps(
    server: Server, sizes: PlatformSizes, names: list[str]
) -> list[tuple[str, Callable[[], Result]]]:
    """(row name, one repetition) for every platform row and server, in run order."""
    out: list[tuple[str, Callable[[], Result]]] = []
    for name in names:
        out.append(
            (
                f"platform {name}: runs.wait (SDK), no-op, {sizes.slots} slots",
                lambda n=name: wait_rates(n, server, sizes),
            )
        )
    for graph in ("noop", "sleep50"):
        for name in names:
            out.append(
                (
                    f"platform {name}: {sizes.background:,} runs.create + join, {graph}",
                    lambda n=name, g=graph: background(n, server, sizes, g),
                )
            )
    for name in names:
        out.append(
            (
                f"platform {name}: stream {2 * sizes.stream_words - 1:,} tokens, messages-tuple",
                lambda n=name: streaming(n, server, sizes),
            )
        )
    for name in names:
        out.append(
            (
                f"platform {name}: SIGKILL with {sizes.crash_runs} runs in flight",
                lambda n=name: crash(n, server, sizes),
            )
        )
    for name in names:
        out.append(
            (
                f"platform {name}: memory",
                lambda n=name: memory(n, server, sizes),
            )
        )
    return out


def targets(results: dict[str, Any]) -> list[str]:
    """Issue 20's targets whose inputs were measured: met, or missed by how much."""
    rows: dict[tuple[str, str], dict[str, float]] = {}
    for name, entry in results.items():
        if name.startswith("platform ") and "stats" in entry:
            server, _, row = name.removeprefix("platform ").partition(": ")
            rows[(server, row)] = {m: s["median"] for m, s in entry["stats"].items()}
    out: list[str] = []

    def verdict(label: str, ok: bool, detail: str) -> None:
        out.append(f"- {label}: {detail}: {'met' if ok else 'MISSED'}")

    for (server, row), ours in rows.items():
        if server != LG_DEPLOY:
            continue
        peers = {s: m for (s, r), m in rows.items() if r == row and s != LG_DEPLOY}
        for metric in [m for m in ours if m.endswith("runs/s")]:
            best = max((m.get(metric, 0.0) for m in peers.values()), default=None)
            if best:
                verdict(
                    f"{row}, {metric} >= 2x the best peer",
                    ours[metric] >= 2 * best,
                    f"{ours[metric]:,.1f} against {best:,.1f} ({ours[metric] / best:.1f}x)",
                )
        if "p99 ms" in ours and "runs.create" in row and peers:
            lowest = min(m.get("p99 ms", float("inf")) for m in peers.values())
            verdict(
                f"{row}, p99 below every peer's",
                ours["p99 ms"] < lowest,
                f"{ours['p99 ms']:,.0f} ms against {lowest:,.0f} ms",
            )
        if "16 callers % of drain" in ours:
            share = ours["16 callers % of drain"]
            verdict("runs.wait with 16 callers >= 40 % of the drain", share >= 40, f"{share:.1f} %")
        if "s to last after kill" in ours:
            seconds, lost = ours["s to last after kill"], ours["lost"]
            verdict(
                "every run finishes after a SIGKILL, within 15 s",
                lost == 0 and seconds <= 15,
                f"{lost:.0f} lost, the last {seconds:.1f} s after the kill",
            )
    return out
