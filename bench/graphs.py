"""The graphs every measurement runs: a no-op one-node graph and one whose node awaits 50 ms."""

from __future__ import annotations

import asyncio
from typing import TypedDict

from langgraph.graph import END, START, StateGraph

SLEEP_SECONDS = 0.05
SPECS = {"noop": "bench.graphs:noop", "sleep50": "bench.graphs:sleep50"}


class State(TypedDict, total=False):
    """The state: one optional integer."""

    n: int


async def _noop(state: State) -> State:
    return {}


async def _sleep(state: State) -> State:
    await asyncio.sleep(SLEEP_SECONDS)
    return {}


def _one_node(node: object) -> object:
    builder = StateGraph(State)
    builder.add_node("only", node)  # type: ignore[call-overload]
    builder.add_edge(START, "only")
    builder.add_edge("only", END)
    return builder.compile()


noop = _one_node(_noop)
sleep50 = _one_node(_sleep)
