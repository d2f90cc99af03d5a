"""The chaos run's streaming side: `lg-deploy serve` processes that run no graph, and clients
that follow runs through them.

Each client follows one run through a stream route of a serve process picked at random for each
connection, hangs up at seeded random points (after a few events, or after a while, events or
not) and whenever the connection breaks (its serve process killed, PostgreSQL restarted, its
backends terminated), and reconnects with Last-Event-ID = the last id it saw (-1 at first),
until a connection ends cleanly: the run is final and everything was sent. The clients are
asyncio tasks on an event loop in a thread of their own, beside the harness's schedule; what
each received goes to the checker (tests/chaos/stream_checker.py).
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.chaos.stream_checker import ReceivedStream
from tests.support.servers import answers_200, free_port

LG_DEPLOY_SERVE = (sys.executable, "-m", "lg_deploy", "serve")
READY_SECONDS = 60.0
STOP_SECONDS = 15.0
READ_SECONDS = 10.0  # no byte for this long (heartbeats come every second): broken
CONNECT_SECONDS = 2.0
REFUSED_RETRY_SECONDS = 0.2  # before trying again after a refused request (database down)
HANGUP_AFTER_EVENTS = (1, 4)  # a hang-up after this many events of a connection, at most
HANGUP_AFTER_SECONDS = (0.05, 1.5)  # or after this long, whether events came or not


@dataclass
class ApiServers:
    """The serve processes of one run (LG_DEPLOY_RUN_GRAPHS=false), each on a port of its own."""

    env: dict[str, str]
    log_dir: Path
    cwd: Path
    processes: list[tuple[subprocess.Popen[bytes], str]] = field(default_factory=list)
    killed: set[int] = field(default_factory=set)
    _urls: tuple[str, ...] = ()

    def start_one(self) -> str:
        """A new serve process (not waited for); its base URL."""
        port = free_port()
        env = {**self.env, "LG_DEPLOY_HOST": "127.0.0.1", "LG_DEPLOY_PORT": str(port)}
        with (self.log_dir / f"serve-{len(self.processes)}.log").open("wb") as log:
            process = subprocess.Popen(
                list(LG_DEPLOY_SERVE),
                env=env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        url = f"http://127.0.0.1:{port}"
        self.processes.append((process, url))
        self._urls = (*self._urls, url)
        return url

    def urls(self) -> tuple[str, ...]:
        """The base URLs of the processes not killed (safe to call from any thread)."""
        return self._urls

    def wait_ready(self) -> None:
        """Wait until every process answers /readyz 200 (database and LISTEN connection up)."""
        deadline = time.monotonic() + READY_SECONDS
        waiting = list(self.urls())
        while waiting:
            if self.crashed() or time.monotonic() > deadline:
                raise RuntimeError(f"serve processes did not start; see {self.log_dir}")
            waiting = [url for url in waiting if not _ready(url)]
            time.sleep(0.1)

    def kill_one(self, rng: random.Random) -> None:
        """SIGKILL one live process and start a fresh one in its place."""
        live = [(p, url) for p, url in self.processes if p.pid not in self.killed]
        process, url = rng.choice(live)
        self.killed.add(process.pid)
        self._urls = tuple(u for u in self._urls if u != url)
        process.kill()
        process.wait(timeout=STOP_SECONDS)
        self.start_one()

    def crashed(self) -> list[subprocess.Popen[bytes]]:
        """Processes that exited without being killed."""
        return [p for p, _ in self.processes if p.pid not in self.killed and p.poll() is not None]

    def stop_all(self) -> None:
        for process, _ in self.processes:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + STOP_SECONDS
        for process, _ in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=STOP_SECONDS)


def _ready(url: str) -> bool:
    return answers_200(f"{url}/readyz")


@dataclass(frozen=True)
class Hangup:
    """When a client cuts one connection: after `events` events or `seconds` (None: never)."""

    events: int | None = None
    seconds: float | None = None

    @classmethod
    def draw(cls, rng: random.Random) -> Hangup:
        """A third hang up after a few events, a third after a while, a third never."""
        choice = rng.randrange(3)
        if choice == 0:
            return cls(events=rng.randint(*HANGUP_AFTER_EVENTS))
        if choice == 1:
            return cls(seconds=rng.uniform(*HANGUP_AFTER_SECONDS))
        return cls()


class StreamClients:
    """Streaming clients on an event loop in a thread of their own; `follow` adds some."""

    def __init__(self, seed: int, servers: Callable[[], Sequence[str]]) -> None:
        self._seed = seed
        self._servers = servers
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="chaos-stream-clients", daemon=True
        )
        self._http: httpx.AsyncClient | None = None
        self._tasks: list[asyncio.Task[None]] = []  # touched in the clients' thread only
        self.received: list[ReceivedStream] = []

    def start(self) -> None:
        """Start the clients' thread and their HTTP client."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._open(), self._loop).result(STOP_SECONDS)

    async def _open(self) -> None:
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(READ_SECONDS, connect=CONNECT_SECONDS),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
        )

    def follow(self, run_id: str, thread_id: str | None, clients: int) -> None:
        """Start `clients` clients following the run, alternating its two stream routes."""
        for number in range(clients):
            on_thread = f"/threads/{thread_id or run_id}/runs/{run_id}/stream"
            path = on_thread if number % 2 == 0 else f"/runs/{run_id}/stream"
            stream = ReceivedStream(run_id, path)
            rng = random.Random(f"{self._seed}:{run_id}:{number}")
            self.received.append(stream)
            self._loop.call_soon_threadsafe(self._start_client, stream, rng)

    def _start_client(self, stream: ReceivedStream, rng: random.Random) -> None:
        self._tasks.append(self._loop.create_task(self._follow(stream, rng)))

    def finish(self, timeout_seconds: float) -> list[ReceivedStream]:
        """Wait up to `timeout_seconds` for every client to end, cancel the rest, and close
        (again, it does nothing)."""
        if self._loop.is_closed():
            return self.received
        if self._thread.is_alive():
            ending = asyncio.run_coroutine_threadsafe(self._finish(timeout_seconds), self._loop)
            ending.result(timeout_seconds + STOP_SECONDS)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(STOP_SECONDS)
        self._loop.close()
        return self.received

    async def _finish(self, timeout_seconds: float) -> None:
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=timeout_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()

    async def _follow(self, stream: ReceivedStream, rng: random.Random) -> None:
        """Connect, and reconnect after each hang-up or break, until a clean end."""
        try:
            while not stream.finished:
                servers = self._servers()
                url = rng.choice(servers) + stream.path if servers else ""
                if not url or not await self._connection(stream, url, Hangup.draw(rng)):
                    await asyncio.sleep(REFUSED_RETRY_SECONDS)
        except Exception as error:  # a client's own bug: the stream stays unfinished
            stream.last_error = f"client error: {error!r}"

    async def _connection(self, stream: ReceivedStream, url: str, hangup: Hangup) -> bool:
        """One request, counted on `stream`, whose events it appends; False when refused."""
        assert self._http is not None
        last = stream.last_id
        headers = {"Last-Event-ID": "-1" if last is None else str(last)}
        connected = False
        try:
            async with (
                asyncio.timeout(hangup.seconds),
                self._http.stream("GET", url, headers=headers) as answer,
            ):
                if answer.status_code != 200:
                    stream.refused += 1
                    stream.last_error = f"HTTP {answer.status_code}: {(await answer.aread())!r}"
                    return False
                connected = True
                stream.connections += 1
                if await _read_events(answer, stream, hangup.events):
                    stream.hangups += 1
                    return True
            stream.finished = True
        except TimeoutError:
            stream.hangups += 1
        except httpx.HTTPError as error:
            stream.last_error = f"{type(error).__name__}: {error}"
            if not connected:
                stream.refused += 1
                return False
            stream.broken += 1
        return True


async def _read_events(
    answer: httpx.Response, stream: ReceivedStream, hangup_after: int | None
) -> bool:
    """Append each complete event (dispatched at its blank line) to `stream` until the body
    ends (False) or `hangup_after` events came on this connection (True: hang up)."""
    fields: dict[str, str] = {}
    count = 0
    async for line in answer.aiter_lines():
        if line:
            if not line.startswith(":"):  # a comment: the heartbeat
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
            continue
        if "event" in fields:  # an event without an id is kept as id -1: mismatched
            event_id = int(fields.get("id", "-1"))
            stream.events.append((event_id, fields["event"], fields.get("data", "")))
            count += 1
            if count == hangup_after:
                return True
        fields = {}
    return False
