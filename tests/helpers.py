"""Small helpers shared by the tests: bounded waiting, free ports, JSON log lines."""

from __future__ import annotations

import asyncio
import inspect
import json
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

WAIT_SECONDS = 15.0


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
