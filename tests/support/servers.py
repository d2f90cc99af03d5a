"""The real HTTP server: free ports, `lg-deploy serve` processes and their fixture, HTTP helpers."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.processes import LG_DEPLOY_COMMAND, json_lines
from tests.support.waiting import wait_until

SERVE_START_SECONDS = 30.0
WAIT_SECONDS = 15.0
# One TLS context for every probe: without it httpx builds one per request (about 40 ms of CPU,
# which a 20 ms poll of a starting server would spend back to back).
PROBE_TLS = ssl.create_default_context()


def answers_200(url: str, timeout: float = 1.0) -> bool:
    """True when GET `url` answers 200; False when it cannot be reached or answers otherwise."""
    try:
        return httpx.get(url, timeout=timeout, verify=PROBE_TLS).status_code == 200
    except httpx.HTTPError:
        return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


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
        return answers_200(f"{self.url}/healthz")


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


StartServer = Callable[..., ServeProcess]


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """Starts `lg-deploy serve` processes (env plus overrides); kills them all at teardown."""
    servers = ExitStack()

    def start(env: dict[str, str], **overrides: str) -> ServeProcess:
        return servers.enter_context(running_server({**env, **overrides}, tmp_path))

    with servers:
        yield start


def finished(client: httpx.Client, execution_id: str) -> dict[str, Any]:
    """The execution once final, by the server-side long poll."""
    answer = client.get(f"/executions/{execution_id}/wait", params={"timeout": WAIT_SECONDS})
    assert answer.status_code == 200, answer.text
    state: dict[str, Any] = answer.json()
    assert state["status"] in ("COMPLETED", "FAILED"), state
    return state


@contextmanager
def served_in_thread(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """An http.server of `handler` on a free port of 127.0.0.1 in a thread; yields its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
