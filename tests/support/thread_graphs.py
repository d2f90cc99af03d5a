"""Graphs the thread tests serve beside the examples (tests/support/graphs.py THREAD_GRAPHS).

`notes`: each run adds its `note` to `notes` (and notes its config's tags), then waits
`seconds`, so a run can be caught in flight after its first step is saved. `nested`: a parent
whose `inner` node is a subgraph that stops at interrupt(), for subgraph state.
"""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, Any, TypedDict

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langgraph.config import get_config, get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt


class NotesState(TypedDict, total=False):
    """The note a run brings, how long it then waits, every note so far, the run's tags."""

    note: str
    seconds: float
    notes: Annotated[list[str], operator.add]
    tags: list[str]


async def write(state: NotesState) -> dict[str, Any]:
    """Keep the run's note (saved as its own step) and the tags its config gave."""
    return {"notes": [state.get("note", "")], "tags": get_config().get("tags", [])}


async def wait(state: NotesState) -> dict[str, Any]:
    """Wait the run's seconds."""
    await asyncio.sleep(state.get("seconds", 0))
    return {}


_notes = StateGraph(NotesState)
_notes.add_node("write", write)
_notes.add_node("wait", wait)
_notes.add_edge(START, "write")
_notes.add_edge("write", "wait")
_notes.add_edge("wait", END)
notes = _notes.compile()


class NestedState(TypedDict, total=False):
    """What the inner graph asks about and what it was told."""

    topic: str
    answer: str


def ask_inside(state: NestedState) -> dict[str, Any]:
    """Stop inside the subgraph for an answer."""
    return {"answer": interrupt({"asked": state.get("topic", "")})}


_inner = StateGraph(NestedState)
_inner.add_node("ask_inside", ask_inside)
_inner.add_edge(START, "ask_inside")
_inner.add_edge("ask_inside", END)

_outer = StateGraph(NestedState)
_outer.add_node("inner", _inner.compile())
_outer.add_edge(START, "inner")
_outer.add_edge("inner", END)
nested = _outer.compile()


class TokensState(TypedDict, total=False):
    """The prompt in, the chat model's reply out, and what the inner graph noted."""

    prompt: str
    messages: Annotated[list[Any], operator.add]
    inner: str


async def speak(state: TokensState) -> dict[str, Any]:
    """Send progress on the custom stream, then a fake chat model's reply, token by token."""
    get_stream_writer()({"progress": "speaking"})
    reply = state.get("prompt") or "hello there friend"
    model = GenericFakeChatModel(messages=iter([AIMessage(content=reply)]))
    return {"messages": [await model.ainvoke(state.get("prompt", ""))]}


class InnerState(TypedDict, total=False):
    """The subgraph's own state: only what it notes (the conversation stays outside)."""

    inner: str


def note_inside(state: InnerState) -> dict[str, Any]:
    """A subgraph's step, so subgraph events can be asked for."""
    return {"inner": "noted"}


_tokens_inner = StateGraph(InnerState)
_tokens_inner.add_node("note_inside", note_inside)
_tokens_inner.add_edge(START, "note_inside")
_tokens = StateGraph(TokensState)
_tokens.add_node("speak", speak)
_tokens.add_node("inner", _tokens_inner.compile())
_tokens.add_edge(START, "speak")
_tokens.add_edge("speak", "inner")
_tokens.add_edge("inner", END)
# `tokens`: a chat model's reply streamed token by token (messages-tuple), a custom event, and
# a subgraph step (stream_subgraphs).
tokens = _tokens.compile()
