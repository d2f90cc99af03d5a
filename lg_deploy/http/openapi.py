"""The OpenAPI 3.1 document, built from the same pydantic models the routes validate with."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from lg_deploy import __version__
from lg_deploy.http.auth import OPEN_PATHS
from lg_deploy.http.langgraph_api import Run
from lg_deploy.http.langgraph_run_body import (
    RunCreate,
    RunWait,
    ThreadRunCreate,
    ThreadRunWait,
)
from lg_deploy.http.langgraph_state import HistoryQuery, StateAt, StateUpdate
from lg_deploy.http.langgraph_threads import (
    PruneResult,
    ThreadCreate,
    ThreadFilter,
    ThreadPatch,
    ThreadPrune,
    ThreadSearch,
)
from lg_deploy.http.openapi_assistants import assistant_paths
from lg_deploy.http.openapi_parts import REF as _REF
from lg_deploy.http.openapi_parts import answer as _answer
from lg_deploy.http.openapi_parts import any_object as _any_object
from lg_deploy.http.openapi_parts import array_of as _array_of
from lg_deploy.http.openapi_parts import errors as _errors
from lg_deploy.http.openapi_parts import json_content as _json_content
from lg_deploy.http.openapi_parts import operation as _operation
from lg_deploy.http.openapi_parts import path_params as _path_params
from lg_deploy.http.openapi_parts import query_params as _query_params
from lg_deploy.http.schemas import (
    ErrorBody,
    EventList,
    ExecutionPage,
    GraphList,
    Health,
    ListQuery,
    SubmitExecution,
    WaitQuery,
)
from lg_deploy.models import ExecutionState
from lg_deploy.threads.models import Thread

UNAUTHORIZED = "missing or wrong API key (only when LG_DEPLOY_API_KEY is set)"
_ID_PARAM = {
    "name": "execution_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
}


def build_openapi() -> dict[str, Any]:
    """The whole document for GET /openapi.json."""
    models: list[type[BaseModel]] = [
        SubmitExecution,
        ExecutionState,
        ExecutionPage,
        EventList,
        GraphList,
        Health,
        ErrorBody,
    ]
    _, schemas = models_json_schema([(m, "serialization") for m in models], ref_template=_REF)
    by_id = [_ID_PARAM]
    components: dict[str, Any] = dict(schemas["$defs"])
    paths: dict[str, Any] = {
        "/executions": {
            "post": _operation(
                "Submit an execution",
                {
                    "202": _answer("queued", ExecutionState, Location="the execution's URL"),
                    "200": _answer(
                        "an idempotency key already used, same graph and input: the first one",
                        ExecutionState,
                        Location="the execution's URL",
                        **{"Idempotent-Replayed": "true"},
                    ),
                    **_errors(400, 409, 413, 415, 422, 503),
                },
                requestBody={"required": True, "content": _json_content(SubmitExecution)},
            ),
            "get": _operation(
                "List executions, newest first",
                {"200": _answer("a page", ExecutionPage), **_errors(422, 503)},
                parameters=_query_params(ListQuery, components),
            ),
        },
        "/executions/{execution_id}": {
            "get": _operation(
                "Get an execution",
                {"200": _answer("the execution", ExecutionState), **_errors(404, 422, 503)},
                parameters=by_id,
            ),
        },
        "/executions/{execution_id}/wait": {
            "get": _operation(
                "Wait until the execution is final or the timeout passes",
                {
                    "200": _answer("the execution; check status", ExecutionState),
                    **_errors(404, 422, 503),
                },
                parameters=[*by_id, *_query_params(WaitQuery, components)],
            ),
        },
        "/executions/{execution_id}/cancel": {
            "post": _operation(
                "Cancel: a QUEUED execution fails now (200), a RUNNING one is stopped (202)",
                {
                    "200": _answer("cancelled", ExecutionState),
                    "202": _answer("its worker is stopping it", ExecutionState),
                    **_errors(404, 409, 422, 503),
                },
                parameters=by_id,
            ),
        },
        "/executions/{execution_id}/events": {
            "get": _operation(
                "The execution's history",
                {"200": _answer("events", EventList), **_errors(404, 422, 503)},
                parameters=by_id,
            ),
        },
        "/graphs": {
            "get": _operation(
                "Graphs this process serves, and graphs nobody serves",
                {"200": _answer("graphs", GraphList), **_errors(422, 503)},
            )
        },
        "/healthz": {"get": _operation("Liveness", {"200": _answer("alive", Health)})},
        "/readyz": {
            "get": _operation(
                "Readiness", {"200": _answer("ready", Health), "503": _answer("not ready", Health)}
            )
        },
        "/metrics": {
            "get": _operation(
                "Prometheus metrics",
                {
                    "200": {
                        "description": "text exposition",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **_errors(503),
                },
            ),
        },
    }
    paths.update(_langgraph_paths(components))
    for path, operations in paths.items():
        if path not in OPEN_PATHS:  # the API key middleware refuses these without the key
            for operation in operations.values():
                operation["responses"]["401"] = _answer(UNAUTHORIZED, ErrorBody)
    return {
        "openapi": "3.1.0",
        "info": {"title": "lg-deploy", "version": __version__},
        "paths": paths,
        "components": {"schemas": components},
    }


def _langgraph_paths(components: dict[str, Any]) -> dict[str, Any]:
    """The LangGraph Platform routes (lg_deploy.http.langgraph_api)."""
    models: list[type[BaseModel]] = [
        Run,
        RunCreate,
        RunWait,
        ThreadRunCreate,
        ThreadRunWait,
        StateAt,
        StateUpdate,
        HistoryQuery,
    ]
    _, schemas = models_json_schema([(m, "serialization") for m in models], ref_template=_REF)
    components.update(schemas["$defs"])
    thread_run = _path_params("thread_id", "run_id")
    outcome = _any_object("the output; {__error__: {error, message}} if failed; {} if cancelled")
    create = {"requestBody": {"required": True, "content": _json_content(RunCreate)}}
    wait = {"requestBody": {"required": True, "content": _json_content(RunWait)}}
    created = {"200": _answer("the run", Run), **_errors(400, 404, 413, 415, 422, 503)}
    waited = {"200": outcome, **_errors(400, 404, 413, 415, 422, 503)}
    cancelled = {"204": {"description": "cancelled, or being stopped"}, **_errors(404, 409, 503)}
    on_thread = _path_params("thread_id")
    thread_create = {"requestBody": {"required": True, "content": _json_content(ThreadRunCreate)}}
    thread_wait = {"requestBody": {"required": True, "content": _json_content(ThreadRunWait)}}
    thread_errors = _errors(400, 404, 409, 413, 415, 422, 503)
    state = _any_object("the thread's state (ThreadState: values, next, tasks, checkpoint, ...)")
    states = {
        "description": "the thread's states, newest first",
        "content": {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}},
    }
    written = _any_object("the new checkpoint: {checkpoint, configurable, checkpoint_id}")
    return {
        "/runs": {"post": _operation("Start a background run", created, **create)},
        "/runs/wait": {"post": _operation("Start a run; its output once final", waited, **wait)},
        "/threads/{thread_id}/runs": {
            "get": _operation(
                "The runs of a thread, newest first (a thread-less run's thread holds that run)",
                {"200": _array_of(Run, "runs"), **_errors(404, 422, 503)},
                parameters=on_thread,
            ),
            "post": _operation(
                "Start a run on the thread (409 when busy and multitask_strategy is reject)",
                {"200": _answer("the run", Run), **thread_errors},
                parameters=on_thread,
                **thread_create,
            ),
        },
        "/threads/{thread_id}/runs/wait": {
            "post": _operation(
                "Start a run on the thread; its output once final",
                {"200": outcome, **thread_errors},
                parameters=on_thread,
                **thread_wait,
            )
        },
        "/threads/{thread_id}/runs/{run_id}": {
            "get": _operation(
                "A run",
                {"200": _answer("the run", Run), **_errors(404, 503)},
                parameters=thread_run,
            ),
            "delete": _operation(
                "Delete a finished run (409 while it is in flight)",
                {"204": {"description": "deleted"}, **_errors(404, 409, 503)},
                parameters=thread_run,
            ),
        },
        "/threads/{thread_id}/state": {
            "get": _operation(
                "The thread's state now", {"200": state, **_errors(404, 409)}, parameters=on_thread
            ),
            "post": _operation(
                "Update the thread's state as a node would (409 while a run is in flight)",
                {"200": written, **_errors(400, 404, 409, 413, 415, 422)},
                parameters=on_thread,
                requestBody={"required": True, "content": _json_content(StateUpdate)},
            ),
        },
        "/threads/{thread_id}/state/checkpoint": {
            "post": _operation(
                "The thread's state at a checkpoint",
                {"200": state, **_errors(400, 404, 409, 413, 415, 422)},
                parameters=on_thread,
                requestBody={"required": True, "content": _json_content(StateAt)},
            )
        },
        "/threads/{thread_id}/state/{checkpoint_id}": {
            "get": _operation(
                "The thread's state at a checkpoint",
                {"200": state, **_errors(404, 409)},
                parameters=_path_params("thread_id", "checkpoint_id"),
            )
        },
        "/threads/{thread_id}/history": {
            "get": _operation(
                "The thread's states, newest first (limit, before)",
                {"200": states, **_errors(404, 409, 422)},
                parameters=on_thread,
            ),
            "post": _operation(
                "The thread's states, newest first (limit, before, metadata)",
                {"200": states, **_errors(400, 404, 409, 413, 415, 422)},
                parameters=on_thread,
                requestBody={"required": False, "content": _json_content(HistoryQuery)},
            ),
        },
        "/threads/{thread_id}/runs/{run_id}/join": {
            "get": _operation(
                "Its output once final",
                {"200": outcome, **_errors(404, 503)},
                parameters=thread_run,
            )
        },
        "/threads/{thread_id}/runs/{run_id}/cancel": {
            "post": _operation("Cancel (wait=1: once final)", cancelled, parameters=thread_run)
        },
        **_thread_paths(components),
        **assistant_paths(components),
    }


def _thread_paths(components: dict[str, Any]) -> dict[str, Any]:
    """The thread routes (lg_deploy.http.langgraph_threads)."""
    models: list[type[BaseModel]] = [
        Thread,
        ThreadCreate,
        ThreadPatch,
        ThreadSearch,
        ThreadFilter,
        ThreadPrune,
        PruneResult,
    ]
    _, schemas = models_json_schema([(m, "validation") for m in models], ref_template=_REF)
    components.update(schemas["$defs"])
    thread = _path_params("thread_id")
    body_errors = (400, 413, 415, 422)
    count = {
        "description": "how many",
        "content": {"application/json": {"schema": {"type": "integer"}}},
    }
    pages = {
        "X-Pagination-Total": "threads matching the filters",
        "X-Pagination-Next": "the offset of the next page, while more remain",
    }
    # With `select`, a search answers only the fields asked for: the Thread's, none required.
    selection = {k: v for k, v in schemas["$defs"]["Thread"].items() if k != "required"}
    components["ThreadSelection"] = {**selection, "title": "ThreadSelection"}
    items = {"type": "array", "items": {"$ref": _REF.format(model="ThreadSelection")}}
    found: dict[str, Any] = {
        "description": "one page of threads (only the `select` fields, if given)",
        "content": {"application/json": {"schema": items}},
    }
    found["headers"] = {
        name: {"description": text, "schema": {"type": "string"}} for name, text in pages.items()
    }

    def body(model: type[BaseModel]) -> dict[str, Any]:
        return {"requestBody": {"required": False, "content": _json_content(model)}}

    return {
        "/threads": {
            "post": _operation(
                "Create a thread (409 for a taken id unless if_exists is do_nothing)",
                {"200": _answer("the thread", Thread), **_errors(409, *body_errors)},
                **body(ThreadCreate),
            )
        },
        "/threads/search": {
            "post": _operation(
                "Threads by metadata, values, status or ids, in order, one page",
                {"200": found, **_errors(*body_errors)},
                **body(ThreadSearch),
            )
        },
        "/threads/count": {
            "post": _operation(
                "How many threads match the filters",
                {"200": count, **_errors(*body_errors)},
                **body(ThreadFilter),
            )
        },
        "/threads/prune": {
            "post": _operation(
                "Delete the threads named (strategy delete; keep_latest is not supported yet)",
                {"200": _answer("how many were deleted", PruneResult), **_errors(*body_errors)},
                requestBody={"required": True, "content": _json_content(ThreadPrune)},
            )
        },
        "/threads/{thread_id}": {
            "get": _operation(
                "A thread",
                {"200": _answer("the thread", Thread), **_errors(404)},
                parameters=thread,
            ),
            "patch": _operation(
                "Merge metadata into a thread (204 with Prefer: return=minimal)",
                {
                    "200": _answer("the thread", Thread),
                    "204": {"description": "merged"},
                    **_errors(404, *body_errors),
                },
                parameters=thread,
                **body(ThreadPatch),
            ),
            "delete": _operation(
                "Delete a thread",
                {"204": {"description": "deleted"}, **_errors(404)},
                parameters=thread,
            ),
        },
    }
