"""The graphs the measurements run: a no-op one-node graph and one whose node awaits 50 ms
(SPECS, what every worker serves), and the streaming group's two (STREAM_SPECS): `emit`, which
writes timestamped custom events at a steady rate, and `speak`, a fake chat model's long reply;
the platform group's `pause` waits as long as its input says (PLATFORM_SPECS)."""

from __future__ import annotations

import asyncio
import time
from typing import Any, TypedDict

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph

SLEEP_SECONDS = 0.05
SPECS = {"noop": "bench.graphs:noop", "sleep50": "bench.graphs:sleep50"}
# Kept apart from SPECS: a worker claims only the graphs it serves, one index walk each, so
# adding these to every worker would change the other rows.
STREAM_SPECS = {"emit": "bench.graphs:emit", "speak": "bench.graphs:speak"}
# What the platform group serves on lg-deploy and on each peer server, by file and name.
PLATFORM_GRAPHS = ("noop", "sleep50", "speak", "pause")
PLATFORM_SPECS = {name: f"bench.graphs:{name}" for name in PLATFORM_GRAPHS}


class State(TypedDict, total=False):
    """The state: one optional integer."""

    n: int


async def _noop(state: State) -> State:
    return {}


async def _sleep(state: State) -> State:
    await asyncio.sleep(SLEEP_SECONDS)
    return {}


class PauseState(TypedDict, total=False):
    """How long the node waits, in seconds."""

    seconds: float


async def _pause(state: PauseState) -> PauseState:
    await asyncio.sleep(state.get("seconds", SLEEP_SECONDS))
    return {}


class EmitState(TypedDict, total=False):
    """How many custom events to write, and how many per second."""

    count: int
    rate: float


async def _emit(state: EmitState) -> EmitState:
    """`count` custom events {"i", "t": time.time() when written}, paced to `rate` per second
    from the node's start (absolute times, so a late event does not delay the ones after)."""
    write = get_stream_writer()
    count, rate = state.get("count", 0), state.get("rate", 100.0)
    start = time.monotonic()
    for number in range(count):
        await asyncio.sleep(max(0.0, start + number / rate - time.monotonic()))
        write({"i": number, "t": time.time()})
    return {}


class SpeakState(TypedDict, total=False):
    """How many words the reply has; the reply."""

    words: int
    reply: str


def reply_text(words: int) -> str:
    """The reply: `words` words and the single spaces between them, which GenericFakeChatModel
    sends as 2 * words - 1 chunks (it splits on whitespace and sends each space as a chunk)."""
    return " ".join(f"w{number}" for number in range(words))


async def _speak(state: SpeakState) -> SpeakState:
    model = GenericFakeChatModel(messages=iter([AIMessage(content=reply_text(state["words"]))]))
    answer = await model.ainvoke("speak")
    return {"reply": str(answer.content)}


def _one_node(node: object, schema: type[Any] = State) -> Any:
    builder = StateGraph(schema)
    builder.add_node("only", node)  # type: ignore[call-overload]
    builder.add_edge(START, "only")
    builder.add_edge("only", END)
    return builder.compile()


noop = _one_node(_noop)
sleep50 = _one_node(_sleep)
emit = _one_node(_emit, EmitState)
speak = _one_node(_speak, SpeakState)
pause = _one_node(_pause, PauseState)
