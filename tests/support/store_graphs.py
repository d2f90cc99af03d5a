"""Graphs that use LangGraph's store, served by the store tests (tests/test_item_store_runs.py).

`remember` puts the run's `text` under ("memories", user) with get_store(); `recall` lists what
that namespace holds through a node's `store` parameter, which LangGraph fills in.
"""

from __future__ import annotations

from typing import Any, TypedDict

from langgraph.config import get_store
from langgraph.graph import END, START, StateGraph
from langgraph.store.base import BaseStore


class MemoryState(TypedDict, total=False):
    """Whose memory, under which key, what to remember; and what the store holds for them."""

    user: str
    key: str
    text: str
    known: list[str]


async def put_memory(state: MemoryState) -> dict[str, Any]:
    """Store the text as an item of the user's memories, by get_store()."""
    await get_store().aput(("memories", state["user"]), state["key"], {"text": state["text"]})
    return {}


async def list_memories(state: MemoryState, *, store: BaseStore) -> dict[str, Any]:
    """Every text the user's memories hold, from the store LangGraph passes the node."""
    found = await store.asearch(("memories", state["user"]), limit=100)
    return {"known": sorted(item.value["text"] for item in found)}


_remember = StateGraph(MemoryState)
_remember.add_node("put_memory", put_memory)
_remember.add_edge(START, "put_memory")
_remember.add_edge("put_memory", END)
remember = _remember.compile()

_recall = StateGraph(MemoryState)
_recall.add_node("list_memories", list_memories)
_recall.add_edge(START, "list_memories")
_recall.add_edge("list_memories", END)
recall = _recall.compile()
