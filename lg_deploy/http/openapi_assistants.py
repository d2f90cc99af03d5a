"""The OpenAPI paths of the assistant routes (langgraph_assistants, langgraph_assistant_graphs)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from lg_deploy.assistants.models import Assistant, AssistantVersion
from lg_deploy.http.langgraph_assistant_bodies import (
    AssistantCreate,
    AssistantFilter,
    AssistantPatch,
    AssistantSearch,
    LatestVersion,
    VersionSearch,
)
from lg_deploy.http.langgraph_assistant_graphs import GraphDrawing, GraphSchemas, SubgraphSchemas
from lg_deploy.http.openapi_parts import (
    REF,
    answer,
    array_of,
    errors,
    json_content,
    operation,
    path_params,
)

_BODY_ERRORS = (400, 413, 415, 422)
_FLAG = {"type": "boolean", "default": False}
_PAGES = {
    "X-Pagination-Total": "assistants matching the filters",
    "X-Pagination-Next": "the offset of the next page, while more remain",
}


def _body(model: type[BaseModel], required: bool = False) -> dict[str, Any]:
    return {"requestBody": {"required": required, "content": json_content(model)}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _json(schema: dict[str, Any], description: str, **headers: str) -> dict[str, Any]:
    answered: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }
    if headers:
        answered["headers"] = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in headers.items()
        }
    return answered


def _components(components: dict[str, Any]) -> None:
    """The assistant models, and AssistantSelection (an Assistant of the `select` fields)."""
    responses: list[type[BaseModel]] = [
        Assistant,
        AssistantVersion,
        GraphDrawing,
        GraphSchemas,
        SubgraphSchemas,
    ]
    bodies: list[type[BaseModel]] = [
        AssistantCreate,
        AssistantPatch,
        AssistantSearch,
        AssistantFilter,
        VersionSearch,
        LatestVersion,
    ]
    pairs = [(m, "serialization") for m in responses] + [(m, "validation") for m in bodies]
    _, schemas = models_json_schema(pairs, ref_template=REF)  # type: ignore[arg-type]
    components.update(schemas["$defs"])
    selection = {k: v for k, v in schemas["$defs"]["Assistant"].items() if k != "required"}
    components["AssistantSelection"] = {**selection, "title": "AssistantSelection"}


def assistant_paths(components: dict[str, Any]) -> dict[str, Any]:
    """The assistant routes' paths; their schemas are added to `components`."""
    _components(components)
    one = path_params("assistant_id")
    the_assistant = answer("the assistant", Assistant)
    selected = {"type": "array", "items": {"$ref": REF.format(model="AssistantSelection")}}
    subgraphs = {
        "type": "object",
        "additionalProperties": {"$ref": REF.format(model="SubgraphSchemas")},
    }
    xray = {"anyOf": [{"type": "boolean"}, {"type": "integer", "minimum": 1}], "default": False}
    return {
        "/assistants": {
            "post": operation(
                "Create an assistant of a served graph (409 for a taken id unless if_exists is"
                " do_nothing)",
                {"200": the_assistant, **errors(409, *_BODY_ERRORS)},
                **_body(AssistantCreate, required=True),
            )
        },
        "/assistants/search": {
            "post": operation(
                "System and stored assistants by graph, name part or metadata, in order, one page",
                {
                    "200": _json(
                        selected, "assistants (only the `select` fields, if given)", **_PAGES
                    ),
                    **errors(*_BODY_ERRORS),
                },
                **_body(AssistantSearch),
            )
        },
        "/assistants/count": {
            "post": operation(
                "How many system and stored assistants match the filters",
                {"200": _json({"type": "integer"}, "how many"), **errors(*_BODY_ERRORS)},
                **_body(AssistantFilter),
            )
        },
        "/assistants/{assistant_id}": {
            "get": operation(
                "An assistant: a stored one's id, or a graph name or its uuid5 (system)",
                {"200": the_assistant, **errors(404)},
                parameters=one,
            ),
            "patch": operation(
                "A new version of a stored assistant, made current (metadata merged; 409 for a"
                " system assistant)",
                {"200": the_assistant, **errors(404, 409, *_BODY_ERRORS)},
                parameters=one,
                **_body(AssistantPatch),
            ),
            "delete": operation(
                "Delete a stored assistant and its versions (409 for a system assistant)",
                {"204": {"description": "deleted"}, **errors(404, 409, 422)},
                parameters=[
                    *one,
                    _query("delete_threads", _FLAG, "delete the threads its runs labelled too"),
                ],
            ),
        },
        "/assistants/{assistant_id}/versions": {
            "post": operation(
                "An assistant's versions, newest first",
                {"200": array_of(AssistantVersion, "versions"), **errors(404, *_BODY_ERRORS)},
                parameters=one,
                **_body(VersionSearch),
            )
        },
        "/assistants/{assistant_id}/latest": {
            "post": operation(
                "Make one of a stored assistant's versions current (404: no such version)",
                {"200": the_assistant, **errors(404, 409, *_BODY_ERRORS)},
                parameters=one,
                **_body(LatestVersion, required=True),
            )
        },
        "/assistants/{assistant_id}/graph": {
            "get": operation(
                "The assistant's graph as nodes and edges (xray: subgraphs drawn in)",
                {"200": answer("the graph", GraphDrawing), **errors(404, 422)},
                parameters=[*one, _query("xray", xray, "true, or how many levels")],
            )
        },
        "/assistants/{assistant_id}/schemas": {
            "get": operation(
                "The JSON schemas of the assistant's graph",
                {"200": answer("the schemas", GraphSchemas), **errors(404, 422)},
                parameters=one,
            )
        },
        **{
            path: {
                "get": operation(
                    "The schemas of the assistant's graph's subgraphs, by namespace",
                    {"200": _json(subgraphs, "schemas by namespace"), **errors(404, 422)},
                    parameters=[
                        *path_params(*params),
                        _query("recurse", _FLAG, "subgraphs of subgraphs too"),
                    ],
                )
            }
            for path, params in [
                ("/assistants/{assistant_id}/subgraphs", ("assistant_id",)),
                ("/assistants/{assistant_id}/subgraphs/{namespace}", ("assistant_id", "namespace")),
            ]
        },
    }
