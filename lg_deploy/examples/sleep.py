"""Sleep: takes `{"seconds": float}` (default 1), sleeps that long, returns `{"slept": seconds}`."""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.func import entrypoint

DEFAULT_SLEEP_SECONDS = 1.0


@entrypoint()
async def graph(inputs: dict[str, Any]) -> dict[str, Any]:
    """Wait without blocking the event loop, so cancelling the run stops the wait at once."""
    seconds = float(inputs.get("seconds", DEFAULT_SLEEP_SECONDS))
    await asyncio.sleep(seconds)
    return {"slept": seconds}
