"""The chaos run's graphs: `turns` for the runs on threads, `ticks` for thread-less runs that
stream.

`turns` takes `{"run": int, "seconds": float}`. `hear` appends the number to `heard`; `answer`
waits `seconds` (where kills and pauses land), then appends it to `answered`. Both lists
accumulate across the runs of a thread through its checkpoints, so a run's output, and the
thread's final values, must hold every run of the thread so far exactly once, in the order the
runs were claimed: a run started over after its first step shows twice in `heard`, a run that
ran on stale state misses one.

`ticks` takes `{"ticks": int, "seconds": float}` and takes `ticks` steps of `seconds / ticks`
each, every step sending a `custom` event `{"tick": n}` and appending n to `done`: a run that
streams values, updates and custom records about three events a step while faults land.
"""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, TypedDict

from langgraph.config import get_stream_writer
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


class TicksState(TypedDict, total=False):
    """How many steps and how long in all; the steps taken so far."""

    ticks: int
    seconds: float
    done: Annotated[list[int], operator.add]


async def tick(state: TicksState) -> TicksState:
    """One step: a custom event, a share of the wait, the step's number noted."""
    number = len(state.get("done", []))
    get_stream_writer()({"tick": number})
    await asyncio.sleep(state.get("seconds", 0.0) / max(1, state.get("ticks", 1)))
    return {"done": [number]}


def _next(state: TicksState) -> str:
    return "tick" if len(state.get("done", [])) < state.get("ticks", 1) else END


_ticks_builder = StateGraph(TicksState)
_ticks_builder.add_node("tick", tick)
_ticks_builder.add_edge(START, "tick")
_ticks_builder.add_conditional_edges("tick", _next, ["tick", END])
ticks = _ticks_builder.compile()
