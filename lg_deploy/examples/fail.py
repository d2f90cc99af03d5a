"""Fail: takes `{"message": str}` (optional) and always raises RuntimeError with that message."""

from __future__ import annotations

from typing import Any

from langgraph.func import entrypoint

DEFAULT_MESSAGE = "example failure"


@entrypoint()
async def graph(inputs: dict[str, Any]) -> dict[str, Any]:
    """Raise RuntimeError(`message`), for trying out failed executions."""
    raise RuntimeError(inputs.get("message", DEFAULT_MESSAGE))
