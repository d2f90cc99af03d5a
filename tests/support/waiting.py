"""Bounded waiting: poll a condition, plain or async, and fail the test when it times out."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

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
