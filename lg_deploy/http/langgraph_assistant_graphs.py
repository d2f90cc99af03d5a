"""The routes that show an assistant's graph: its drawing (xray), its schemas, its subgraphs.

All read the compiled graph of the assistant's graph_id (lg_deploy.assistants.graph_views); an
assistant whose graph this process does not serve is a 422, as for its runs.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lg_deploy.assistants.graph_views import drawing, schemas, subgraph_schemas
from lg_deploy.assistants.models import Assistant
from lg_deploy.errors import GraphOutputError
from lg_deploy.graphs import CompiledGraph
from lg_deploy.http.errors import ApiError
from lg_deploy.http.langgraph_assistants import find_assistant
from lg_deploy.http.requests import flag_param, runtime_of

_SCHEMA = Field(default=None, description="a JSON schema; null when the graph declares none")


class SubgraphSchemas(BaseModel):
    """The JSON schemas of a graph (null: none declared, or none pydantic can make)."""

    input_schema: dict[str, Any] | None = _SCHEMA
    output_schema: dict[str, Any] | None = _SCHEMA
    state_schema: dict[str, Any] | None = _SCHEMA
    config_schema: dict[str, Any] | None = _SCHEMA
    context_schema: dict[str, Any] | None = _SCHEMA


class GraphSchemas(SubgraphSchemas):
    """Answer of GET /assistants/{assistant_id}/schemas."""

    graph_id: str


class GraphDrawing(BaseModel):
    """Answer of GET /assistants/{assistant_id}/graph: LangGraph's drawable graph as JSON."""

    nodes: list[dict[str, Any]] = Field(description="{id, type, data, metadata?}")
    edges: list[dict[str, Any]] = Field(description="{source, target, data?, conditional?}")


async def _graph_of(request: Request) -> tuple[Assistant, CompiledGraph]:
    """The assistant the path names and its compiled graph (404: no such assistant, 422: its
    graph is not served here)."""
    assistant = await find_assistant(request)
    runtime = runtime_of(request)
    known = runtime.graphs.names()
    if assistant.graph_id not in known:
        message = (
            f"assistant {assistant.assistant_id} runs graph {assistant.graph_id!r}, not served"
        )
        raise ApiError(422, message, code="unknown_graph", known_graphs=known)
    return assistant, await runtime.graphs.get(assistant.graph_id)


def _xray(text: str) -> bool | int:
    """xray as the SDKs send it: true or false, or how many levels of subgraphs (1 or more)."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise ApiError(422, f"xray must be true, false or a number of levels from 1, not {text!r}")


async def get_graph(request: Request) -> Response:
    """GET /assistants/{assistant_id}/graph?xray=: its nodes and edges, subgraphs drawn in."""
    xray = _xray(request.query_params.get("xray", "false")[:64])
    _, graph = await _graph_of(request)
    try:
        return JSONResponse(await drawing(graph, xray))
    except (NotImplementedError, GraphOutputError):
        raise ApiError(422, "this graph cannot be drawn as JSON") from None


async def get_schemas(request: Request) -> Response:
    """GET /assistants/{assistant_id}/schemas: its graph's input, output, state, config and
    context schemas."""
    assistant, graph = await _graph_of(request)
    return JSONResponse({"graph_id": assistant.graph_id, **schemas(graph)})


async def get_subgraphs(request: Request) -> Response:
    """GET /assistants/{assistant_id}/subgraphs[/{namespace}]?recurse=: the schemas of its
    graph's subgraphs by namespace (only that namespace's; nested ones too with recurse)."""
    recurse = flag_param(request, "recurse")
    _, graph = await _graph_of(request)
    namespace = request.path_params.get("namespace")
    return JSONResponse(await subgraph_schemas(graph, namespace, recurse))


def assistant_graph_routes() -> list[Route]:
    """The assistant graph routes served (before the platform's unserved ones)."""
    one = "/assistants/{assistant_id}"
    return [
        Route(one + "/graph", get_graph, methods=["GET"]),
        Route(one + "/schemas", get_schemas, methods=["GET"]),
        Route(one + "/subgraphs", get_subgraphs, methods=["GET"]),
        Route(one + "/subgraphs/{namespace}", get_subgraphs, methods=["GET"]),
    ]
