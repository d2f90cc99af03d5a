"""Review: a graph with subgraphs. `{"text": str}` goes through `review` (a subgraph whose
`spell` node is a subgraph too), then `publish` signs it with the context's `editor`.

Its states are `typing_extensions` TypedDicts, so that pydantic can make their JSON schemas on
Python 3.11 too (the assistant schema routes show them).
"""

from __future__ import annotations

import operator
from typing import Annotated, Any

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from typing_extensions import TypedDict


class ReviewContext(TypedDict, total=False):
    """Who signs what is published."""

    editor: str


class ReviewInput(TypedDict):
    """What a caller sends."""

    text: str


class ReviewState(TypedDict, total=False):
    """The text, the notes each check adds, and the published text."""

    text: str
    notes: Annotated[list[str], operator.add]
    published: str


def spell(state: ReviewState) -> dict[str, Any]:
    """Note the words that are not all letters."""
    odd = [word for word in state["text"].split() if not word.isalpha()]
    return {"notes": [f"spelling: {', '.join(odd) or 'fine'}"]}


def tone(state: ReviewState) -> dict[str, Any]:
    """Note whether the text shouts."""
    return {"notes": ["tone: loud" if state["text"].isupper() else "tone: calm"]}


def publish(state: ReviewState, runtime: Runtime[ReviewContext]) -> dict[str, Any]:
    """The text, signed by the context's editor."""
    editor = (runtime.context or {}).get("editor", "nobody")
    return {"published": f"{state['text']} (checked by {editor})"}


_spelling = StateGraph(ReviewState)
_spelling.add_node("spell", spell)
_spelling.add_edge(START, "spell")
_spelling.add_edge("spell", END)

_review = StateGraph(ReviewState)
_review.add_node("spell", _spelling.compile())
_review.add_node("tone", tone)
_review.add_edge(START, "spell")
_review.add_edge("spell", "tone")
_review.add_edge("tone", END)

_builder = StateGraph(ReviewState, input_schema=ReviewInput, context_schema=ReviewContext)
_builder.add_node("review", _review.compile())
_builder.add_node("publish", publish)
_builder.add_edge(START, "review")
_builder.add_edge("review", "publish")
_builder.add_edge("publish", END)
graph = _builder.compile()
