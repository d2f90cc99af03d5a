"""Background tasks: stopping one and waiting until it has stopped."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` (if any) and wait until it has ended; its cancellation is not re-raised.

    A cancel of the caller itself is (`await task` under `suppress` would swallow it).
    """
    if task is None:
        return
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled():
        task.result()  # what it raised instead of stopping


async def wait_for_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait until `event` is set (True) or `seconds` pass (False); a cancel is never lost.

    `asyncio.wait_for` on Python 3.11 returns normally when the task is cancelled in the loop
    step where the event is set, and so swallows the cancel; `asyncio.timeout` does not.
    """
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True
