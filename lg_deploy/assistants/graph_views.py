"""What the assistant graph routes show of a compiled graph: its drawing, schemas and subgraphs.

Each JSON schema is None when it cannot be made (as on the platform): on Python 3.11, pydantic
cannot read a state or context declared with `typing.TypedDict`, only `typing_extensions`'s. The
config schema is the context schema: LangGraph 1.x declares `configurable` by the context schema
(its `config_schema()` is deprecated in favour of `get_context_jsonschema()`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from pydantic import TypeAdapter

from lg_deploy.graphs import CompiledGraph, to_json_object


async def drawing(graph: CompiledGraph, xray: bool | int) -> dict[str, Any]:
    """The graph's nodes and edges as JSON (LangGraph's `get_graph(xray=...).to_json()`);
    NotImplementedError for a graph that cannot be drawn (LangGraph raises it; a look-alike
    with only `ainvoke` has no drawing), GraphOutputError for one whose drawing is not JSON."""
    draw = getattr(graph, "aget_graph", None)
    if draw is None:
        raise NotImplementedError(f"{type(graph).__name__} has no aget_graph")
    drawn = await draw(xray=xray)
    return to_json_object(drawn.to_json())


def schemas(graph: CompiledGraph) -> dict[str, Any]:
    """The JSON schemas of the graph's input, output, state, config and context (None: none)."""
    pregel = cast(Any, graph)  # a look-alike lacks these: its schemas are None
    context = _schema(lambda: pregel.get_context_jsonschema())
    return {
        "input_schema": _schema(lambda: pregel.get_input_jsonschema()),
        "output_schema": _schema(lambda: pregel.get_output_jsonschema()),
        "state_schema": _schema(lambda: _state_schema(pregel)),
        "config_schema": context,
        "context_schema": context,
    }


async def subgraph_schemas(
    graph: CompiledGraph, namespace: str | None, recurse: bool
) -> dict[str, dict[str, Any]]:
    """The schemas of the graph's subgraphs by namespace (only `namespace`'s when given;
    theirs too when `recurse`; none for a look-alike graph)."""
    subgraphs = getattr(graph, "aget_subgraphs", None)
    if subgraphs is None:
        return {}
    found = subgraphs(namespace=namespace, recurse=recurse)
    return {name: schemas(subgraph) async for name, subgraph in found}


def _state_schema(graph: Any) -> dict[str, Any] | None:
    """The JSON schema of a StateGraph's state; None for graphs without one (entrypoints)."""
    state = getattr(getattr(graph, "builder", None), "state_schema", None)
    return None if state is None else TypeAdapter(state).json_schema()


def _schema(make: Callable[[], Any]) -> dict[str, Any] | None:
    """`make()` when it gives a JSON object, else None (LangGraph or pydantic could not)."""
    try:
        made = make()
    except Exception:  # any failure means there is no schema to show, as on the platform
        return None
    return made if isinstance(made, dict) else None
