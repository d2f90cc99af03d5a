"""Echo: takes any JSON object and returns it unchanged."""

from __future__ import annotations

from typing import Any

from langgraph.func import entrypoint


@entrypoint()
async def graph(inputs: dict[str, Any]) -> dict[str, Any]:
    """The input object, as is."""
    return inputs
