"""Small helpers shared by the tests: bounded waiting, free ports, JSON log lines, a server."""

from __future__ import annotations

import asyncio
import inspect
import json
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import LG_DEPLOY_COMMAND

WAIT_SECONDS = 15.0
SERVE_START_SECONDS = 30.0
# The graphs test queues claim: the shipped examples and the fakes the worker tests run.
TEST_GRAPHS = ("echo", "sleep", "fail", "pipeline", "anything", "boom", "own_timeout")


def wait_until(
    predicate: Callable[[], bool], timeout: float = WAIT_SECONDS, interval: float = 0.02
) -> None:
    """Poll `predicate` until it holds; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"condition not met within {timeout} s"
        time.sleep(interval)


async def wait_until_async(
    predicate: Callable[[], bool | Awaitable[bool]],
    timeout: float = WAIT_SECONDS,
    interval: float = 0.02,
) -> None:
    """Poll `predicate` (plain or async) without blocking the loop; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        outcome = predicate()
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome:
            return
        assert time.monotonic() < deadline, f"condition not met within {timeout} s"
        await asyncio.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def json_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON objects among the lines of a log file (other lines are skipped)."""
    entries = []
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


@dataclass(frozen=True)
class ServeProcess:
    """One running `lg-deploy serve` process, its base URL and the file its output goes to."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def http(self) -> httpx.Client:
        """An HTTP client of this server."""
        return httpx.Client(base_url=self.url, timeout=30.0)

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far."""
        return json_lines(self.log_path)

    def alive(self) -> bool:
        """True while /healthz answers 200; fails at once if the process died."""
        exited = self.process.poll()
        assert exited is None, f"server exited with {exited}:\n{self.log_path.read_text()}"
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200
        except httpx.TransportError:
            return False


@contextmanager
def running_server(env: dict[str, str], folder: Path) -> Iterator[ServeProcess]:
    """`lg-deploy serve` (env) on a free port in `folder`; yields it once up, kills it after."""
    port = free_port()
    full_env = {**env, "LG_DEPLOY_HOST": "127.0.0.1", "LG_DEPLOY_PORT": str(port)}
    log_path = folder / f"serve-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*LG_DEPLOY_COMMAND, "serve"],
            env=full_env,
            cwd=folder,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    server = ServeProcess(process, f"http://127.0.0.1:{port}", log_path)
    try:
        wait_until(server.alive, SERVE_START_SECONDS)
        yield server
    finally:
        process.kill()
        process.wait(10)
