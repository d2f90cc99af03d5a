"""The OpenAPI paths of the streaming routes (lg_deploy.http.langgraph_streams)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from lg_deploy.http.langgraph_run_body import RunStream, ThreadRunStream
from lg_deploy.http.openapi_parts import REF, errors, json_content, operation, path_params

_RESUME = {
    "name": "Last-Event-ID",
    "in": "header",
    "required": False,
    "description": "resume after this event id; -1: every event kept; none: from now on",
    "schema": {"type": "string"},
}
_JOIN_QUERY = [
    {
        "name": "stream_mode",
        "in": "query",
        "required": False,
        "description": "send only these modes (repeat the parameter for several)",
        "schema": {"type": "string"},
    },
    {
        "name": "cancel_on_disconnect",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "enum": ["0", "1", "true", "false"]},
    },
]


def _events(description: str) -> dict[str, Any]:
    schema = {"type": "string", "description": "event:, data: and id: lines; heartbeats"}
    return {"description": description, "content": {"text/event-stream": {"schema": schema}}}


def stream_paths(components: dict[str, Any]) -> dict[str, Any]:
    """The streaming routes: create-and-stream, join a run's stream, a thread's stream."""
    models: list[type[BaseModel]] = [RunStream, ThreadRunStream]
    _, schemas = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    components.update(schemas["$defs"])
    run_events = _events("the run's events until it is final (server-sent events)")
    thread = path_params("thread_id")
    return {
        "/runs/stream": {
            "post": operation(
                "Start a run and stream its events",
                {"200": run_events, **errors(400, 404, 413, 415, 422, 503)},
                requestBody={"required": True, "content": json_content(RunStream)},
            )
        },
        "/runs/{run_id}/stream": {
            "get": operation(
                "Join a thread-less run's stream",
                {"200": run_events, **errors(404, 422, 503)},
                parameters=[*path_params("run_id"), _RESUME, *_JOIN_QUERY],
            )
        },
        "/threads/{thread_id}/runs/stream": {
            "post": operation(
                "Start a run on the thread and stream its events",
                {"200": run_events, **errors(400, 404, 409, 413, 415, 422, 503)},
                parameters=thread,
                requestBody={"required": True, "content": json_content(ThreadRunStream)},
            )
        },
        "/threads/{thread_id}/runs/{run_id}/stream": {
            "get": operation(
                "Join a run's stream",
                {"200": run_events, **errors(404, 422, 503)},
                parameters=[*path_params("thread_id", "run_id"), _RESUME, *_JOIN_QUERY],
            )
        },
        "/threads/{thread_id}/stream": {
            "get": operation(
                "Every run's events on the thread, each run ended by metadata run_done; open"
                " until the client goes",
                {"200": _events("the thread's events"), **errors(404, 422, 503)},
                parameters=[*thread, _RESUME],
            )
        },
    }
