"""The OpenAPI 3.1 document, built from the same pydantic models the routes validate with."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from lg_deploy import __version__
from lg_deploy.http.auth import OPEN_PATHS
from lg_deploy.http.langgraph_run_body import (
    RunCreate,
    RunWait,
    ThreadRunCreate,
    ThreadRunWait,
)
from lg_deploy.http.langgraph_runs import Run
from lg_deploy.http.langgraph_state import HistoryQuery, StateAt, StateUpdate
from lg_deploy.http.openapi_assistants import assistant_paths
from lg_deploy.http.openapi_crons import cron_paths
from lg_deploy.http.openapi_parts import (
    REF,
    answer,
    any_object,
    array_of,
    errors,
    json_content,
    operation,
    path_params,
    query_params,
)
from lg_deploy.http.openapi_store import store_paths
from lg_deploy.http.openapi_streams import stream_paths
from lg_deploy.http.openapi_threads import thread_paths
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
from lg_deploy.webhooks.models import WebhookDeliveryList

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
        WebhookDeliveryList,
        GraphList,
        Health,
        ErrorBody,
    ]
    _, schemas = models_json_schema([(m, "serialization") for m in models], ref_template=REF)
    by_id = [_ID_PARAM]
    components: dict[str, Any] = dict(schemas["$defs"])
    paths: dict[str, Any] = {
        "/executions": {
            "post": operation(
                "Submit an execution",
                {
                    "202": answer("queued", ExecutionState, Location="the execution's URL"),
                    "200": answer(
                        "an idempotency key already used, same graph and input: the first one",
                        ExecutionState,
                        Location="the execution's URL",
                        **{"Idempotent-Replayed": "true"},
                    ),
                    **errors(400, 409, 413, 415, 422, 503),
                },
                requestBody={"required": True, "content": json_content(SubmitExecution)},
            ),
            "get": operation(
                "List executions, newest first",
                {"200": answer("a page", ExecutionPage), **errors(422, 503)},
                parameters=query_params(ListQuery, components),
            ),
        },
        "/executions/{execution_id}": {
            "get": operation(
                "Get an execution",
                {"200": answer("the execution", ExecutionState), **errors(404, 422, 503)},
                parameters=by_id,
            ),
        },
        "/executions/{execution_id}/wait": {
            "get": operation(
                "Wait until the execution is final or the timeout passes",
                {
                    "200": answer("the execution; check status", ExecutionState),
                    **errors(404, 422, 503),
                },
                parameters=[*by_id, *query_params(WaitQuery, components)],
            ),
        },
        "/executions/{execution_id}/cancel": {
            "post": operation(
                "Cancel: a QUEUED execution fails now (200), a RUNNING one is stopped (202)",
                {
                    "200": answer("cancelled", ExecutionState),
                    "202": answer("its worker is stopping it", ExecutionState),
                    **errors(404, 409, 422, 503),
                },
                parameters=by_id,
            ),
        },
        "/executions/{execution_id}/events": {
            "get": operation(
                "The execution's history",
                {"200": answer("events", EventList), **errors(404, 422, 503)},
                parameters=by_id,
            ),
        },
        "/executions/{execution_id}/webhooks": {
            "get": operation(
                "The execution's webhook deliveries, each with its tries",
                {"200": answer("deliveries", WebhookDeliveryList), **errors(404, 422, 503)},
                parameters=by_id,
            ),
        },
        "/graphs": {
            "get": operation(
                "Graphs this process serves, and graphs nobody serves",
                {"200": answer("graphs", GraphList), **errors(422, 503)},
            )
        },
        "/healthz": {"get": operation("Liveness", {"200": answer("alive", Health)})},
        "/readyz": {
            "get": operation(
                "Readiness", {"200": answer("ready", Health), "503": answer("not ready", Health)}
            )
        },
        "/metrics": {
            "get": operation(
                "Prometheus metrics",
                {
                    "200": {
                        "description": "text exposition",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **errors(503),
                },
            ),
        },
    }
    paths.update(_langgraph_paths(components))
    for path, operations in paths.items():
        if path not in OPEN_PATHS:  # the API key middleware refuses these without the key
            for described in operations.values():
                described["responses"]["401"] = answer(UNAUTHORIZED, ErrorBody)
    return {
        "openapi": "3.1.0",
        "info": {"title": "lg-deploy", "version": __version__},
        "paths": paths,
        "components": {"schemas": components},
    }


def _cancel_query() -> list[dict[str, Any]]:
    """The query parameters of a run's cancel."""
    flag = {"type": "string", "enum": ["0", "1", "true", "false"]}
    action = {"type": "string", "enum": ["interrupt", "rollback"], "default": "interrupt"}
    return [
        {"name": "wait", "in": "query", "required": False, "schema": flag},
        {"name": "action", "in": "query", "required": False, "schema": action},
    ]


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
    _, schemas = models_json_schema([(m, "serialization") for m in models], ref_template=REF)
    components.update(schemas["$defs"])
    thread_run = path_params("thread_id", "run_id")
    outcome = any_object("the output; {__error__: {error, message}} if failed; {} if cancelled")
    create = {"requestBody": {"required": True, "content": json_content(RunCreate)}}
    wait = {"requestBody": {"required": True, "content": json_content(RunWait)}}
    created = {"200": answer("the run", Run), **errors(400, 404, 413, 415, 422, 503)}
    waited = {"200": outcome, **errors(400, 404, 413, 415, 422, 503)}
    cancelled = {"204": {"description": "cancelled, or being stopped"}, **errors(404, 409, 503)}
    on_thread = path_params("thread_id")
    thread_create = {"requestBody": {"required": True, "content": json_content(ThreadRunCreate)}}
    thread_wait = {"requestBody": {"required": True, "content": json_content(ThreadRunWait)}}
    thread_errors = errors(400, 404, 409, 413, 415, 422, 503)
    state = any_object("the thread's state (ThreadState: values, next, tasks, checkpoint, ...)")
    states = {
        "description": "the thread's states, newest first",
        "content": {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}},
    }
    written = any_object("the new checkpoint: {checkpoint, configurable, checkpoint_id}")
    return {
        "/runs": {"post": operation("Start a background run", created, **create)},
        "/runs/wait": {"post": operation("Start a run; its output once final", waited, **wait)},
        "/threads/{thread_id}/runs": {
            "get": operation(
                "The runs of a thread, newest first (a thread-less run's thread holds that run)",
                {"200": array_of(Run, "runs"), **errors(404, 422, 503)},
                parameters=on_thread,
            ),
            "post": operation(
                "Start a run on the thread (409 when busy and multitask_strategy is reject)",
                {"200": answer("the run", Run), **thread_errors},
                parameters=on_thread,
                **thread_create,
            ),
        },
        "/threads/{thread_id}/runs/wait": {
            "post": operation(
                "Start a run on the thread; its output once final",
                {"200": outcome, **thread_errors},
                parameters=on_thread,
                **thread_wait,
            )
        },
        "/threads/{thread_id}/runs/{run_id}": {
            "get": operation(
                "A run",
                {"200": answer("the run", Run), **errors(404, 503)},
                parameters=thread_run,
            ),
            "delete": operation(
                "Delete a finished run (409 while it is in flight)",
                {"204": {"description": "deleted"}, **errors(404, 409, 503)},
                parameters=thread_run,
            ),
        },
        "/threads/{thread_id}/state": {
            "get": operation(
                "The thread's state now", {"200": state, **errors(404, 409)}, parameters=on_thread
            ),
            "post": operation(
                "Update the thread's state as a node would (409 while a run is in flight)",
                {"200": written, **errors(400, 404, 409, 413, 415, 422)},
                parameters=on_thread,
                requestBody={"required": True, "content": json_content(StateUpdate)},
            ),
        },
        "/threads/{thread_id}/state/checkpoint": {
            "post": operation(
                "The thread's state at a checkpoint",
                {"200": state, **errors(400, 404, 409, 413, 415, 422)},
                parameters=on_thread,
                requestBody={"required": True, "content": json_content(StateAt)},
            )
        },
        "/threads/{thread_id}/state/{checkpoint_id}": {
            "get": operation(
                "The thread's state at a checkpoint",
                {"200": state, **errors(404, 409)},
                parameters=path_params("thread_id", "checkpoint_id"),
            )
        },
        "/threads/{thread_id}/history": {
            "get": operation(
                "The thread's states, newest first (limit, before)",
                {"200": states, **errors(404, 409, 422)},
                parameters=on_thread,
            ),
            "post": operation(
                "The thread's states, newest first (limit, before, metadata)",
                {"200": states, **errors(400, 404, 409, 413, 415, 422)},
                parameters=on_thread,
                requestBody={"required": False, "content": json_content(HistoryQuery)},
            ),
        },
        "/threads/{thread_id}/runs/{run_id}/join": {
            "get": operation(
                "Its output once final",
                {"200": outcome, **errors(404, 503)},
                parameters=thread_run,
            )
        },
        "/threads/{thread_id}/runs/{run_id}/cancel": {
            "post": operation(
                "Cancel (wait=1: once final; action=rollback: then forgotten with its checkpoints)",
                {**cancelled, **errors(422)},
                parameters=[*thread_run, *_cancel_query()],
            )
        },
        **thread_paths(components),
        **cron_paths(components),
        **stream_paths(components),
        **assistant_paths(components),
        **store_paths(components),
    }
