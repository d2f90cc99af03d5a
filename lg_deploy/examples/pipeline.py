"""Pipeline: takes `{"text": str}`, returns it with its `words`, word `count` and a `summary`."""

from __future__ import annotations

from typing import TypedDict

from langgraph.graph import END, START, StateGraph

SUMMARY_PREVIEW_WORDS = 5


class PipelineInput(TypedDict):
    """What a caller sends."""

    text: str


class PipelineState(TypedDict, total=False):
    """The input plus what each node adds; the whole state is the output."""

    text: str
    words: list[str]
    count: int
    summary: str


async def split(state: PipelineState) -> PipelineState:
    """The text split on whitespace."""
    return {"words": state["text"].split()}


async def count(state: PipelineState) -> PipelineState:
    """How many words there are."""
    return {"count": len(state["words"])}


async def summarize(state: PipelineState) -> PipelineState:
    """A one-line summary: the word count and the first few words."""
    preview = " ".join(state["words"][:SUMMARY_PREVIEW_WORDS])
    return {"summary": f"{state['count']} words: {preview}" if preview else "0 words"}


_builder = StateGraph(PipelineState, input_schema=PipelineInput)
_builder.add_node("split", split)
_builder.add_node("count", count)
_builder.add_node("summarize", summarize)
_builder.add_edge(START, "split")
_builder.add_edge("split", "count")
_builder.add_edge("count", "summarize")
_builder.add_edge("summarize", END)
graph = _builder.compile()
