"""Chat: a conversation on a thread. Each run adds `{"message": str}` to `messages` and a reply
naming the turn and the user (context `user`, else config `configurable.user_id`)."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from langgraph.config import get_config
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime


class ChatContext(TypedDict, total=False):
    """Who is talking, as a run's `context` names them."""

    user: str


class ChatState(TypedDict, total=False):
    """The latest message in; every message and reply so far kept by the thread."""

    message: str
    messages: Annotated[list[str], operator.add]
    replies: Annotated[list[str], operator.add]


def listen(state: ChatState) -> dict[str, Any]:
    """Keep the message the run brought."""
    return {"messages": [state.get("message", "")]}


def reply(state: ChatState, runtime: Runtime[ChatContext]) -> dict[str, Any]:
    """A reply naming the turn, the user and the message."""
    context = runtime.context or {}
    configurable = get_config().get("configurable", {})
    user = context.get("user") or configurable.get("user_id", "someone")
    turn = len(state.get("messages", []))
    return {"replies": [f"turn {turn} for {user}: {state['messages'][-1]}"]}


builder = StateGraph(ChatState, context_schema=ChatContext)
builder.add_node("listen", listen)
builder.add_node("reply", reply)
builder.add_edge(START, "listen")
builder.add_edge("listen", "reply")
builder.add_edge("reply", END)
graph = builder.compile()
