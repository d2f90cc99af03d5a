"""The chaos run's thread graph, `turns`: each run adds its number to the thread's state twice.

A run takes `{"run": int, "seconds": float}`. `hear` appends the number to `heard`; `answer`
waits `seconds` (where kills and pauses land), then appends it to `answered`. Both lists
accumulate across the runs of a thread through its checkpoints, so a run's output, and the
thread's final values, must hold every run of the thread so far exactly once, in the order the
runs were claimed: a run started over after its first step shows twice in `heard`, a run that
ran on stale state misses one.
"""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, TypedDict

from langgraph.graph import END, START, StateGraph


class TurnsState(TypedDict, total=False):
    """This run's number and wait; every run's number so far, once per step."""

    run: int
    seconds: float
    heard: Annotated[list[int], operator.add]
    answered: Annotated[list[int], operator.add]


async def hear(state: TurnsState) -> TurnsState:
    """Step one: note the run."""
    return {"heard": [state["run"]]}


async def answer(state: TurnsState) -> TurnsState:
    """Step two, after the run's wait: note it again."""
    await asyncio.sleep(state.get("seconds", 0.0))
    return {"answered": [state["run"]]}


_builder = StateGraph(TurnsState)
_builder.add_node("hear", hear)
_builder.add_node("answer", answer)
_builder.add_edge(START, "hear")
_builder.add_edge("hear", "answer")
_builder.add_edge("answer", END)
graph = _builder.compile()
