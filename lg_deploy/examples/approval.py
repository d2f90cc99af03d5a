"""Approval: human in the loop. `prepare` notes the request, `ask` stops at interrupt() until a
run resumes it with `Command(resume=answer)`, then `act` records the decision."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt


class ApprovalState(TypedDict, total=False):
    """The request, the steps that ran (each once), the answer and the decision."""

    request: str
    steps: Annotated[list[str], operator.add]
    answer: Any
    decision: str


def prepare(state: ApprovalState) -> dict[str, Any]:
    """Note that the request was prepared (a resume must not do it again)."""
    return {"steps": ["prepare"]}


def ask(state: ApprovalState) -> dict[str, Any]:
    """Stop for a human's answer; the resume's value comes back from interrupt()."""
    answer = interrupt({"question": f"approve {state.get('request', 'this')}?"})
    return {"steps": ["ask"], "answer": answer}


def act(state: ApprovalState) -> dict[str, Any]:
    """Approved on a yes."""
    approved = state.get("answer") in ("yes", True)
    return {"steps": ["act"], "decision": "approved" if approved else "refused"}


builder = StateGraph(ApprovalState)
builder.add_node("prepare", prepare)
builder.add_node("ask", ask)
builder.add_node("act", act)
builder.add_edge(START, "prepare")
builder.add_edge("prepare", "ask")
builder.add_edge("ask", "act")
builder.add_edge("act", END)
graph = builder.compile()
